"""The one page renderer: what the layout canvas shows is what PDF, PNG and CBZ contain.

Everything is painted with ``QPainter`` in page points (1/72 inch, origin at
the trim's top-left corner), so the same calls draw onto the canvas, a
``QImage`` at any DPI and a ``QPdfWriter`` (where lettering stays real,
selectable text). Qt is used here as a drawing library: nothing needs a
window, only a ``QGuiApplication`` (``ensure_gui_app`` makes an offscreen one
for the command line).

Lettering is laid out in points with unhinted font metrics, so line breaks
and sizes are the same on every device.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from PIL import Image
from PySide6.QtCore import QPointF, QRectF, QSizeF, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontDatabase,
    QFontMetricsF,
    QGuiApplication,
    QImage,
    QPainter,
    QPainterPath,
    QPainterPathStroker,
    QPen,
    QPolygonF,
    QTransform,
)

from ..project.layout import SFX_FONT, Balloon, Frame, Layout, Page, Rect
from ..project.model import Project
from ..resources_path import resource

INK = QColor(20, 20, 20)
PAPER = QColor(255, 255, 255)
CAPTION_FILL = QColor(255, 246, 200)
SFX_FILL = QColor(255, 214, 0)
FRAME_LINE = 1.25  # points
BALLOON_LINE = 0.9
MIN_TEXT = 4.0  # the smallest lettering size auto-fitting goes down to, in points
LINE_SPACING = 1.12  # line height over font size for lettering


# ---------------------------------------------------------------------------
# Qt set-up and fonts


def ensure_gui_app() -> QGuiApplication:
    """The running Qt application, or a new offscreen one (for headless exports)."""
    app = QGuiApplication.instance()
    if app is None:
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        # a full QApplication (not only a QGuiApplication), so widgets still work later in the same process
        from PySide6.QtWidgets import QApplication

        app = QApplication(["storystudio"])
    register_fonts()
    return app  # type: ignore[return-value]


def decode_picture(data: bytes | None) -> QImage:
    """A picture's bytes (PNG, JPEG, WebP...) as a QImage, decoded by Pillow, never by Qt's image readers;
    a null QImage when there are none or they are not a picture.

    Exports run on worker threads, and PySide6 holds the GIL through ``QImage.fromData``, whose format
    probing (Qt's SVG plugin makes a QTextStream, which connects a signal) waits for a Qt lock that the GUI
    thread can hold while it waits for the GIL: a test run froze exactly there, the GUI thread deleting an
    animation. Pillow decodes without Qt (and lets go of the GIL while it does). Pixels come out as Qt's
    readers give them: ``Format_RGB32`` without transparency, ``Format_ARGB32`` with it.
    """
    if not data:
        return QImage()
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            return to_qimage(opened, premultiplied=False)
    except (OSError, ValueError, Image.DecompressionBombError):
        return QImage()


def to_qimage(picture: Image.Image, premultiplied: bool = True) -> QImage:
    """A PIL picture as a QImage that owns its pixels: RGB32, or ARGB when it has alpha (premultiplied, as
    QPainter draws it fastest, unless ``premultiplied`` is False)."""
    if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
        rgba = picture.convert("RGBA")
        image = QImage(rgba.tobytes(), rgba.width, rgba.height, 4 * rgba.width, QImage.Format.Format_RGBA8888)
        return image.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied if premultiplied
                                     else QImage.Format.Format_ARGB32)
    rgb = picture.convert("RGB")
    image = QImage(rgb.tobytes(), rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888)
    return image.convertToFormat(QImage.Format.Format_RGB32)  # a converted copy owns its memory


@lru_cache(maxsize=1)
def register_fonts() -> tuple[str, ...]:
    """Register the bundled lettering fonts with Qt once; returns their family names."""
    families: list[str] = []
    for path in sorted(resource("fonts").glob("*/*")):
        if path.suffix.lower() not in (".otf", ".ttf"):
            continue
        font_id = QFontDatabase.addApplicationFont(str(path))
        for family in QFontDatabase.applicationFontFamilies(font_id) if font_id >= 0 else []:
            if family not in families:
                families.append(family)
    return tuple(families)


def lettering_fonts() -> list[str]:
    """Font families offered for lettering: the bundled ones first, then the system's."""
    bundled = list(register_fonts())
    return bundled + [f for f in QFontDatabase.families() if f not in bundled]


def _font(family: str, size_pt: float, bold: bool, italic: bool, dpi: float = 72.0) -> QFont:
    """A font whose em is ``size_pt`` page units on a device of ``dpi`` logical dots per inch."""
    font = QFont(family)
    font.setPointSizeF(max(size_pt, 0.1) * 72.0 / dpi)
    _set_style(font, family, bold, italic)
    font.setHintingPreference(QFont.PreferNoHinting)  # same widths at every size and resolution
    font.setKerning(True)
    return font


@lru_cache(maxsize=256)
def _style_name(family: str, bold: bool, italic: bool) -> str | None:
    """The family's own face for bold and/or italic, if it has one."""
    if bold and italic:
        wanted = ("Bold Italic", "Bold Oblique")
    elif bold:
        wanted = ("Bold",)
    elif italic:
        wanted = ("Italic", "Oblique")
    else:
        return None
    styles = QFontDatabase.styles(family)
    return next((w for w in wanted if w in styles), None)


def _set_style(font: QFont, family: str, bold: bool, italic: bool) -> None:
    # Choose the real bold/italic face by name: asking for "bold" can make Qt fake
    # it by drawing every word twice, which a PDF then contains as doubled text.
    # A family without such a face is used as it is.
    style = _style_name(family, bold, italic)
    if style:
        font.setStyleName(style)


def _device_dpi(painter: QPainter) -> float:
    device = painter.device()
    return float(device.logicalDpiY()) if device is not None else 72.0


# ---------------------------------------------------------------------------
# lettering layout

REFERENCE_SIZE = 100.0


@lru_cache(maxsize=64)
def _reference_metrics(family: str, bold: bool, italic: bool) -> QFontMetricsF:
    image = QImage(1, 1, QImage.Format_ARGB32)
    image.setDotsPerMeterX(round(72 / 0.0254))
    image.setDotsPerMeterY(round(72 / 0.0254))
    return QFontMetricsF(_font(family, REFERENCE_SIZE, bold, italic, dpi=72.0), image)


@lru_cache(maxsize=4096)
def _reference_width(text: str, family: str, bold: bool, italic: bool) -> float:
    return _reference_metrics(family, bold, italic).horizontalAdvance(text)


@dataclass
class TextFit:
    """Where a balloon's text goes: its size, and each line with its box, in page points."""

    size: float
    lines: list[tuple[str, QRectF]] = field(default_factory=list)
    overflow: bool = False  # the text does not fit even at the smallest size


def balloon_font(balloon: Balloon, layout: Layout) -> str:
    if balloon.font:
        return balloon.font
    return SFX_FONT if balloon.kind == "sfx" else layout.font


def _text_area(balloon: Balloon) -> tuple[str, Rect]:
    """The shape text must stay inside: ("ellipse" | "rect", its bounds)."""
    r = balloon.rect
    if balloon.kind in ("speech", "thought"):
        pad = 0.09 * min(r.w, r.h) + 2.0
        return "ellipse", Rect(r.x + pad, r.y + pad, r.w - 2 * pad, r.h - 2 * pad)
    if balloon.kind == "speech-box":
        pad = 0.12 * min(r.w, r.h) + 2.0
        return "rect", Rect(r.x + pad, r.y + pad * 0.8, r.w - 2 * pad, r.h - 1.6 * pad)
    if balloon.kind == "caption":
        return "rect", Rect(r.x + 5.0, r.y + 3.5, r.w - 10.0, r.h - 7.0)
    return "rect", Rect(r.x + 1.0, r.y + 1.0, r.w - 2.0, r.h - 2.0)


def _line_widths(shape: str, area: Rect, n: int, line_h: float) -> list[float] | None:
    """The width available to each of ``n`` lines centred in the area, or None if they cannot fit."""
    total = n * line_h
    if total > area.h + 1e-6 or area.w <= 0:
        return None
    if shape == "rect":
        return [area.w] * n
    a, b = area.w / 2, area.h / 2
    cy = area.y + b
    top = cy - total / 2
    widths = []
    for i in range(n):
        far = max(abs(top + i * line_h - cy), abs(top + (i + 1) * line_h - cy))  # band edge farthest out
        ratio = far / b
        if ratio >= 1:
            return None
        widths.append(2 * a * math.sqrt(1 - ratio * ratio))
    return widths


def _wrap(paragraphs: list[list[str]], widths: list[float], size: float, family: str, bold: bool,
          italic: bool) -> list[str] | None:
    """Greedy word wrap into lines of the given widths; None when the words need more lines."""
    scale = size / REFERENCE_SIZE
    space = _reference_width(" ", family, bold, italic) * scale
    lines: list[str] = []
    for words in paragraphs:
        current: list[str] = []
        used = 0.0
        for word in words:
            if len(lines) >= len(widths):
                return None
            limit = widths[len(lines)]
            w = _reference_width(word, family, bold, italic) * scale
            if not current:
                if w > limit:
                    return None  # a word wider than its line: try a smaller size
                current, used = [word], w
            elif used + space + w <= limit:
                current.append(word)
                used += space + w
            else:
                lines.append(" ".join(current))
                if len(lines) >= len(widths):
                    return None
                if w > widths[len(lines)]:
                    return None
                current, used = [word], w
        if len(lines) >= len(widths):
            return None
        lines.append(" ".join(current))
    return lines


def _try_size(balloon: Balloon, family: str, size: float, shape: str, area: Rect,
              paragraphs: list[list[str]]) -> list[tuple[str, QRectF]] | None:
    line_h = size * LINE_SPACING
    words = sum(max(len(p), 1) for p in paragraphs)
    for n in range(len(paragraphs), words + 1):
        widths = _line_widths(shape, area, n, line_h)
        if widths is None:
            return None
        lines = _wrap(paragraphs, widths, size, family, balloon.bold, balloon.italic)
        if lines is not None:
            top = area.y + (area.h - len(lines) * line_h) / 2
            if balloon.kind == "caption":
                top = area.y
            placed = []
            centre_x = area.x + area.w / 2
            real_widths = _line_widths(shape, area, len(lines), line_h) or widths
            for i, (line, width) in enumerate(zip(lines, real_widths)):
                placed.append((line, QRectF(centre_x - width / 2, top + i * line_h, width, line_h)))
            return placed
    return None


def fit_text(balloon: Balloon, layout: Layout) -> TextFit:
    """Wrap the balloon's text inside its shape at the largest size that fits.

    A balloon with its own ``size`` keeps it (``overflow`` tells when the text
    spills). Otherwise speech, thought and captions use the layout's lettering
    size or smaller; sound effects grow to fill their box.
    """
    family = balloon_font(balloon, layout)
    paragraphs = [p.split() for p in balloon.text.splitlines()]
    paragraphs = [p for p in paragraphs if p] or [[""]]
    shape, area = _text_area(balloon)
    if not balloon.text.strip():
        return TextFit(balloon.size or layout.font_size)
    if balloon.size is not None:
        placed = _try_size(balloon, family, balloon.size, shape, area, paragraphs)
        if placed is not None:
            return TextFit(balloon.size, placed)
        return TextFit(balloon.size, _overflowing(balloon, family, balloon.size, shape, area, paragraphs), True)
    top = area.h / LINE_SPACING if balloon.kind == "sfx" else layout.font_size
    # binary search on a quarter-point grid: fitting is monotonic in size
    lo, hi = round(MIN_TEXT * 4), max(round(MIN_TEXT * 4), math.floor(top * 4))
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        placed = _try_size(balloon, family, mid / 4, shape, area, paragraphs)
        if placed is not None:
            best = (mid / 4, placed)
            lo = mid + 1
        else:
            hi = mid - 1
    if best is not None:
        return TextFit(best[0], best[1])
    return TextFit(MIN_TEXT, _overflowing(balloon, family, MIN_TEXT, shape, area, paragraphs), True)


def _overflowing(balloon: Balloon, family: str, size: float, shape: str, area: Rect,
                 paragraphs: list[list[str]]) -> list[tuple[str, QRectF]]:
    """Lines at ``size`` wrapped to the area's width, spilling past it (shown so nothing is lost)."""
    line_h = size * LINE_SPACING
    lines = _wrap(paragraphs, [max(area.w, 1.0)] * 10_000, size, family, balloon.bold, balloon.italic)
    if lines is None:  # a single word wider than the balloon: one word per line
        lines = [w for p in paragraphs for w in p]
    top = area.y + (area.h - len(lines) * line_h) / 2
    return [(line, QRectF(area.x, top + i * line_h, area.w, line_h)) for i, line in enumerate(lines)]


# ---------------------------------------------------------------------------
# shapes


def _polygon(points: Iterable[tuple[float, float]]) -> QPolygonF:
    return QPolygonF([QPointF(x, y) for x, y in points])


def frame_path(frame: Frame) -> QPainterPath:
    path = QPainterPath()
    path.addPolygon(_polygon(frame.points))
    path.closeSubpath()
    return path


def _tail_base(balloon: Balloon) -> tuple[QPointF, QPointF, QPointF]:
    """Two points on the balloon's edge, either side of the line towards the tail tip, and the centre."""
    r = balloon.rect
    c = QPointF(r.x + r.w / 2, r.y + r.h / 2)
    tx, ty = balloon.tail  # type: ignore[misc]
    angle = math.atan2(ty - c.y(), tx - c.x())
    spread = 0.22

    def edge(theta: float) -> QPointF:
        return QPointF(c.x() + 0.42 * r.w * math.cos(theta), c.y() + 0.42 * r.h * math.sin(theta))

    return edge(angle - spread), edge(angle + spread), c


def balloon_path(balloon: Balloon) -> QPainterPath:
    """The outline of a balloon with its tail, as one shape (so one stroke draws it)."""
    r = balloon.rect
    rect = QRectF(r.x, r.y, r.w, r.h)
    path = QPainterPath()
    if balloon.kind in ("speech", "thought"):
        path.addEllipse(rect)
    elif balloon.kind == "speech-box":
        radius = 0.28 * min(r.w, r.h)
        path.addRoundedRect(rect, radius, radius)
    elif balloon.kind == "caption":
        path.addRect(rect)
    else:
        return path  # sound effects have no balloon
    if balloon.kind == "thought":
        path = _cloud(rect)
    if balloon.has_tail and not rect.contains(QPointF(*balloon.tail)):  # type: ignore[arg-type]
        a, b, c = _tail_base(balloon)
        tip = QPointF(*balloon.tail)  # type: ignore[arg-type]
        if balloon.kind == "thought":
            for k, t in enumerate((0.35, 0.62, 0.85)):
                radius = max(1.2, 0.09 * min(r.w, r.h) * (1 - 0.28 * k))
                p = c + (tip - c) * (0.55 + 0.45 * t)
                path.addEllipse(p, radius, radius)
        else:
            tail = QPainterPath()
            # a gently curved wedge: each side bends towards the other near the tip
            tail.moveTo(a)
            mid_a = (a + tip) / 2 + (b - a) * 0.12
            mid_b = (b + tip) / 2 - (b - a) * 0.12
            tail.quadTo(mid_a, tip)
            tail.quadTo(mid_b, b)
            tail.lineTo(c)
            tail.closeSubpath()
            path = path.united(tail)
    path.setFillRule(Qt.WindingFill)
    return path.simplified()


def _cloud(rect: QRectF) -> QPainterPath:
    """A thought balloon: an ellipse with round puffs around its edge."""
    cloud = QPainterPath()
    cloud.addEllipse(rect.adjusted(rect.width() * 0.06, rect.height() * 0.08,
                                   -rect.width() * 0.06, -rect.height() * 0.08))
    a, b = rect.width() / 2, rect.height() / 2
    c = rect.center()
    perimeter = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))
    n = max(7, min(16, round(perimeter / (0.55 * min(a, b) + 8))))
    puff = perimeter / n * 0.42
    for i in range(n):
        theta = 2 * math.pi * i / n
        p = QPointF(c.x() + (a - puff * 0.75) * math.cos(theta), c.y() + (b - puff * 0.75) * math.sin(theta))
        cloud.addEllipse(p, puff, puff)
    cloud.setFillRule(Qt.WindingFill)  # overlapping puffs merge into one outline
    return cloud.simplified()


