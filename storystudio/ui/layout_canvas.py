"""The layout canvas: comic pages edited with the mouse.

A page list on the left, the page in a ``QGraphicsView`` in the middle, tools
above. Frames and balloons are scene items that paint themselves with the
export's page renderer, so the canvas shows exactly what a PDF will contain.
Dragging previews on the item; letting go pushes one ``EditLayout`` command,
so every change is a single undo step.

Mouse: drag a frame or balloon to move it, drag its edge or corner to resize
(edges snap to margins, gutters and other frames); drag a frame's number
badge onto another frame to swap their panels; Alt+drag pans the picture
inside a frame and Alt+wheel zooms it; drag a speech balloon's tail tip;
double-click a balloon to edit its words in place. Ctrl+wheel zooms the page.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from PySide6.QtCore import QByteArray, QMimeData, QPointF, QRectF, QSignalBlocker, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QColor,
    QDrag,
    QFont,
    QIcon,
    QImage,
    QKeySequence,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
    QTextCursor,
    QTextOption,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGraphicsItem,
    QGraphicsScene,
    QGraphicsTextItem,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..export.page_render import (
    RenderOptions,
    balloon_font,
    balloon_path,
    fit_text,
    lettering_fonts,
    page_region,
    paint_balloon,
    paint_frame,
    paint_guides,
    panel_images,
    register_fonts,
    render_region,
)
from ..project.layout import (
    BALLOON_KINDS,
    CAPTION,
    PAGE_SIZES,
    TEMPLATES,
    Balloon,
    Frame,
    Layout,
    Page,
    Rect,
    add_lettering,
    add_page,
    auto_layout,
    bring_lettering_in_step,
    change_balloon_kind,
    change_page_size,
    delete_frames,
    delete_lettering,
    empty_frame,
    frame_at,
    generation_size,
    has_hand_edits,
    make_panel_words,
    mirror_pages,
    move_balloon,
    move_in_reading_order,
    page_check,
    place_panel,
    recut_page,
    recut_pages,
    reflow,
    set_lettering_panel,
    set_lettering_text,
    snap_lines,
    snap_move,
    snap_resize,
    source_line,
    swap_frames,
    unlettered,
    use_panel_words,
)
from .commands import EditLayout, EditLettering, SetPanelSizes
from .flow_layout import FlowRow
from .session import ProjectSession
from .timeline import MIME as PANEL_MIME

FRAME_MIME = "application/x-storystudio-frame"
HANDLE_PX = 7  # how close (in screen pixels) to an edge a press resizes instead of moving
SNAP_PX = 8
SELECTION = QColor(40, 110, 220)


def _tool(text: str, tip: str, slot: Callable[[], object]) -> QToolButton:
    button = QToolButton()
    button.setText(text)
    button.setToolTip(tip)
    button.clicked.connect(slot)
    return button


def _toggle(text: str, tip: str, bold: bool = False, italic: bool = False) -> QToolButton:
    """A checkable tool button showing its letter in bold or italic (B, I)."""
    button = QToolButton()
    button.setText(text)
    button.setToolTip(tip)
    button.setCheckable(True)
    font = button.font()
    font.setBold(bold)
    font.setItalic(italic)
    button.setFont(font)
    button.setMinimumWidth(button.sizeHint().height())
    return button


def _rect(r: Rect) -> QRectF:
    return QRectF(r.x, r.y, r.w, r.h)


def _edges_at(rect: QRectF, pos: QPointF, tolerance: float) -> str:
    """Which edges of ``rect`` the point is on (e.g. "lt" for the top-left corner)."""
    edges = ""
    if abs(pos.x() - rect.left()) <= tolerance:
        edges += "l"
    elif abs(pos.x() - rect.right()) <= tolerance:
        edges += "r"
    if abs(pos.y() - rect.top()) <= tolerance:
        edges += "t"
    elif abs(pos.y() - rect.bottom()) <= tolerance:
        edges += "b"
    return edges


_CURSORS = {"l": Qt.SizeHorCursor, "r": Qt.SizeHorCursor, "t": Qt.SizeVerCursor, "b": Qt.SizeVerCursor,
            "lt": Qt.SizeFDiagCursor, "rb": Qt.SizeFDiagCursor, "rt": Qt.SizeBDiagCursor, "lb": Qt.SizeBDiagCursor}


class _EditableItem(QGraphicsItem):
    """Shared drag logic: a press picks a mode, moves preview, the release commits once."""

    def __init__(self, canvas: LayoutCanvas, item_id: str):
        super().__init__()
        self.canvas = canvas
        self.item_id = item_id
        self.mode = ""
        self.press_pos = QPointF()
        self.start_rect = Rect(0, 0, 0, 0)
        self.preview = None  # the edited copy while the mouse drags; the model is changed on release
        self.setFlag(QGraphicsItem.ItemIsSelectable, True)
        self.setFlag(QGraphicsItem.ItemIsFocusable, True)
        self.setAcceptHoverEvents(True)

    def tolerance(self) -> float:
        return HANDLE_PX / max(self.canvas.view.zoom, 1e-6)

    def hoverMoveEvent(self, event) -> None:
        edges = _edges_at(_rect(self.current_rect()), event.pos(), self.tolerance())
        self.setCursor(_CURSORS.get(edges, Qt.ArrowCursor if not edges else Qt.SizeAllCursor))
        super().hoverMoveEvent(event)

    def lookup(self, page: Page):
        raise NotImplementedError

    def current(self):
        """The preview while dragging, else the model's object (None once it left the page)."""
        if self.preview is not None:
            return self.preview
        return self.lookup(self.canvas.page) if self.canvas.has_page() else None

    def current_rect(self) -> Rect:
        raise NotImplementedError

    def snapped(self, dx: float, dy: float) -> Rect:
        xs, ys = snap_lines(self.canvas.layout, self.canvas.page, exclude=self.item_id)
        tol = SNAP_PX / max(self.canvas.view.zoom, 1e-6)
        r = self.start_rect
        if self.mode == "move":
            return snap_move(Rect(r.x + dx, r.y + dy, r.w, r.h), xs, ys, tol)
        edges = self.mode.removeprefix("resize:")
        left, top, right, bottom = r.x, r.y, r.right, r.bottom
        left += dx if "l" in edges else 0
        right += dx if "r" in edges else 0
        top += dy if "t" in edges else 0
        bottom += dy if "b" in edges else 0
        moving = Rect(min(left, right - 1), min(top, bottom - 1), abs(right - left), abs(bottom - top))
        return snap_resize(moving, edges, xs, ys, tol)


