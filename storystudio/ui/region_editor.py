"""Where each character stands in a shared panel: boxes drawn over the panel view, moved and resized by mouse.

A thin layer over :mod:`storystudio.project.regions`: the geometry (moving,
resizing, keeping a box inside the panel) is there; this module only maps
the mouse to the panel's 0..1 coordinates, paints, and hands the result to an
undoable command. The same painter marks the boxes on the timeline's
thumbnails.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QWidget

from ..project.regions import Region

#: One colour per character, by its place in the cast.
COLOURS = ("#e8710a", "#1a73e8", "#d01884", "#188038", "#9334e6", "#12b5cb", "#f9ab00", "#5f6368")
HANDLE = 10  # pixels: grabbing this close to a box's bottom-right corner resizes it


def colour_for(index: int) -> QColor:
    return QColor(COLOURS[index % len(COLOURS)])


def fit_frame(area: QRectF, aspect: float) -> QRectF:
    """The largest rectangle of ``aspect`` (width / height) centred in ``area``: where the picture is shown."""
    if area.width() <= 0 or area.height() <= 0 or aspect <= 0:
        return QRectF()
    w = min(area.width(), area.height() * aspect)
    h = w / aspect
    return QRectF(area.center().x() - w / 2, area.center().y() - h / 2, w, h)


def box_rect(frame: QRectF, box: Sequence[float]) -> QRectF:
    left, top, right, bottom = box
    return QRectF(frame.left() + left * frame.width(), frame.top() + top * frame.height(),
                  (right - left) * frame.width(), (bottom - top) * frame.height())


def paint_regions(painter: QPainter, frame: QRectF, regions: Sequence[Region], cast: Sequence[str],
                  labels: bool = True, width: float = 2.0, active: str | None = None) -> None:
    """Each region's box in its character's colour, labelled with the name (later boxes on top)."""
    painter.save()
    painter.setRenderHint(QPainter.Antialiasing)
    for region in regions:
        colour = colour_for(cast.index(region.character) if region.character in cast else len(cast))
        rect = box_rect(frame, region.box)
        fill = QColor(colour)
        fill.setAlpha(70 if region.character == active else 35)
        painter.setPen(QPen(colour, width))
        painter.setBrush(fill)
        painter.drawRect(rect)
        if labels:
            font = QFont(painter.font())
            font.setBold(True)
            painter.setFont(font)
            text = region.character
            metrics = painter.fontMetrics()
            tag = QRectF(rect.left(), rect.top(), metrics.horizontalAdvance(text) + 10, metrics.height() + 4)
            painter.fillRect(tag, colour)
            painter.setPen(QColor("white"))
            painter.drawText(tag, Qt.AlignCenter, text)
            handle = QRectF(rect.right() - HANDLE, rect.bottom() - HANDLE, HANDLE, HANDLE)
            painter.fillRect(handle, colour)
    painter.restore()


class RegionOverlay(QWidget):
    """Transparent layer over a picture widget: the panel's boxes, dragged to move, corner-dragged to resize.

    ``edited(regions)`` is emitted once per finished drag with every box of
    the panel (the one moved last in front); the owner turns it into an undo
    command. The overlay never changes the project itself.
    """

    edited = Signal(list)

    def __init__(self, host: QWidget):
        super().__init__(host)
        self.setAttribute(Qt.WA_TranslucentBackground)
        self.setMouseTracking(True)
        self.regions: list[Region] = []
        self.cast: list[str] = []
        self.aspect = 1.0
        self._drag: tuple[str, str, QPointF, Region] | None = None  # (mode, character, start, region at start)
        host.installEventFilter(self)
        self.setGeometry(host.rect())
        self.hide()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.parent() and event.type() == QEvent.Resize:
            self.setGeometry(self.parentWidget().rect())
        return False

    def set_regions(self, regions: Sequence[Region], cast: Sequence[str], aspect: float) -> None:
        """Show ``regions`` (none hides the overlay) for a panel of ``aspect`` (width / height)."""
        if self._drag is not None:
            return  # the project's echo of our own edit arrives after the drag
        self.regions, self.cast, self.aspect = list(regions), list(cast), aspect
        self.setVisible(bool(self.regions))
        self.update()

    # ---- geometry -------------------------------------------------------------------------
    def frame(self) -> QRectF:
        return fit_frame(QRectF(self.rect()).adjusted(4, 4, -4, -4), self.aspect)

    def to_panel(self, point: QPointF) -> QPointF:
        frame = self.frame()
        return QPointF((point.x() - frame.left()) / max(frame.width(), 1.0),
                       (point.y() - frame.top()) / max(frame.height(), 1.0))

    def hit(self, point: QPointF) -> tuple[str, Region] | None:
        """("resize" or "move", the front-most region under ``point``), or None."""
        frame = self.frame()
        for region in reversed(self.regions):
            rect = box_rect(frame, region.box)
            corner = rect.bottomRight()
            if abs(point.x() - corner.x()) <= HANDLE and abs(point.y() - corner.y()) <= HANDLE:
                return "resize", region
            if rect.contains(point):
                return "move", region
        return None

    def dragged(self, mode: str, region: Region, start: QPointF, now: QPointF) -> Region:
        """Where a drag from ``start`` to ``now`` (widget pixels) puts ``region``."""
        a, b = self.to_panel(start), self.to_panel(now)
        if mode == "move":
            return region.moved(b.x() - a.x(), b.y() - a.y())
        left, top, _, _ = region.box
        return region.with_box((left, top, max(b.x(), left), max(b.y(), top)))

    def _replace(self, region: Region) -> None:
        self.regions = [r for r in self.regions if r.character != region.character] + [region]

    # ---- events ---------------------------------------------------------------------------
    def mousePressEvent(self, event) -> None:
        found = self.hit(event.position())
        if event.button() != Qt.LeftButton or found is None:
            event.ignore()
            return
        mode, region = found
        self._drag = (mode, region.character, event.position(), region)
        self._replace(region)  # the box picked up comes to the front
        self.update()

    def mouseMoveEvent(self, event) -> None:
        if self._drag is None:
            found = self.hit(event.position())
            shape = {"resize": Qt.SizeFDiagCursor, "move": Qt.SizeAllCursor}.get(found[0] if found else "")
            self.setCursor(shape) if shape is not None else self.unsetCursor()
            return
        mode, _, start, region = self._drag
        self._replace(self.dragged(mode, region, start, event.position()))
        self.update()

    def mouseReleaseEvent(self, event) -> None:
        if self._drag is None:
            return
        mode, _, start, region = self._drag
        self._drag = None
        moved = self.dragged(mode, region, start, event.position())
        self._replace(moved)
        self.update()
        if moved != region:
            self.edited.emit(list(self.regions))

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        active = self._drag[1] if self._drag is not None else None
        paint_regions(painter, self.frame(), self.regions, self.cast, active=active)
        painter.end()