# ---------------------------------------------------------------------------
# painting


@dataclass
class RenderOptions:
    """How a page is painted. Exports use the defaults; the canvas adds guides and placeholders."""

    dpi: float | None = None  # resample pictures to this resolution (None: draw them as they are)
    placeholders: bool = False  # label empty frames (canvas only: never printed)
    guides: bool = False  # trim, bleed and safe-area lines
    numbers: bool = False  # balloon reading order
    panel_numbers: dict[str, int] = field(default_factory=dict)  # panel id -> number, for placeholders


def picture_placement(frame: Frame, image_w: int, image_h: int) -> QRectF:
    """Where the whole picture lands on the page for the frame's fit, zoom and pan."""
    b = frame.bounds
    if image_w <= 0 or image_h <= 0 or b.w <= 0 or b.h <= 0:
        return QRectF(b.x, b.y, b.w, b.h)
    fit = max if frame.fit == "cover" else min
    s = fit(b.w / image_w, b.h / image_h) * frame.zoom
    w, h = image_w * s, image_h * s
    x = b.x + (b.w - w) / 2 + frame.pan[0] * max(0.0, (w - b.w) / 2)
    y = b.y + (b.h - h) / 2 + frame.pan[1] * max(0.0, (h - b.h) / 2)
    return QRectF(x, y, w, h)