class FrameItem(_EditableItem):
    def __init__(self, canvas: LayoutCanvas, frame: Frame):
        super().__init__(canvas, frame.id)
        self.drop_hover = False
        self.setAcceptDrops(True)
        self.setZValue(0)

    def lookup(self, page: Page) -> Frame | None:
        return page.frame_by_id(self.item_id)

    @property
    def frame(self) -> Frame | None:
        return self.current()

    def current_rect(self) -> Rect:
        return self.frame.bounds

    def boundingRect(self) -> QRectF:
        if self.frame is None:  # gone from the model; the scene is about to be rebuilt
            return QRectF()
        pad = 4 + HANDLE_PX / max(self.canvas.view.zoom, 1e-6)
        return _rect(self.frame.bounds).adjusted(-pad, -pad, pad, pad)

    def shape(self) -> QPainterPath:
        path = QPainterPath()
        if self.frame is not None:
            path.addRect(_rect(self.frame.bounds).adjusted(-2, -2, 2, 2))
        return path

    def badge_rect(self) -> QRectF:
        b = self.frame.bounds
        size = 16 / max(self.canvas.view.zoom, 1e-6)
        return QRectF(b.x + b.w - size - 3, b.y + b.h - size - 3, size, size)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        frame = self.frame
        if frame is None:
            return
        image = self.canvas.images.get(frame.panel) if frame.panel else None
        number = self.canvas.panel_numbers.get(frame.panel or "")
        label = f"Panel {number}: no picture yet" if number else "Empty frame: drag a panel here"
        paint_frame(painter, frame, image, RenderOptions(placeholders=True), label)
        if number and self.canvas.show_guides:  # the badge: drag it onto another frame to swap panels
            badge = self.badge_rect()
            painter.setPen(Qt.NoPen)
            painter.setBrush(QColor(0, 0, 0, 150))
            painter.drawRoundedRect(badge, badge.width() * 0.25, badge.width() * 0.25)
            painter.setPen(Qt.white)
            font = QFont()
            font.setPixelSize(max(1, round(badge.height() * 0.65)))
            painter.setFont(font)
            painter.drawText(badge, Qt.AlignCenter, str(number))
        if self.isSelected() or self.drop_hover:
            pen = QPen(SELECTION, 0 if self.isSelected() else 3 / max(self.canvas.view.zoom, 1e-6))
            painter.setPen(pen)
            painter.setBrush(Qt.NoBrush)
            painter.drawRect(_rect(frame.bounds))
            if self.isSelected():
                _paint_handles(painter, _rect(frame.bounds), self.canvas.view.zoom)

    # ---- mouse -------------------------------------------------------------------------
    def mousePressEvent(self, event) -> None:
        if event.button() != Qt.LeftButton:
            return super().mousePressEvent(event)
        self.press_pos = event.scenePos()
        self.start_rect = self.frame.bounds
        self.start_pan = self.frame.pan
        edges = _edges_at(_rect(self.start_rect), event.pos(), self.tolerance())
        if event.modifiers() & Qt.AltModifier and self.frame.panel:
            self.mode = "pan"
        elif self.frame.panel and self.canvas.show_guides and self.badge_rect().contains(event.pos()):
            self.mode = "badge"
        elif edges:
            self.mode = "resize:" + edges
        else:
            self.mode = "move"
        self.canvas.select_only(self)
        event.accept()

    def mouseMoveEvent(self, event) -> None:
        d = event.scenePos() - self.press_pos
        if self.mode == "badge":
            if d.manhattanLength() * self.canvas.view.zoom > 6:
                self.mode = ""
                self.canvas.start_frame_drag(self)
            return
        frame = copy.deepcopy(self.canvas.page.frame_by_id(self.item_id))
        if frame is None:
            return
        if self.mode == "pan":
            b = frame.bounds
            frame.pan = (max(-1.0, min(1.0, self.start_pan[0] + 2 * d.x() / max(b.w, 1))),
                         max(-1.0, min(1.0, self.start_pan[1] + 2 * d.y() / max(b.h, 1))))
        elif self.mode:
            frame.points = frame.fitted_to(self.snapped(d.x(), d.y()))
        self.prepareGeometryChange()
        self.preview = frame
        self.update()

    def mouseReleaseEvent(self, event) -> None:
        preview, self.preview, mode = self.preview, None, self.mode
        self.mode = ""
        self.prepareGeometryChange()
        if preview is None or mode in ("", "badge"):
            return
        what = {"pan": "Pan picture", "move": "Move frame"}.get(mode, "Resize frame")
        self.canvas.edit_frame(self.item_id, what, points=preview.points, pan=preview.pan)

    def wheelEvent(self, event) -> None:
        if event.modifiers() & Qt.AltModifier and self.frame.panel:
            steps = event.delta() / 120
            zoom = max(1.0, min(8.0, self.frame.zoom * (1.1 ** steps)))
            self.canvas.edit_frame(self.item_id, "Zoom picture", zoom=zoom, merge=f"zoom:{self.item_id}")
            event.accept()
        else:
            event.ignore()

    def mouseDoubleClickEvent(self, event) -> None:
        if self.frame.panel:
            self.canvas.panel_activated.emit(self.frame.panel)

    # ---- drops: a panel from the timeline, or another frame's panel ----------------------
    def dragEnterEvent(self, event) -> None:
        data = event.mimeData()
        if data.hasFormat(PANEL_MIME) or data.hasFormat(FRAME_MIME):
            self.drop_hover = True
            self.update()
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragLeaveEvent(self, event) -> None:
        self.drop_hover = False
        self.update()

    def dropEvent(self, event) -> None:
        self.drop_hover = False
        data = event.mimeData()
        if data.hasFormat(FRAME_MIME):
            page_id, frame_id = bytes(data.data(FRAME_MIME)).decode().split("\n")
            self.canvas.swap_frames(page_id, frame_id, self.item_id)
        elif data.hasFormat(PANEL_MIME):
            ids = [i for i in bytes(data.data(PANEL_MIME)).decode().split("\n") if i]
            if ids:
                self.canvas.place_panel(ids[0], self.item_id)
        event.acceptProposedAction()
        self.update()

    def contextMenuEvent(self, event) -> None:
        self.canvas.select_only(self)
        self.canvas.frame_menu(self.item_id).exec(event.screenPos())


def _paint_handles(painter: QPainter, rect: QRectF, zoom: float) -> None:
    size = 6 / max(zoom, 1e-6)
    painter.setPen(QPen(SELECTION, 0))
    painter.setBrush(Qt.white)
    for x in (rect.left(), rect.center().x(), rect.right()):
        for y in (rect.top(), rect.center().y(), rect.bottom()):
            if x == rect.center().x() and y == rect.center().y():
                continue
            painter.drawRect(QRectF(x - size / 2, y - size / 2, size, size))


#: Reading-order badges (with guides on) say whose words a balloon shows.
BADGE_TIED = QColor(40, 110, 220)  # its panel's caption or dialogue
BADGE_OWN = QColor(140, 70, 200)  # a panel's lettering with words of its own
BADGE_FREE = QColor(225, 115, 20)  # free lettering, no panel


