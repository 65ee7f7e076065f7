"""Render the application icon's PNG sizes (and the Windows .ico / macOS .icns) from its SVG.

    python packaging/make_icons.py                 # resources/icons/storystudio-<N>.png, committed
    python packaging/make_icons.py --ico F --icns F   # only the platform icon files, from the committed PNGs
                                                      # (the bundle build does this; the tree is left as it is)

The SVG (resources/icons/storystudio.svg) is the one source; the PNGs are
rendered by Qt's SVG renderer so that no other tool is needed, and committed so
that a wheel, the desktop install step and the window have them without a build step.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ICONS = ROOT / "resources" / "icons"
SVG = ICONS / "storystudio.svg"
sys.path.insert(0, str(ROOT))
from storystudio.desktop import ICON_SIZES as SIZES  # noqa: E402  (one list for the files, the window, the menu)


def png_path(size: int) -> Path:
    return ICONS / f"storystudio-{size}.png"


def render_png(svg: Path, size: int) -> bytes:
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication(["make_icons", "-platform", "offscreen"])
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg} is not an SVG picture Qt can draw.")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return bytes(data)


def write_platform_icons(ico: Path | None, icns: Path | None) -> None:
    from PIL import Image

    images = {size: Image.open(io.BytesIO(png_path(size).read_bytes())).convert("RGBA") for size in SIZES}
    if ico is not None:
        ico.parent.mkdir(parents=True, exist_ok=True)
        images[256].save(ico, format="ICO", sizes=[(s, s) for s in SIZES if s <= 256])
    if icns is not None:
        icns.parent.mkdir(parents=True, exist_ok=True)
        images[512].save(icns, format="ICNS", append_images=[images[s] for s in (16, 32, 64, 128, 256)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ico", type=Path, default=None, help="write a Windows .ico here")
    parser.add_argument("--icns", type=Path, default=None, help="write a macOS .icns here")
    args = parser.parse_args(argv)
    if args.ico or args.icns:
        write_platform_icons(args.ico, args.icns)
        return 0
    for size in SIZES:
        png_path(size).write_bytes(render_png(SVG, size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