def paint_frame(painter: QPainter, frame: Frame, image: QImage | None, options: RenderOptions,
                label: str = "") -> None:
    """A frame: its picture clipped to the frame's shape, then the frame's border."""
    path = frame_path(frame)
    painter.save()
    painter.setRenderHint(QPainter.Antialiasing, True)
    painter.setRenderHint(QPainter.SmoothPixmapTransform, True)
    painter.fillPath(path, PAPER)
    if image is not None and not image.isNull():
        painter.setClipPath(path, Qt.IntersectClip)
        target = picture_placement(frame, image.width(), image.height())
        visible = target.intersected(path.boundingRect())
        if not visible.isEmpty():
            sx = image.width() / target.width()
            sy = image.height() / target.height()
            source = QRectF((visible.x() - target.x()) * sx, (visible.y() - target.y()) * sy,
                            visible.width() * sx, visible.height() * sy)
            if options.dpi:
                # embed only the visible part, at the output resolution (not the full-size PNG)
                px_w = max(1, round(visible.width() * options.dpi / 72))
                px_h = max(1, round(visible.height() * options.dpi / 72))
                cropped = image.copy(source.toAlignedRect())
                if cropped.width() != px_w or cropped.height() != px_h:
                    cropped = cropped.scaled(px_w, px_h, Qt.IgnoreAspectRatio, Qt.SmoothTransformation)
                painter.drawImage(visible, cropped)
            else:
                painter.drawImage(visible, image, source)
        painter.setClipping(False)
    elif options.placeholders:
        painter.fillPath(path, QColor(236, 236, 240))
        b = frame.bounds
        painter.setPen(QColor(120, 120, 130))
        painter.setFont(_font("Sans Serif", min(14.0, max(6.0, b.h / 10)), False, False, _device_dpi(painter)))
        painter.drawText(QRectF(b.x, b.y, b.w, b.h), Qt.AlignCenter | Qt.TextWordWrap, label or "Empty frame")
    pen = QPen(INK, FRAME_LINE)
    pen.setJoinStyle(Qt.MiterJoin)
    painter.setPen(pen)
    painter.setBrush(Qt.NoBrush)
    painter.drawPath(path)
    painter.restore()