class BalloonItem(_EditableItem):
    def __init__(self, canvas: LayoutCanvas, balloon: Balloon, number: int):
        super().__init__(canvas, balloon.id)
        self.number = number
        self.setZValue(10 + number)
        self.setToolTip(canvas.describe_owner(balloon))

    def badge_colour(self) -> QColor:
        b = self.balloon
        if b is None or b.free or b.panel not in self.canvas.panel_numbers:
            return BADGE_FREE
        return BADGE_TIED if b.tied else BADGE_OWN

    def lookup(self, page: Page) -> Balloon | None:
        return page.balloon_by_id(self.item_id)

    @property
    def balloon(self) -> Balloon | None:
        return self.current()

    def current_rect(self) -> Rect:
        return self.balloon.rect

    def boundingRect(self) -> QRectF:
        b = self.balloon
        if b is None:
            return QRectF()
        pad = 8 + HANDLE_PX / max(self.canvas.view.zoom, 1e-6)
        rect = balloon_path(b).boundingRect().united(_rect(b.rect))
        if b.has_tail:
            rect = rect.united(QRectF(QPointF(*b.tail), QSize(1, 1)))  # type: ignore[arg-type]
        return rect.adjusted(-pad, -pad, pad, pad)

    def shape(self) -> QPainterPath:
        path = QPainterPath()
        if self.balloon is None:
            return path
        path.addRect(_rect(self.balloon.rect).adjusted(-2, -2, 2, 2))
        if self.balloon.has_tail:
            tip = QPointF(*self.balloon.tail)  # type: ignore[misc]
            r = HANDLE_PX / max(self.canvas.view.zoom, 1e-6)
            path.addEllipse(tip, r, r)
        return path

    def paint(self, painter: QPainter, option, widget=None) -> None:
        b = self.balloon
        if b is None or self.canvas.editing == self.item_id:
            return  # the in-place editor shows the words
        fit = paint_balloon(painter, b, self.canvas.layout, self.number if self.canvas.show_guides else None,
                            self.badge_colour())
        if fit.overflow:
            painter.setPen(QPen(QColor(220, 30, 30), 0, Qt.DashLine))
            painter.setBrush(Qt.NoBrush)
            painter.drawRect(_rect(b.rect))
        if self.isSelected():
            painter.setPen(QPen(SELECTION, 0, Qt.DashLine))
            painter.setBrush(Qt.NoBrush)
            painter.drawRect(_rect(b.rect))
            _paint_handles(painter, _rect(b.rect), self.canvas.view.zoom)
            if b.has_tail:
                r = 4 / max(self.canvas.view.zoom, 1e-6)
                painter.setBrush(SELECTION)
                painter.drawEllipse(QPointF(*b.tail), r, r)  # type: ignore[misc]

    def mousePressEvent(self, event) -> None:
        if event.button() != Qt.LeftButton:
            return super().mousePressEvent(event)
        b = self.balloon
        self.press_pos = event.scenePos()
        self.start_rect = b.rect
        self.start_tail = b.tail
        tol = self.tolerance()
        if b.has_tail and (QPointF(*b.tail) - event.pos()).manhattanLength() <= 2 * tol:  # type: ignore[misc]
            self.mode = "tail"
        else:
            edges = _edges_at(_rect(b.rect), event.pos(), tol)
            self.mode = "resize:" + edges if edges else "move"
        self.canvas.select_only(self)
        event.accept()

    def mouseMoveEvent(self, event) -> None:
        d = event.scenePos() - self.press_pos
        balloon = copy.deepcopy(self.canvas.page.balloon_by_id(self.item_id))
        if balloon is None or not self.mode:
            return
        if self.mode == "tail":
            p = event.scenePos()
            balloon.tail = (round(p.x(), 2), round(p.y(), 2))
        else:
            move_balloon(balloon, self.snapped(d.x(), d.y()))  # a moved balloon takes its tail along
        self.prepareGeometryChange()
        self.preview = balloon
        self.update()

    def mouseReleaseEvent(self, event) -> None:
        preview, self.preview, mode = self.preview, None, self.mode
        self.mode = ""
        self.prepareGeometryChange()
        if preview is None or not mode:
            return
        what = {"tail": "Move balloon tail", "move": "Move balloon"}.get(mode, "Resize balloon")
        self.canvas.edit_balloon(self.item_id, what, x=preview.x, y=preview.y, w=preview.w, h=preview.h,
                                 tail=preview.tail)

    def mouseDoubleClickEvent(self, event) -> None:
        self.canvas.edit_text(self.item_id)

    def contextMenuEvent(self, event) -> None:
        self.canvas.select_only(self)
        self.canvas.balloon_menu(self.item_id).exec(event.screenPos())


class _TextEditor(QGraphicsTextItem):
    """Edits a balloon's words in place; leaving it (or Ctrl+Enter) keeps them, Escape drops them."""

    def __init__(self, canvas: LayoutCanvas, balloon: Balloon):
        super().__init__(balloon.text)
        self.canvas = canvas
        self.balloon_id = balloon.id
        self.done = False
        fit = fit_text(balloon, canvas.layout)
        font = QFont(balloon_font(balloon, canvas.layout))
        font.setPixelSize(max(1, round(fit.size)))  # one scene unit is one point
        self.setFont(font)
        self.setDefaultTextColor(QColor(20, 20, 20))
        self.setTextInteractionFlags(Qt.TextEditorInteraction)
        self.setTextWidth(balloon.w)
        option = QTextOption(Qt.AlignHCenter)
        option.setWrapMode(QTextOption.WordWrap)
        self.document().setDefaultTextOption(option)
        self.setPos(balloon.x, balloon.y)
        self.setZValue(1000)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        painter.fillRect(self.boundingRect(), QColor(255, 255, 255, 235))
        painter.setPen(QPen(SELECTION, 0))
        painter.drawRect(self.boundingRect())
        super().paint(painter, option, widget)

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key_Escape:
            self.finish(keep=False)
            return
        if event.key() in (Qt.Key_Return, Qt.Key_Enter) and event.modifiers() & Qt.ControlModifier:
            self.finish(keep=True)
            return
        super().keyPressEvent(event)

    def focusOutEvent(self, event) -> None:
        super().focusOutEvent(event)
        self.finish(keep=True)

    def finish(self, keep: bool) -> None:
        if self.done:
            return
        self.done = True
        text = self.toPlainText() if keep else None
        # later, not now: the edit rebuilds the scene, which must not delete this item inside its own event
        QTimer.singleShot(0, lambda: self.canvas.finish_text(self.balloon_id, text))


class PageView(QGraphicsView):
    """The page in a scrollable, zoomable view. Ctrl+wheel zooms; the zoom is kept per session."""

    def __init__(self, scene: QGraphicsScene, parent=None):
        super().__init__(scene, parent)
        self.setRenderHints(QPainter.Antialiasing | QPainter.TextAntialiasing | QPainter.SmoothPixmapTransform)
        self.setBackgroundBrush(QColor(110, 112, 118))
        self.setDragMode(QGraphicsView.RubberBandDrag)
        self.setAcceptDrops(True)
        self.setViewportUpdateMode(QGraphicsView.FullViewportUpdate)
        self.zoom = 1.0
        self.fitting = True

    def set_zoom(self, zoom: float) -> None:
        self.zoom = max(0.1, min(12.0, zoom))
        self.fitting = False
        self.resetTransform()
        self.scale(self.zoom, self.zoom)

    def fit(self) -> None:
        rect = self.sceneRect()
        if rect.isEmpty() or self.viewport().width() < 10:
            return
        self.fitting = True
        self.fitInView(rect, Qt.KeepAspectRatio)
        self.zoom = self.transform().m11()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.fitting:
            self.fit()

    def wheelEvent(self, event) -> None:
        if event.modifiers() & Qt.ControlModifier:
            self.set_zoom(self.zoom * (1.15 ** (event.angleDelta().y() / 120)))
            event.accept()
        else:
            super().wheelEvent(event)


