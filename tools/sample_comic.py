"""Make the sample comic shown in the docs: the bundled example story with placeholder art.

No model weights can be downloaded where this project is built, so the
panels are simple drawings (sky, sea, a lighthouse, figures) made here with
Pillow, labelled as placeholders. Everything else is the real thing: the
example project, automatic layout on US comic pages, lettering, and the PDF
export, rendered to PNG by poppler's pdftoppm.

    python tools/sample_comic.py docs            # writes docs/comic-page-1.png, -2.png
    python tools/sample_comic.py OUT --keep-pdf   # also keeps OUT/comic-sample.pdf
"""

from __future__ import annotations

import io
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from storystudio.export.comic import export_pdf
from storystudio.export.page_render import ensure_gui_app
from storystudio.project.layout import Balloon, auto_layout, generation_size
from storystudio.project.model import Project

SKIES = [((250, 196, 140), (120, 170, 220)), ((90, 120, 170), (200, 210, 230)), ((60, 60, 90), (160, 120, 140)),
         ((240, 170, 120), (90, 110, 180)), ((30, 35, 60), (90, 100, 140)), ((70, 60, 50), (200, 150, 90)),
         ((15, 15, 30), (50, 60, 90)), ((255, 200, 150), (140, 190, 230))]


def placeholder_art(index: int, characters: int, size: tuple[int, int] = (768, 768)) -> bytes:
    """A simple seaside scene: gradient sky, sea, a lighthouse and a figure per character."""
    rnd = random.Random(index)
    w, h = size
    top, bottom = SKIES[index % len(SKIES)]
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    horizon = int(h * rnd.uniform(0.55, 0.68))
    for y in range(horizon):
        t = y / horizon
        draw.line([(0, y), (w, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    sea = tuple(max(0, c - 60) for c in bottom)
    draw.rectangle([0, horizon, w, h], fill=sea)
    for _ in range(40):
        x, y = rnd.randrange(w), rnd.randrange(horizon, h)
        draw.line([(x, y), (x + rnd.randrange(20, 60), y)], fill=tuple(min(255, c + 40) for c in sea), width=2)
    lx = int(w * rnd.uniform(0.6, 0.85))
    tower = min(300, int(horizon * 0.6))
    base = horizon + 10
    draw.polygon([(lx - 34, base), (lx + 34, base), (lx + 20, base - tower), (lx - 20, base - tower)],
                 fill=(235, 235, 230))
    for band in range(3):
        y0 = base - tower // 5 - band * tower * 3 // 10
        draw.rectangle([lx - 30 + band * 4, y0 - tower // 10, lx + 30 - band * 4, y0], fill=(190, 50, 45))
    draw.rectangle([lx - 26, base - tower - 40, lx + 26, base - tower], fill=(255, 230, 120))
    draw.polygon([(lx - 34, base - tower - 40), (lx + 34, base - tower - 40), (lx, base - tower - 85)],
                 fill=(60, 60, 70))
    if index % 4 == 2:  # night panels: the beam
        draw.polygon([(lx, base - tower - 20), (0, base - tower - 120), (0, base - tower + 60)], fill=(255, 240, 170))
    for k in range(characters):
        fx = int(min(w, h) * (0.2 + 0.2 * k))
        fy = h - 60
        colour = (180, 80, 40) if k == 0 else (70, 70, 90)
        draw.ellipse([fx - 22, fy - 230, fx + 22, fy - 186], fill=(240, 200, 170))
        draw.polygon([(fx - 40, fy), (fx + 40, fy), (fx + 24, fy - 184), (fx - 24, fy - 184)], fill=colour)
    label = "PLACEHOLDER ART: no model weights here"
    draw.rectangle([w - 250, h - 26, w, h], fill=(0, 0, 0))
    draw.text((w - 242, h - 19), label, fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def main(out: Path, keep_pdf: bool = False) -> None:
    ensure_gui_app()
    out.mkdir(parents=True, exist_ok=True)
    project = Project.example()  # with its own dialogue (resources/examples/lighthouse.dialogue.json)
    project.layout = auto_layout(project.panels, size="us-comic")
    for i, panel in enumerate(project.panels):  # each picture drawn at its frame's shape
        _, frame = project.layout.page_of_panel(panel.id)
        size = generation_size(frame.aspect)
        project.add_version(panel.id, placeholder_art(i, len(panel.characters()), size), {"placeholder": True})
    first = project.layout.pages[0]
    storm = project.layout.pages[1].frames[2].bounds
    project.layout.pages[1].balloons.append(
        Balloon("sfx", storm.x + storm.w * 0.45, storm.y + storm.h * 0.55, 150, 60, text="KRA-KOOM!"))
    project.layout.pages[0].balloons.append(
        Balloon("thought", first.frames[1].bounds.x + 250, first.frames[1].bounds.y + 30, 120, 56,
                text="Don't look down.", tail=(first.frames[1].bounds.x + 160, first.frames[1].bounds.y + 150)))
    with tempfile.TemporaryDirectory() as tmp:
        pdf = (out if keep_pdf else Path(tmp)) / "comic-sample.pdf"
        result = export_pdf(project, pdf, author="StoryStudio sample")
        print(f"exported {result.pages} pages", *result.warnings, sep="\n")
        subprocess.run(["pdftoppm", "-r", "110", "-png", str(pdf), str(out / "comic-page")], check=True)
    print(f"wrote {', '.join(sorted(p.name for p in out.glob('comic-page-*.png')))} in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"), keep_pdf="--keep-pdf" in sys.argv)