def paint_balloon(painter: QPainter, balloon: Balloon, layout: Layout, number: int | None = None,
                  badge: QColor | None = None) -> TextFit:
    """A balloon (shape, tail, text). Returns the text fit, so callers can flag overflowing text.

    ``number`` draws its reading-order badge (in ``badge``'s colour; blue by default).
    """
    badge_colour = badge
    fit = fit_text(balloon, layout)
    family = balloon_font(balloon, layout)
    dpi = _device_dpi(painter)
    painter.save()
    painter.setRenderHint(QPainter.Antialiasing, True)
    painter.setRenderHint(QPainter.TextAntialiasing, True)
    if balloon.kind != "sfx":
        path = balloon_path(balloon)
        pen = QPen(INK, BALLOON_LINE)
        pen.setJoinStyle(Qt.RoundJoin)
        painter.setPen(pen)
        painter.setBrush(QBrush(CAPTION_FILL if balloon.kind == "caption" else PAPER))
        painter.drawPath(path)
    font = _font(family, fit.size, balloon.bold or balloon.kind == "sfx", balloon.italic, dpi)
    painter.setFont(font)
    align = {"left": Qt.AlignLeft, "right": Qt.AlignRight}.get(balloon.align, Qt.AlignHCenter) | Qt.AlignVCenter
    if balloon.kind == "sfx":
        # a thick ink outline behind bright letters; the letters themselves stay real text
        outline = QPainterPath()
        for line, box in fit.lines:
            width = _reference_width(line, family, True, balloon.italic) * fit.size / REFERENCE_SIZE
            x = _aligned_x(box, width, balloon.align)
            metrics = _reference_metrics(family, True, balloon.italic)
            ascent = metrics.ascent() * fit.size / REFERENCE_SIZE
            descent = metrics.descent() * fit.size / REFERENCE_SIZE
            baseline = box.y() + (box.height() + ascent - descent) / 2
            outline.addPath(_text_path(line, family, balloon.italic, x, baseline, fit.size))
        stroker = QPainterPathStroker()
        stroker.setWidth(max(1.5, fit.size * 0.16))
        stroker.setJoinStyle(Qt.RoundJoin)
        painter.fillPath(stroker.createStroke(outline), INK)
        painter.setPen(SFX_FILL)
    else:
        painter.setPen(INK)
    for line, box in fit.lines:
        painter.drawText(box, align, line)
    if number is not None:
        painter.setFont(_font("Sans Serif", 6.0, True, False, dpi))
        box = QRectF(balloon.x - 5, balloon.y - 5, 10, 10)
        painter.setPen(Qt.NoPen)
        painter.setBrush(badge_colour or QColor(40, 110, 220))
        painter.drawEllipse(box)
        painter.setPen(Qt.white)
        painter.drawText(box, Qt.AlignCenter, str(number))
    painter.restore()
    return fit