class LayoutCanvas(QWidget):
    """Pages of the comic: a page list, the page editor and its tools."""

    panel_activated = Signal(str)  # double-click on a frame: show that panel
    regenerate_requested = Signal(list)  # panel ids to draw again (after taking a frame's shape)
    page_selected = Signal(int)

    def __init__(self, session: ProjectSession, parent=None):
        super().__init__(parent)
        self.session = session
        self.current = 0  # index of the page shown
        self.images: dict[str, QImage] = {}  # by panel id
        self._decoded: dict[str, QImage] = {}  # by image name
        self.panel_numbers: dict[str, int] = {}
        self.editing: str | None = None
        self.editor: _TextEditor | None = None
        self.show_guides = True
        self.scene = QGraphicsScene(self)
        self.view = PageView(self.scene)
        self.pages = QListWidget()
        # list mode, not icon mode: there an internal drag reorders the rows (icon mode only moves icons)
        self.pages.setIconSize(QSize(72, 108))
        self.pages.setSpacing(2)
        self.pages.setDragDropMode(QAbstractItemView.InternalMove)
        self.pages.setToolTip("Pages in reading order: drag one to move it; right-click for more")
        self.pages.setContextMenuPolicy(Qt.CustomContextMenu)
        self.pages.customContextMenuRequested.connect(self._page_menu)
        self.pages.currentRowChanged.connect(self._page_row_changed)
        self.pages.model().rowsMoved.connect(self._pages_reordered)
        self._build_tools()
        self.empty_note = QLabel("No pages yet. Choose a page size and press <b>Lay Out Story</b> to place "
                                 "every panel on pages, with captions and balloons from the story.")
        self.empty_note.setWordWrap(True)
        self.empty_note.setAlignment(Qt.AlignCenter)

        right = QWidget()
        column = QVBoxLayout(right)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.balloon_tools)
        column.addWidget(self.check_bar)
        column.addWidget(self.empty_note, 1)
        column.addWidget(self.view, 1)
        splitter = QSplitter()
        splitter.addWidget(self.side)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([170, 800])
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(splitter, 1)

        self.thumb_timer = QTimer(self)
        self.thumb_timer.setSingleShot(True)
        self.thumb_timer.setInterval(250)
        self.thumb_timer.timeout.connect(self._refresh_thumbnails)
        self._refresh_pending = False
        self._select_next: set[str] = set()  # ids to select once the scene is rebuilt
        session.layout_changed.connect(self.schedule_refresh)
        session.project_replaced.connect(self._project_replaced)
        session.panels_changed.connect(self._panels_changed)
        session.panel_changed.connect(self._panel_changed)
        self.scene.selectionChanged.connect(self._selection_changed)
        self._project_replaced()

    # ---- model access ------------------------------------------------------------------
    @property
    def layout(self) -> Layout:
        return self.session.project.layout

    @property
    def page(self) -> Page:
        return self.layout.pages[self.current]

    def has_page(self) -> bool:
        return 0 <= self.current < len(self.layout.pages)

    # ---- tools -------------------------------------------------------------------------
    def _build_tools(self) -> None:
        # the side column: what pages there are and how they are cut
        self.side = QWidget()
        side = QVBoxLayout(self.side)
        side.setContentsMargins(4, 4, 4, 4)
        self.auto_button = QPushButton("Lay Out Story")
        self.auto_button.setToolTip("Place every panel on pages in story order, with captions and balloons "
                                    "(undo brings the previous pages back)")
        self.auto_button.clicked.connect(self.lay_out_story)
        self.size_box = QComboBox()
        for size in PAGE_SIZES.values():
            self.size_box.addItem(size.name, size.id)
            self.size_box.setItemData(self.size_box.count() - 1, size.describe(), Qt.ToolTipRole)
        self.size_box.setToolTip("Page size (trim); bleed and safe area follow it")
        self.size_box.activated.connect(lambda _: self.set_page_size(self.size_box.currentData()))
        self.direction_box = QComboBox()
        self.direction_box.addItem("Left to right", "ltr")
        self.direction_box.addItem("Right to left (manga)", "rtl")
        self.direction_box.setToolTip("Reading direction of frames and pages")
        self.direction_box.activated.connect(lambda _: self.set_direction(self.direction_box.currentData()))
        self.template_box = QComboBox()
        for template in TEMPLATES.values():
            self.template_box.addItem(template.name, template.id)
        self.template_box.setToolTip("Re-cut the page shown with this template; its panels stay in order")
        self.template_box.activated.connect(lambda _: self.apply_template(self.template_box.currentData()))
        buttons = QHBoxLayout()
        add_page = QToolButton()
        add_page.setText("+ Page")
        add_page.setToolTip("Add a page after this one")
        add_page.clicked.connect(self.add_page)
        remove_page = QToolButton()
        remove_page.setText("− Page")
        remove_page.setToolTip("Remove this page (its panels stay in the story)")
        remove_page.clicked.connect(self.remove_page)
        buttons.addWidget(add_page)
        buttons.addWidget(remove_page)
        self.gutter_spin = QDoubleSpinBox()
        self.gutter_spin.setRange(0, 72)
        self.gutter_spin.setSingleStep(1)
        self.gutter_spin.setSuffix(" pt gutter")
        self.gutter_spin.setToolTip("Space between frames, in points (72 pt = 1 inch); pages cut from a template "
                                    "are cut again")
        self.gutter_spin.editingFinished.connect(lambda: self.set_spacing(gutter=self.gutter_spin.value()))
        self.margin_spin = QDoubleSpinBox()
        self.margin_spin.setRange(0, 144)
        self.margin_spin.setSingleStep(1)
        self.margin_spin.setSuffix(" pt margin")
        self.margin_spin.setToolTip("Distance of the frames from the trim, in points; the size's safe margin "
                                    "by default")
        self.margin_spin.editingFinished.connect(lambda: self.set_spacing(margin=self.margin_spin.value()))
        for combo in (self.size_box, self.direction_box, self.template_box):
            # long names must not make the column (and so the window) wider than a laptop allows
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(5)
        for widget in (self.auto_button, self.size_box, self.direction_box, self.gutter_spin, self.margin_spin,
                       QLabel("This page:"), self.template_box):
            side.addWidget(widget)
        side.addWidget(self.pages, 1)
        side.addLayout(buttons)
        self.side.setMaximumWidth(240)
        self.side.setMinimumWidth(90)  # squeezes in a narrow window instead of widening it

        # the lettering tools, in rows that wrap when the window is narrow: nothing hides behind a "»"
        add = self.add_button = QToolButton()
        add.setText("Add Lettering")
        add.setToolTip("Add lettering in the selected frame (else the frame in the middle of the view); it "
                       "belongs to that frame's panel: a speech or thought balloon is a new line of its dialogue")
        add.setPopupMode(QToolButton.InstantPopup)
        menu = QMenu(add)
        for kind, label in BALLOON_KINDS.items():
            menu.addAction(label, lambda k=kind: self.add_balloon_and_write(k))
        menu.addSeparator()
        free = menu.addMenu("Free Lettering (No Panel)")
        for kind, label in BALLOON_KINDS.items():
            free.addAction(label, lambda k=kind: self.add_balloon_and_write(k, free=True))
        add.setMenu(menu)
        self.font_box = QComboBox()
        self.font_box.setToolTip("Lettering font of the selected balloons (or of the whole comic)")
        # as wide as the longest bundled font's name (a long system name is cut, never a bundled one)
        self.font_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.font_box.setMinimumContentsLength(max((len(f) for f in register_fonts()), default=10) + 1)
        self.font_box.activated.connect(lambda _: self.set_font(self.font_box.currentText()))
        self.size_spin = QDoubleSpinBox()
        self.size_spin.setRange(0, 200)
        self.size_spin.setSingleStep(0.5)
        self.size_spin.setSpecialValueText("Auto")
        self.size_spin.setSuffix(" pt")
        self.size_spin.setToolTip("Lettering size; Auto fits the words to the balloon")
        self.size_spin.editingFinished.connect(lambda: self.set_text_size(self.size_spin.value()))
        self.bold_box = _toggle("B", "Bold", bold=True)
        self.bold_box.clicked.connect(lambda on: self.set_balloon_fields("Bold", bold=on))
        self.italic_box = _toggle("I", "Italic", italic=True)
        self.italic_box.clicked.connect(lambda on: self.set_balloon_fields("Italic", italic=on))
        self.align_box = QComboBox()
        self.align_box.setToolTip("Alignment of the selected balloons' words")
        for align in ("left", "center", "right"):
            self.align_box.addItem(align.title(), align)
        self.align_box.activated.connect(
            lambda _: self.set_balloon_fields("Align text", align=self.align_box.currentData()))
        self.delete_action = QAction("Delete", self)
        self.delete_action.setShortcut(QKeySequence.Delete)
        self.delete_action.setShortcutContext(Qt.WidgetWithChildrenShortcut)
        self.delete_action.setToolTip("Delete the selected balloons and frames (Delete); a balloon showing a "
                                      "panel's words takes them from the panel")
        self.delete_action.triggered.connect(self.delete_selected)
        self.addAction(self.delete_action)
        delete = QToolButton()
        delete.setDefaultAction(self.delete_action)
        zoom_out = _tool("−", "Zoom out (Ctrl+wheel)", lambda: self.view.set_zoom(self.view.zoom / 1.25))
        zoom_in = _tool("+", "Zoom in (Ctrl+wheel)", lambda: self.view.set_zoom(self.view.zoom * 1.25))
        fit = _tool("Fit", "Fit the page in the view", lambda: self.view.fit())
        self.guides_box = QCheckBox("Guides")  # off: the page exactly as it prints
        self.guides_box.setChecked(True)
        self.guides_box.setToolTip(
            "Bleed (red), trim (black) and safe area (blue), panel numbers (drag one onto another frame to swap "
            "panels) and the balloons' reading order, coloured by whose words they show: blue, a panel's caption "
            "or dialogue; purple, a panel's lettering with words of its own; orange, free lettering")
        self.guides_box.toggled.connect(self._toggle_guides)
        self.balloon_tools = FlowRow(add, self.font_box, self.size_spin, self.bold_box, self.italic_box,
                                     self.align_box, delete, zoom_out, zoom_in, fit, self.guides_box)
        self.balloon_tools.setContentsMargins(4, 3, 4, 3)
        # in a window far smaller than 1280 x 800 the tools may be cut, but the window can still shrink
        self.balloon_tools.setMinimumWidth(100)

        # when the pages no longer follow the story: say so, and offer to put it right
        self.check_bar = QWidget()
        self.check_bar.setStyleSheet("background: #fff4d6; color: #5a4300;")
        self.check_label = QLabel()
        self.check_label.setWordWrap(True)
        self.reflow_button = QPushButton("Reflow Pages")
        self.reflow_button.setToolTip("Put the panels back in story order in the frames you have; their lettering "
                                      "comes along, and panels not on a page yet get new pages")
        self.reflow_button.clicked.connect(self.reflow)
        self.letter_button = QPushButton("Letter Missing Words")
        self.letter_button.setToolTip("Give every caption and dialogue line of the placed panels a balloon. A balloon "
                                      "that says something else (from an older StoryStudio) can show its panel's "
                                      "words instead: right-click it")
        self.letter_button.clicked.connect(self.letter_missing_words)
        bar = QVBoxLayout(self.check_bar)
        bar.setContentsMargins(6, 4, 6, 4)
        bar.addWidget(self.check_label)
        bar.addWidget(FlowRow(self.reflow_button, self.letter_button))
        self.check_bar.setVisible(False)

    def _fill_fonts(self) -> None:
        self.font_box.blockSignals(True)
        self.font_box.clear()
        self.font_box.addItems(lettering_fonts())
        self.font_box.blockSignals(False)

    def _sync_tools(self) -> None:
        layout = self.layout
        with QSignalBlocker(self.size_box), QSignalBlocker(self.direction_box), QSignalBlocker(self.gutter_spin), \
                QSignalBlocker(self.margin_spin):
            self.size_box.setCurrentIndex(max(0, self.size_box.findData(layout.size)))
            self.direction_box.setCurrentIndex(max(0, self.direction_box.findData(layout.direction)))
            self.gutter_spin.setValue(layout.gutter)
            self.margin_spin.setValue(layout.frame_margin)
        if self.has_page():
            self.template_box.setCurrentIndex(max(0, self.template_box.findData(self.page.template)))
        balloons = self.selected_balloons()
        target = balloons[0] if balloons else None
        self.font_box.blockSignals(True)
        self.font_box.setCurrentText(balloon_font(target, layout) if target else layout.font)
        self.font_box.blockSignals(False)
        self.size_spin.blockSignals(True)
        self.size_spin.setValue((target.size or 0) if target else layout.font_size)
        self.size_spin.setSpecialValueText("Auto" if target else "")
        self.size_spin.blockSignals(False)
        for widget in (self.bold_box, self.italic_box, self.align_box):
            widget.setEnabled(target is not None)
        if target:
            self.bold_box.setChecked(target.bold)
            self.italic_box.setChecked(target.italic)
            self.align_box.setCurrentIndex(self.align_box.findData(target.align))
        has_page = self.has_page()
        self.template_box.setEnabled(has_page)
        self.auto_button.setDefault(not has_page)
        self.empty_note.setVisible(not has_page)
        self.view.setVisible(has_page)

    # ---- redraw ------------------------------------------------------------------------
    def _project_replaced(self) -> None:
        self._fill_fonts()
        self.current = 0
        self._reload_images()
        self.refresh()
        self.view.fit()

    def _reload_images(self) -> None:
        # decoded pictures are kept by image name: reordering or a new version decodes only what is new
        self.images = panel_images(self.session.project, self._decoded)
        self.panel_numbers = {p.id: i for i, p in enumerate(self.session.project.panels, 1)}

    def _panels_changed(self) -> None:
        self._reload_images()
        self.refresh()

    def _panel_changed(self, panel_id: str) -> None:
        self._reload_images()
        self.session.project.resolve_words()  # its words may have changed: the balloons show them
        if self.has_page() and panel_id in self.page.panels():
            self.scene.update()
        self.thumb_timer.start()

    def schedule_refresh(self) -> None:
        """Rebuild soon, not now: a change often comes from inside an item's own mouse or drop
        event, and rebuilding the scene there would delete the item under its own feet."""
        if not self._refresh_pending:
            self._refresh_pending = True
            QTimer.singleShot(0, self._scheduled_refresh)

    def _scheduled_refresh(self) -> None:
        self._refresh_pending = False
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the scene for the current page (keeping the selection) and the page list."""
        if self.editor is not None:
            return  # never pull the words from under the user's cursor; finishing the edit refreshes
        self.session.project.resolve_words()
        pages = self.layout.pages
        self.current = min(max(self.current, 0), len(pages) - 1) if pages else 0
        selected = {item.item_id for item in self.scene.selectedItems() if isinstance(item, _EditableItem)}
        if self._select_next:
            selected, self._select_next = self._select_next, set()
        self.scene.blockSignals(True)
        self.scene.clear()
        self.scene.blockSignals(False)
        if self.has_page():
            page = self.page
            bleed = self.layout.bleed_rect(page)
            margin = 24
            self.scene.setSceneRect(_rect(bleed).adjusted(-margin, -margin, margin, margin))
            self.scene.addItem(_PaperItem(self))
            self.scene.addItem(_GuidesItem(self))
            for frame in page.frames:
                self.scene.addItem(FrameItem(self, frame))
            for number, balloon in enumerate(page.balloons, 1):
                self.scene.addItem(BalloonItem(self, balloon, number))
            for item in self.scene.items():
                if isinstance(item, _EditableItem) and item.item_id in selected:
                    item.setSelected(True)
        self._refresh_page_list()
        self._sync_tools()
        self._show_check()
        self.thumb_timer.start()

    def _show_check(self) -> None:
        """Tell when the pages no longer follow the story (and offer to reflow them)."""
        check = page_check(self.layout, self.session.project.panels)
        self.check = check
        text = check.describe()
        self.check_label.setText(text)
        self.reflow_button.setVisible(not check.follows_story)
        self.letter_button.setVisible(bool(check.unlettered))
        self.check_bar.setVisible(bool(text))

    def _refresh_page_list(self) -> None:
        self.pages.blockSignals(True)
        self.pages.model().blockSignals(True)
        self.pages.clear()
        stale = set(page_check(self.layout, self.session.project.panels).stale_pages)
        for index, page in enumerate(self.layout.pages):
            label = f"Page {index + 1}" + (" (spread)" if page.spread else "")
            item = QListWidgetItem(f"{index + 1}" + (" ⇔" if page.spread else ""))
            item.setData(Qt.UserRole, page.id)
            item.setToolTip(f"{label}: {TEMPLATES[page.template].name if page.template in TEMPLATES else 'custom'}"
                            f", {len(page.frames)} frames")
            if index + 1 in stale:
                item.setBackground(QColor(255, 228, 160))
                item.setForeground(QColor(90, 60, 0))
                item.setToolTip(item.toolTip() + "; its panels are no longer in story order (Reflow Pages)")
            self.pages.addItem(item)
        if self.layout.pages:
            self.pages.setCurrentRow(self.current)
        self.pages.model().blockSignals(False)
        self.pages.blockSignals(False)

    def _refresh_thumbnails(self) -> None:
        for row in range(self.pages.count()):
            if row >= len(self.layout.pages):
                break
            page = self.layout.pages[row]
            image = render_region(self.layout, page, self.images, page_region(self.layout, page), 10,
                                  RenderOptions(dpi=None))
            self.pages.item(row).setIcon(QIcon(QPixmap.fromImage(image)))

    def _toggle_guides(self, on: bool) -> None:
        self.show_guides = on
        self.scene.update()

    def _page_row_changed(self, row: int) -> None:
        if 0 <= row < len(self.layout.pages) and row != self.current:
            self.show_page(row)

    def show_page(self, index: int) -> None:
        self.current = index
        self.refresh()
        self.page_selected.emit(index)
        if self.view.fitting:
            self.view.fit()

    def select_only(self, item: QGraphicsItem) -> None:
        if not item.isSelected():
            self.scene.clearSelection()
            item.setSelected(True)

    def _selection_changed(self) -> None:
        self._sync_tools()

    def selected_balloons(self) -> list[Balloon]:
        if not self.has_page():
            return []
        ids = [i.item_id for i in self.scene.selectedItems() if isinstance(i, BalloonItem)]
        return [b for b in self.page.balloons if b.id in ids]

    def selected_frames(self) -> list[Frame]:
        if not self.has_page():
            return []
        ids = [i.item_id for i in self.scene.selectedItems() if isinstance(i, FrameItem)]
        return [f for f in self.page.frames if f.id in ids]

    # ---- edits (each one undo step) -------------------------------------------------------
    def edit(self, text: str, change: Callable[[Layout], object], merge: str = "") -> object:
        command = EditLayout(self.session, text, change, merge)
        if command.changes_nothing:
            return command.result
        self.session.undo.push(command)
        return command.result

    def edit_words(self, text: str, change: Callable[[Layout, dict], object], merge: str = "") -> object:
        """A change to the pages that may change panels' words too (one undo step for both)."""
        command = EditLettering(self.session, text, change, merge)
        if command.changes_nothing:
            return command.result
        self.session.undo.push(command)
        return command.result

    def _page_in(self, layout: Layout) -> Page:
        return layout.pages[self.current]

    def edit_frame(self, frame_id: str, what: str, merge: str = "", **fields) -> None:
        def change(layout: Layout) -> None:
            frame = self._page_in(layout).frame_by_id(frame_id)
            for key, value in fields.items():
                setattr(frame, key, value)
        self.edit(what, change, merge)

    def edit_balloon(self, balloon_id: str, what: str, merge: str = "", **fields) -> None:
        def change(layout: Layout) -> None:
            balloon = self._page_in(layout).balloon_by_id(balloon_id)
            for key, value in fields.items():
                setattr(balloon, key, value)
        self.edit(what, change, merge)

    def set_balloon_fields(self, what: str, **fields) -> None:
        ids = [b.id for b in self.selected_balloons()]
        if not ids:
            return

        def change(layout: Layout) -> None:
            for balloon in self._page_in(layout).balloons:
                if balloon.id in ids:
                    for key, value in fields.items():
                        setattr(balloon, key, value)
        self.edit(what, change)

    def set_balloon_kind(self, kind: str) -> None:
        ids = [b.id for b in self.selected_balloons()]

        def change(layout: Layout) -> None:
            for balloon in self._page_in(layout).balloons:
                if balloon.id in ids:
                    change_balloon_kind(balloon, kind)
        self.edit("Change balloon kind", change)

    def set_font(self, family: str) -> None:
        if self.selected_balloons():
            self.set_balloon_fields("Change font", font=family)
        else:
            self.edit("Change lettering font", lambda layout: setattr(layout, "font", family))

    def set_text_size(self, value: float) -> None:
        if self.selected_balloons():
            self.set_balloon_fields("Change lettering size", size=value or None)
        elif value > 0:
            self.edit("Change lettering size", lambda layout: setattr(layout, "font_size", value))

    def place_panel(self, panel_id: str, frame_id: str, page_index: int | None = None) -> None:
        """Put a panel in a frame (a panel already on a page swaps places; its lettering follows it)."""
        index = self.current if page_index is None else page_index
        panel = self.session.project.panel_by_id(panel_id)
        if panel is None:
            return
        self.edit("Place panel", lambda layout: place_panel(layout, layout.pages[index], frame_id, panel))

    def swap_frames(self, page_id: str, source_frame: str, target_frame: str) -> None:
        panels = self.session.project.panels
        self.edit("Place panel", lambda layout: swap_frames(layout, page_id, source_frame, self._page_in(layout),
                                                            target_frame, panels))

    def start_frame_drag(self, item: FrameItem) -> None:
        mime = QMimeData()
        mime.setData(FRAME_MIME, QByteArray(f"{self.page.id}\n{item.item_id}".encode()))
        drag = QDrag(self.view)
        drag.setMimeData(mime)
        image = self.images.get(item.frame.panel or "")
        if image is not None:
            drag.setPixmap(QPixmap.fromImage(image.scaled(72, 72, Qt.KeepAspectRatio, Qt.SmoothTransformation)))
        drag.exec(Qt.MoveAction)

    def lettering_frame(self, at: QPointF | None = None) -> Frame | None:
        """The frame new lettering goes into: the selected frame, the frame of the selected lettering's
        panel, else the frame under ``at`` (the middle of the view by default), else the nearest one."""
        frames = self.selected_frames()
        if frames:
            return frames[0]
        for balloon in self.selected_balloons():
            frame = next((f for f in self.page.frames if balloon.panel and f.panel == balloon.panel), None)
            if frame is not None:
                return frame
        if at is None:
            at = self.view.mapToScene(self.view.viewport().rect().center())
        return frame_at(self.page, (at.x(), at.y()))

    def add_balloon(self, kind: str, at: QPointF | None = None, text: str = "", free: bool = False) -> str | None:
        """Add lettering inside a frame (see lettering_frame), belonging to its panel; ``free``: lettering
        that belongs to no panel. A speech or thought balloon there is a new line of the panel's dialogue."""
        if not self.has_page():
            return None
        frame = None if free else self.lettering_frame(at)
        frame_id = frame.id if frame is not None else None

        def change(layout: Layout, words: dict) -> str:
            page = self._page_in(layout)
            target = page.frame_by_id(frame_id) if frame_id else None
            return add_lettering(layout, words, page, kind, target, text).id

        label = BALLOON_KINDS[kind].lower()
        balloon_id = self.edit_words(f"Add free {label}" if free else f"Add {label}", change)
        self._select_next = {balloon_id}
        return balloon_id

    def add_balloon_and_write(self, kind: str, free: bool = False) -> None:
        """Add Lettering from the menu: add it, then let the user type its words at once."""
        balloon_id = self.add_balloon(kind, free=free)
        if balloon_id is not None:
            QTimer.singleShot(0, lambda: (self._scheduled_refresh(), self.edit_text(balloon_id)))

    def delete_selected(self) -> None:
        self._delete_ids(frames={f.id for f in self.selected_frames()},
                         balloons={b.id for b in self.selected_balloons()})

    def move_in_reading_order(self, balloon_id: str, step: int) -> None:
        self.edit("Change reading order", lambda layout: move_in_reading_order(self._page_in(layout), balloon_id, step))

    def edit_text(self, balloon_id: str) -> None:
        balloon = self.page.balloon_by_id(balloon_id) if self.has_page() else None
        if balloon is None or self.editor is not None:
            return
        self.editing = balloon_id
        self.editor = _TextEditor(self, balloon)
        self.scene.addItem(self.editor)
        self.editor.setFocus()
        cursor = self.editor.textCursor()
        cursor.select(QTextCursor.Document)
        self.editor.setTextCursor(cursor)
        self.scene.update()

    def finish_text(self, balloon_id: str, text: str | None) -> None:
        editor, self.editor, self.editing = self.editor, None, None
        if editor is not None and editor.scene() is not None:
            editor.scene().removeItem(editor)
        if text is not None and self.has_page():
            balloon = self.page.balloon_by_id(balloon_id)
            if balloon is not None and balloon.text != text:
                # a balloon showing its panel's words edits the panel (so the animatic says the same)
                self.edit_words("Edit lettering", lambda layout, words: set_lettering_text(layout, words, balloon_id,
                                                                                           text))
                return
        self.refresh()

    def make_panel_words(self, balloon_id: str) -> None:
        self.edit_words("Make them the panel's words", lambda layout, words: make_panel_words(layout, words,
                                                                                              balloon_id))

    def use_panel_words(self, balloon_id: str) -> None:
        self.edit_words("Show the panel's words", lambda layout, words: use_panel_words(layout, words, balloon_id))

    def set_lettering_panel(self, balloon_id: str, panel_id: str | None) -> None:
        self.edit("Make lettering free" if panel_id is None else "Give lettering to a panel",
                  lambda layout: set_lettering_panel(layout, balloon_id, panel_id))

    # ---- pages -------------------------------------------------------------------------
    def ask_how_to_lay_out(self) -> str | None:
        """Lay Out Story over pages with changes made by hand: "reflow", "fresh", or None (cancel)."""
        box = QMessageBox(QMessageBox.Question, "Lay Out Story",
                          "Your pages have changes made by hand: frames moved or resized, other templates, or "
                          "lettering added, moved or deleted. Laying the story out afresh would replace them.",
                          parent=self)
        box.setInformativeText("Keep My Changes puts the panels back in story order in the frames you have, "
                               "with their lettering, and adds pages for panels not on one yet. Start Over makes "
                               "new pages from the story (Undo brings these back).")
        keep = box.addButton("Keep My Changes", QMessageBox.AcceptRole)
        fresh = box.addButton("Start Over", QMessageBox.DestructiveRole)
        box.addButton(QMessageBox.Cancel)
        box.setDefaultButton(keep)
        box.exec()
        return {keep: "reflow", fresh: "fresh"}.get(box.clickedButton())

    def lay_out_story(self) -> None:
        """Place every panel on pages in story order. Over pages changed by hand it asks first, and can
        keep those changes (reflow) instead of starting over."""
        panels = self.session.project.panels
        if not panels:
            return
        size = self.size_box.currentData() or self.layout.size
        direction = self.direction_box.currentData() or self.layout.direction
        how = "fresh"
        if size == self.layout.size and direction == self.layout.direction and has_hand_edits(self.layout, panels):
            how = self.ask_how_to_lay_out()
            if how is None:
                return
        if how == "reflow":
            self.reflow()
            return

        def change(layout: Layout) -> None:
            fresh = auto_layout(panels, size=size, direction=direction, layout=layout)
            layout.__dict__.update(fresh.__dict__)
        self.edit("Lay out story", change)
        self.show_page(0)
        self.view.fit()

    def reflow(self) -> None:
        """Put the panels back in story order in the pages' own frames (their lettering comes along)."""
        panels = self.session.project.panels
        self.edit("Reflow pages", lambda layout: reflow(layout, panels))

    def letter_missing_words(self) -> None:
        self.edit_words("Letter missing words", bring_lettering_in_step)

    def apply_template(self, template_id: str) -> None:
        if not self.has_page():
            return
        index = self.current
        self.edit(f"Use template {TEMPLATES[template_id].name}", lambda layout: recut_page(layout, index, template_id))

    def add_page(self) -> None:
        at = self.current + 1 if self.layout.pages else 0
        self.edit("Add page", lambda layout: add_page(layout, at))
        self.show_page(at)

    def remove_page(self) -> None:
        if not self.has_page():
            return
        index = self.current
        self.edit("Remove page", lambda layout: layout.pages.pop(index))
        self.show_page(max(0, index - 1))

    def move_page(self, source: int, target: int) -> None:
        def change(layout: Layout) -> None:
            layout.pages.insert(target, layout.pages.pop(source))
        self.current = target
        self.edit("Move page", change)

    def _pages_reordered(self, parent, start, end, destination, row) -> None:
        target = row if row < start else row - 1
        QTimer.singleShot(0, lambda: self.move_page(start, target))

    def set_page_size(self, size_id: str) -> None:
        if size_id == self.layout.size:
            return
        kind_changes = PAGE_SIZES[size_id].strip != self.layout.page_size.strip
        panels = self.session.project.panels
        self.edit("Change page size", lambda layout: change_page_size(layout, size_id, panels))
        if kind_changes:
            self.show_page(0)
        self.view.fit()

    def set_spacing(self, gutter: float | None = None, margin: float | None = None) -> None:
        """Change the gutter or margin and cut every page that follows a template again (hand-made pages
        keep their frames; lettering moves with its frame)."""
        if (gutter is None or gutter == self.layout.gutter) and (margin is None or margin == self.layout.frame_margin):
            return
        self.edit("Change gutter" if gutter is not None else "Change margin",
                  lambda layout: recut_pages(layout, gutter, margin))

    def set_direction(self, direction: str) -> None:
        if direction == self.layout.direction:
            return
        self.edit("Change reading direction", lambda layout: mirror_pages(layout, direction))

    # ---- panels drawn at their frames' shapes ---------------------------------------------------
    def frame_size(self, frame: Frame) -> tuple[int, int]:
        """The picture size for a frame: its shape, with about the story's picture area."""
        settings = self.session.project.settings
        return generation_size(frame.aspect, settings.width * settings.height)

    def shape_panels(self, panel_ids: list[str] | None = None) -> list[str]:
        """Give panels (all placed ones by default) their frame's shape; one undo step. Returns the changed ids."""
        sizes = {}
        for page in self.layout.pages:
            for frame in page.frames:
                if frame.panel and self.session.project.panel_by_id(frame.panel) is not None and (
                        panel_ids is None or frame.panel in panel_ids):
                    sizes[frame.panel] = self.frame_size(frame)
        command = SetPanelSizes(self.session, sizes)
        if not command.changes_nothing:
            self.session.undo.push(command)
        return [pid for pid, size in sizes.items() if command.old[pid] != size]

    def redraw_at_frame_shape(self, panel_ids: list[str]) -> None:
        self.shape_panels(panel_ids)
        self.regenerate_requested.emit(panel_ids)

    def _page_menu(self, pos) -> None:
        row = self.pages.indexAt(pos).row()
        if row < 0:
            return
        menu = QMenu(self)
        if row > 0:
            menu.addAction("Move Earlier", lambda: self.move_page(row, row - 1))
        if row < len(self.layout.pages) - 1:
            menu.addAction("Move Later", lambda: self.move_page(row, row + 1))
        menu.addAction("Add Page After", lambda: (self.show_page(row), self.add_page()))
        menu.addAction("Remove Page", lambda: (self.show_page(row), self.remove_page()))
        menu.popup(self.pages.viewport().mapToGlobal(pos))

    # ---- menus -------------------------------------------------------------------------
    def frame_menu(self, frame_id: str) -> QMenu:
        frame = self.page.frame_by_id(frame_id)
        menu = QMenu(self)
        fit = menu.addMenu("Fit picture")
        for mode, label in (("cover", "Fill the frame (crop)"), ("contain", "Show whole picture")):
            action = fit.addAction(label, lambda m=mode: self.edit_frame(frame_id, "Change fit", fit=m))
            action.setCheckable(True)
            action.setChecked(frame.fit == mode)
        menu.addAction("Reset crop", lambda: self.edit_frame(frame_id, "Reset crop", zoom=1.0, pan=(0.0, 0.0)))
        menu.addAction("Zoom picture in (Alt+wheel)",
                       lambda: self.edit_frame(frame_id, "Zoom picture", zoom=min(8.0, frame.zoom * 1.25)))
        menu.addAction("Zoom picture out",
                       lambda: self.edit_frame(frame_id, "Zoom picture", zoom=max(1.0, frame.zoom / 1.25)))
        menu.addSeparator()
        for kind in ("speech", "thought", "caption", "sfx"):
            b = frame.bounds
            menu.addAction(f"Add {BALLOON_KINDS[kind].lower()}",
                           lambda k=kind, b=b: self.add_balloon(k, QPointF(b.x + b.w / 2, b.y + b.h / 2)))
        menu.addSeparator()
        if frame.panel:
            w, h = self.frame_size(frame)
            menu.addAction(f"Redraw Panel at This Frame's Shape ({w} x {h})",
                           lambda: self.redraw_at_frame_shape([frame.panel]))
            menu.addAction("Show panel", lambda: self.panel_activated.emit(frame.panel))
            menu.addAction("Empty this frame", lambda: self.edit(
                "Empty frame", lambda layout: empty_frame(layout, self._page_in(layout), frame_id)))
        menu.addAction("Delete frame", lambda: self._delete_ids(frames={frame_id}))
        return menu

    def balloon_menu(self, balloon_id: str) -> QMenu:
        balloon = self.page.balloon_by_id(balloon_id)
        menu = QMenu(self)
        menu.addAction("Edit words…", lambda: self.edit_text(balloon_id))
        owner = menu.addAction(self.describe_owner(balloon))
        owner.setEnabled(False)
        panel = self.session.project.panel_by_id(balloon.panel) if balloon.panel else None
        if panel is not None and not balloon.source:
            number = self.panel_numbers.get(panel.id)
            if balloon.kind != "sfx":
                menu.addAction(f"Make These Panel {number}'s Words", lambda: self.make_panel_words(balloon_id))
                words = self.session.project.words().get(panel.id)
                wanted = [s for s in unlettered(self.layout, panel.id, words)
                          if (s == CAPTION) == (balloon.kind == "caption")] if words else []
                action = menu.addAction(f"Show Panel {number}'s Words Instead", lambda: self.use_panel_words(balloon_id))
                action.setEnabled(bool(wanted))
            menu.addAction("Make Free Lettering (No Panel)", lambda: self.set_lettering_panel(balloon_id, None))
        elif balloon.free:
            frame = frame_at(self.page, (balloon.x + balloon.w / 2, balloon.y + balloon.h / 2))
            if frame is not None and frame.panel:
                number = self.panel_numbers.get(frame.panel)
                menu.addAction(f"Give to Panel {number} (Moves With It)",
                               lambda: self.set_lettering_panel(balloon_id, frame.panel))
        menu.addSeparator()
        kinds = menu.addMenu("Change to")
        for kind, label in BALLOON_KINDS.items():
            if kind != balloon.kind:
                kinds.addAction(label, lambda k=kind: self.set_balloon_kind(k))
        menu.addAction("Earlier in reading order", lambda: self.move_in_reading_order(balloon_id, -1))
        menu.addAction("Later in reading order", lambda: self.move_in_reading_order(balloon_id, 1))
        menu.addAction("Fit size to text (Auto)",
                       lambda: self.edit_balloon(balloon_id, "Auto lettering size", size=None))
        menu.addSeparator()
        menu.addAction("Delete" + (" (and its words from the panel)" if balloon.tied else ""),
                       lambda: self._delete_ids(balloons={balloon_id}))
        return menu

    def describe_owner(self, balloon: Balloon) -> str:
        """Whose words a balloon shows, in the creator's words (its tooltip and menu say it)."""
        number = self.panel_numbers.get(balloon.panel or "")
        if balloon.tied and number:
            line = source_line(balloon.source)
            what = "caption" if line is None else f"dialogue line {line + 1}"
            return f"Panel {number}'s {what}: editing it here edits the panel"
        if number:
            return f"Panel {number}'s lettering, with words of its own"
        return "Free lettering: belongs to no panel"

    def _delete_ids(self, frames: set[str] | None = None, balloons: set[str] | None = None) -> None:
        frames, balloons = frames or set(), balloons or set()
        if not frames and not balloons:
            return

        def change(layout: Layout, words: dict) -> None:
            delete_lettering(layout, words, balloons)
            if frames:
                delete_frames(layout, self._page_in(layout), frames)
        self.edit_words("Delete from page", change)


class _PaperItem(QGraphicsItem):
    """The page itself: paper over the bleed, and the guides on top of everything else."""

    def __init__(self, canvas: LayoutCanvas):
        super().__init__()
        self.canvas = canvas
        self.setZValue(-100)

    def boundingRect(self) -> QRectF:
        if not self.canvas.has_page():
            return QRectF()
        return _rect(self.canvas.layout.bleed_rect(self.canvas.page)).adjusted(-2, -2, 2, 2)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        if self.canvas.has_page():
            painter.fillRect(_rect(self.canvas.layout.bleed_rect(self.canvas.page)), Qt.white)


class _GuidesItem(_PaperItem):
    """Trim, bleed and safe-area lines above the artwork; clicks pass through it."""

    def __init__(self, canvas: LayoutCanvas):
        super().__init__(canvas)
        self.setZValue(900)
        self.setAcceptedMouseButtons(Qt.NoButton)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        if self.canvas.show_guides and self.canvas.has_page():
            paint_guides(painter, self.canvas.layout, self.canvas.page)