def _text_path(text: str, family: str, italic: bool, x: float, baseline: float, size: float) -> QPainterPath:
    """Bold glyph outlines of ``text`` at ``size`` points with the baseline starting at (x, baseline)."""
    font = QFont(family)
    font.setPixelSize(round(REFERENCE_SIZE))  # pixels are page units here, whatever the screen's DPI
    _set_style(font, family, True, italic)
    font.setHintingPreference(QFont.PreferNoHinting)
    path = QPainterPath()
    path.addText(QPointF(0, 0), font, text)
    scale = size / REFERENCE_SIZE
    return QTransform(scale, 0, 0, scale, x, baseline).map(path)


def _aligned_x(box: QRectF, width: float, align: str) -> float:
    if align == "left":
        return box.x()
    if align == "right":
        return box.right() - width
    return box.x() + (box.width() - width) / 2


def paint_guides(painter: QPainter, layout: Layout, page: Page) -> None:
    painter.save()
    painter.setBrush(Qt.NoBrush)
    for rect, color in ((layout.bleed_rect(page), QColor(220, 40, 40)), (layout.trim_rect(page), QColor(30, 30, 30)),
                        (layout.safe_rect(page), QColor(40, 120, 220))):
        pen = QPen(color, 0)  # cosmetic: one pixel at any zoom
        pen.setStyle(Qt.DashLine)
        painter.setPen(pen)
        painter.drawRect(QRectF(rect.x, rect.y, rect.w, rect.h))
    if page.spread:
        pen = QPen(QColor(120, 120, 120), 0)
        pen.setStyle(Qt.DotLine)
        painter.setPen(pen)
        x = layout.page_size.width
        painter.drawLine(QPointF(x, 0), QPointF(x, layout.page_height(page)))
    painter.restore()


def paint_page(painter: QPainter, layout: Layout, page: Page, images: dict[str, QImage],
               options: RenderOptions | None = None) -> list[str]:
    """Paint a whole page in page points. Returns warnings (overflowing text) in plain words."""
    options = options or RenderOptions()
    bleed = layout.bleed_rect(page)
    painter.fillRect(QRectF(bleed.x, bleed.y, bleed.w, bleed.h), PAPER)
    for frame in page.frames:
        number = options.panel_numbers.get(frame.panel or "")
        label = f"Panel {number}: no picture yet" if number else "Empty frame: drag a panel here"
        paint_frame(painter, frame, images.get(frame.panel) if frame.panel else None, options, label)
    warnings = []
    for i, balloon in enumerate(page.balloons, 1):
        fit = paint_balloon(painter, balloon, layout, i if options.numbers else None)
        if fit.overflow:
            warnings.append(f'the text "{_short(balloon.text)}" does not fit its {balloon.kind} balloon')
    if options.guides:
        paint_guides(painter, layout, page)
    return warnings


def _short(text: str, n: int = 30) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


# ---------------------------------------------------------------------------
# the pictures a project's frames show


def panel_images(project: Project, decoded: dict[str, QImage] | None = None) -> dict[str, QImage]:
    """Each panel's chosen picture as a QImage, by panel id (panels without one are left out).

    ``decoded`` (image name -> QImage) is a cache the caller keeps between
    calls: a picture already in it is not decoded again, and it is updated
    to hold exactly the pictures in use.
    """
    out: dict[str, QImage] = {}
    used: dict[str, QImage] = {}
    for panel in project.panels:
        version = panel.chosen_version
        data = project.images.get(version.image) if version else None
        if not data:
            continue
        image = decoded.get(version.image) if decoded is not None else None
        if image is None:
            image = decode_picture(data)
        if not image.isNull():
            out[panel.id] = used[version.image] = image
    if decoded is not None:
        decoded.clear()
        decoded.update(used)
    return out


def render_region(layout: Layout, page: Page, images: dict[str, QImage], region: Rect, dpi: float,
                  options: RenderOptions | None = None) -> QImage:
    """A part of a page (in points) as an RGB image at ``dpi``, with the DPI recorded in the image."""
    width = max(1, round(region.w * dpi / 72))
    height = max(1, round(region.h * dpi / 72))
    image = QImage(width, height, QImage.Format_RGB32)
    dots_per_meter = round(dpi / 0.0254)
    image.setDotsPerMeterX(dots_per_meter)
    image.setDotsPerMeterY(dots_per_meter)
    image.fill(PAPER)
    painter = QPainter(image)
    try:
        painter.scale(width / region.w, height / region.h)
        painter.translate(-region.x, -region.y)
        paint_page(painter, layout, page, images, options or RenderOptions(dpi=dpi))
    finally:
        painter.end()
    return image


def page_region(layout: Layout, page: Page, half: Rect | None = None, bleed: bool = False) -> Rect:
    """The part of a page that becomes one printed page: the trim (or a spread's half), plus bleed."""
    r = half or layout.trim_rect(page)
    b = layout.page_size.bleed if bleed else 0.0
    return Rect(r.x - b, r.y - b, r.w + 2 * b, r.h + 2 * b)


def page_size_points(region: Rect) -> QSizeF:
    return QSizeF(region.w, region.h)
