"""The panel timeline: thumbnails in story order, drag to reorder, per-panel status."""

from __future__ import annotations

from PySide6.QtCore import QAbstractListModel, QByteArray, QMimeData, QModelIndex, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QMenu, QStyle, QStyledItemDelegate

from ..project.story import NO_CHARACTER, TAG_PATTERN
from .commands import MovePanels
from .messages import MARKS, Severity
from .region_editor import paint_regions
from .session import ProjectSession

MIME = "application/x-storystudio-panel-ids"
THUMB = 128
STATUS_COLOURS = {"empty": "#9aa0a6", "queued": "#8ab4f8", "generating": "#fbbc04", "done": "#34a853",
                  "failed": "#ea4335"}
BADGE_COLOURS = {Severity.NOTE: "#1a73e8", Severity.WARNING: "#f29900", Severity.ERROR: "#d93025"}
CELL = QSize(THUMB + 48, THUMB + 60)


def panel_text(prompt: str) -> str:
    """What a panel shows, in the creator's words: ``[Mira] walks`` reads "Mira walks"; ``[NC]`` goes."""
    def name(match) -> str:
        inner = match.group(1).strip()
        return "" if inner == NO_CHARACTER else inner

    return " ".join(TAG_PATTERN.sub(name, prompt).split())


def status_text(status: str, progress: tuple[int, int] | None) -> str:
    if status == "generating" and progress:
        return f"generating {progress[0]}/{progress[1]}"
    return status


class PanelListModel(QAbstractListModel):
    """One row per panel; drops become MovePanels commands on the session's undo stack.

    A panel's status comes from the job queue while a job concerns it (queued, generating with its step,
    failed), else from its pictures (done, empty); its badge from the messages about it.
    """

    StatusRole = Qt.UserRole + 1
    IdRole = Qt.UserRole + 2
    StatusTextRole = Qt.UserRole + 3
    BadgeRole = Qt.UserRole + 4  # the worst severity of the messages about the panel, or None
    RegionsRole = Qt.UserRole + 5  # (regions, cast) of a panel showing several characters, or None

    def __init__(self, session: ProjectSession, jobs=None, messages=None, parent=None):
        super().__init__(parent)
        self.session = session
        self.jobs = jobs
        self.messages = messages
        self._thumbs: dict[str, QPixmap] = {}
        session.panels_changed.connect(self._reset)
        session.project_replaced.connect(self._reset)
        session.panel_changed.connect(self._panel_changed)
        session.characters_changed.connect(self._reset)
        session.settings_changed.connect(self._all_changed)  # e.g. regions on or off: the thumbnails' boxes
        if jobs is not None:
            jobs.panels_changed.connect(self._panels_changed)
        if messages is not None:
            messages.panels_changed.connect(self._panels_changed)

    def _reset(self) -> None:
        self.beginResetModel()
        self.endResetModel()

    def _all_changed(self) -> None:
        if self.rowCount():
            self.dataChanged.emit(self.index(0), self.index(self.rowCount() - 1))

    def _panels_changed(self, panel_ids: list) -> None:
        for panel_id in panel_ids:
            self._panel_changed(panel_id)

    def _panel_changed(self, panel_id: str) -> None:
        try:
            row = self.session.project.panel_index(panel_id)
        except (KeyError, ValueError):
            return
        index = self.index(row)
        self.dataChanged.emit(index, index)

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.session.project.panels)

    def thumbnail(self, image_name: str | None) -> QPixmap:
        if not image_name:
            return QPixmap()
        if image_name not in self._thumbs:
            pix = QPixmap()
            pix.loadFromData(self.session.project.images.get(image_name, b""))
            self._thumbs[image_name] = pix.scaled(THUMB, THUMB, Qt.KeepAspectRatio, Qt.SmoothTransformation)
        return self._thumbs[image_name]

    def status(self, panel) -> str:
        job_status = self.jobs.panel_status(panel.id) if self.jobs is not None else None
        return job_status or ("done" if panel.chosen_version else "empty")

    def data(self, index: QModelIndex, role: int = Qt.DisplayRole):
        if not index.isValid():
            return None
        panel = self.session.project.panels[index.row()]
        status = self.status(panel)
        if role == Qt.DisplayRole:
            return f"{index.row() + 1}. {panel_text(panel.prompt) or '(nothing)'}"
        if role == self.StatusTextRole:
            progress = self.jobs.panel_progress(panel.id) if self.jobs is not None else None
            return status_text(status, progress)
        if role == Qt.ToolTipRole:
            tip = panel_text(panel.prompt)
            if panel.caption:
                tip += f"\nCaption: {panel.caption}"
            tip += f"\nVersions: {len(panel.versions)}"
            if self.messages is not None:
                for message in self.messages.for_panel(panel.id)[-3:]:
                    tip += f"\n{MARKS[message.severity]} {message.text}"
            return tip
        if role == Qt.DecorationRole:
            version = panel.chosen_version
            pix = self.thumbnail(version.image if version else None)
            return QIcon(pix if not pix.isNull() else _placeholder(status))
        if role == self.StatusRole:
            return status
        if role == self.RegionsRole:
            regions = self.session.project.shown_regions(panel)
            return (regions, [c.name for c in self.session.project.characters]) if regions else None
        if role == self.IdRole:
            return panel.id
        if role == self.BadgeRole:
            return self.messages.worst_for_panel(panel.id) if self.messages is not None else None
        return None

    def flags(self, index: QModelIndex):
        # Items accept drops too: in a strip of icons, a drop lands on a panel more often than between two;
        # the dragged panels then go before it.
        base = Qt.ItemIsEnabled | Qt.ItemIsSelectable | Qt.ItemIsDragEnabled | Qt.ItemIsDropEnabled
        return base if index.isValid() else Qt.ItemIsDropEnabled

    def supportedDropActions(self):
        return Qt.MoveAction

    def supportedDragActions(self):
        return Qt.MoveAction

    def mimeTypes(self) -> list[str]:
        return [MIME]

    def mimeData(self, indexes) -> QMimeData:
        rows = sorted({i.row() for i in indexes})
        ids = [self.session.project.panels[r].id for r in rows]
        mime = QMimeData()
        mime.setData(MIME, QByteArray("\n".join(ids).encode()))
        return mime

    def dropMimeData(self, data: QMimeData, action, row: int, column: int, parent: QModelIndex) -> bool:
        if action == Qt.IgnoreAction:
            return True
        if not data.hasFormat(MIME):
            return False
        ids = [i for i in bytes(data.data(MIME)).decode().split("\n") if i]
        if row < 0:
            row = parent.row() if parent.isValid() else self.rowCount()
        return self.move(ids, row)

    def move(self, ids: list[str], row: int) -> bool:
        """Move panels so that they start at ``row`` (counted before the move); one undo step."""
        command = MovePanels(self.session, ids, row)
        if command.changes_nothing:
            return False
        self.session.undo.push(command)
        return True

    def removeRows(self, row, count, parent=QModelIndex()) -> bool:
        return False  # the move already happened through the command; nothing to remove


class PanelDelegate(QStyledItemDelegate):
    """A panel's cell: its picture, two lines of what it shows (cut with "…"), and always its status line;
    a badge in the corner when messages concern it."""

    def sizeHint(self, option, index) -> QSize:
        return CELL

    def paint(self, painter: QPainter, option, index: QModelIndex) -> None:
        painter.save()
        rect = option.rect.adjusted(3, 3, -3, -3)
        if option.state & QStyle.State_Selected:
            painter.fillRect(rect, option.palette.highlight())
            text_colour = option.palette.highlightedText().color()
        else:
            text_colour = option.palette.text().color()
        icon: QIcon = index.data(Qt.DecorationRole)
        picture = QRect(rect.left() + (rect.width() - THUMB) // 2, rect.top(), THUMB, THUMB)
        if icon is not None:
            icon.paint(painter, picture, Qt.AlignCenter)
        regions = index.data(PanelListModel.RegionsRole)
        if regions is not None and icon is not None:  # a shared panel: where each character stands
            shown = icon.actualSize(picture.size())
            frame = QRectF(picture.left() + (picture.width() - shown.width()) / 2,
                           picture.top() + (picture.height() - shown.height()) / 2, shown.width(), shown.height())
            paint_regions(painter, frame, regions[0], regions[1], labels=False, width=1.5)
        metrics = option.fontMetrics
        line = metrics.height()
        status_rect = QRect(rect.left(), rect.bottom() - line, rect.width(), line)
        text_rect = QRect(rect.left(), picture.bottom() + 2, rect.width(), status_rect.top() - picture.bottom() - 2)
        painter.setPen(text_colour)
        painter.drawText(text_rect, Qt.AlignHCenter | Qt.AlignTop | Qt.TextWordWrap,
                         _elide_lines(index.data(Qt.DisplayRole) or "", metrics, text_rect.width(),
                                      max(1, text_rect.height() // line)))
        status = index.data(PanelListModel.StatusRole) or "empty"
        bold = QFont(option.font)
        bold.setBold(True)
        painter.setFont(bold)
        painter.setPen(QColor(STATUS_COLOURS.get(status, "#9aa0a6")))
        painter.drawText(status_rect, Qt.AlignHCenter | Qt.AlignVCenter,
                         metrics.elidedText(index.data(PanelListModel.StatusTextRole) or status, Qt.ElideRight,
                                            status_rect.width()))
        badge = index.data(PanelListModel.BadgeRole)
        if badge is not None:
            size = 18
            circle = QRect(picture.right() - size + 4, picture.top() - 2, size, size)
            painter.setRenderHint(QPainter.Antialiasing)
            painter.setPen(Qt.NoPen)
            painter.setBrush(QColor(BADGE_COLOURS.get(badge, "#1a73e8")))
            painter.drawEllipse(circle)
            painter.setPen(QColor("white"))
            painter.drawText(circle, Qt.AlignCenter, "!")
        painter.restore()


def _elide_lines(text: str, metrics, width: int, lines: int) -> str:
    """``text`` wrapped into at most ``lines`` lines of ``width``, the last cut with "…"."""
    words, out, current = text.split(), [], ""
    for i, word in enumerate(words):
        trial = f"{current} {word}".strip()
        if metrics.horizontalAdvance(trial) <= width or not current:
            current = trial
            continue
        out.append(current)
        current = word
        if len(out) == lines - 1:
            current = " ".join([current, *words[i + 1:]])
            break
    out.append(metrics.elidedText(current, Qt.ElideRight, width))
    return "\n".join(out[:lines])


def _placeholder(status: str) -> QPixmap:
    pix = QPixmap(THUMB, THUMB)
    pix.fill(QColor("#f1f3f4"))
    p = QPainter(pix)
    p.setPen(QColor(STATUS_COLOURS.get(status, "#9aa0a6")))
    p.drawRect(0, 0, THUMB - 1, THUMB - 1)
    p.drawText(pix.rect(), Qt.AlignCenter, status)
    p.end()
    return pix


class PanelTimeline(QListView):
    """Horizontal strip of panels. Emits requests; the main window runs them."""

    regenerate_requested = Signal(list)  # panel ids, same seed
    variation_requested = Signal(list)  # panel ids, new seed kept as another version
    edit_requested = Signal(str)
    duplicate_requested = Signal(str)
    delete_requested = Signal(list)
    insert_requested = Signal(int)  # row

    def __init__(self, session: ProjectSession, jobs=None, messages=None, parent=None):
        super().__init__(parent)
        self.session = session
        self.panel_model = PanelListModel(session, jobs, messages, self)
        self.setModel(self.panel_model)
        self.setItemDelegate(PanelDelegate(self))
        self.setViewMode(QListView.IconMode)
        self.setFlow(QListView.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Static)
        self.setResizeMode(QListView.Adjust)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setGridSize(CELL)
        self.setWordWrap(True)
        self.setUniformItemSizes(True)
        self.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.setDragDropMode(QAbstractItemView.DragDrop)
        self.setDefaultDropAction(Qt.MoveAction)
        self.setDragEnabled(True)
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)  # setMovement(Static) switched the viewport's drops off
        self.setDropIndicatorShown(True)
        self.setContextMenuPolicy(Qt.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)
        self.setMinimumHeight(CELL.height() + 24)  # a whole cell and the scroll bar

    # Drops are handled here, not by QListView: in icon mode its own handling moves icons around the
    # viewport instead of asking the model, and the drop must become one undoable MovePanels command.
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasFormat(MIME):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        self.dragEnterEvent(event)

    def drop_row(self, pos) -> int:
        """The story position a drop at ``pos`` (viewport coordinates) means: before the first panel whose
        middle is to the right of it (the strip runs left to right; gaps between panels count too)."""
        for row in range(self.panel_model.rowCount()):
            if pos.x() < self.visualRect(self.panel_model.index(row)).center().x():
                return row
        return self.panel_model.rowCount()

    def dropEvent(self, event) -> None:
        data = event.mimeData()
        if not data.hasFormat(MIME):
            event.ignore()
            return
        ids = [i for i in bytes(data.data(MIME)).decode().split("\n") if i]
        self.panel_model.move(ids, self.drop_row(event.position().toPoint()))
        event.accept()  # after a move the source asks the model to remove the rows: removeRows refuses

    def selected_ids(self) -> list[str]:
        rows = sorted(i.row() for i in self.selectionModel().selectedIndexes())
        return [self.session.project.panels[r].id for r in rows]

    def current_id(self) -> str | None:
        index = self.currentIndex()
        return self.session.project.panels[index.row()].id if index.isValid() else None

    def select_id(self, panel_id: str) -> None:
        row = self.session.project.panel_index(panel_id)
        self.setCurrentIndex(self.panel_model.index(row))

    def _menu(self, pos) -> None:
        index = self.indexAt(pos)
        menu = QMenu(self)
        ids = self.selected_ids()
        if index.isValid() and ids:
            menu.addAction("Regenerate (same seed)", lambda: self.regenerate_requested.emit(ids))
            menu.addAction("New variation", lambda: self.variation_requested.emit(ids))
            menu.addSeparator()
            pid = self.session.project.panels[index.row()].id
            menu.addAction("Edit prompt and caption…", lambda: self.edit_requested.emit(pid))
            menu.addAction("Duplicate", lambda: self.duplicate_requested.emit(pid))
            menu.addAction("Delete", lambda: self.delete_requested.emit(ids))
            menu.addSeparator()
            menu.addAction("Insert panel after", lambda: self.insert_requested.emit(index.row() + 1))
        else:
            menu.addAction("Insert panel", lambda: self.insert_requested.emit(self.panel_model.rowCount()))
        menu.popup(self.viewport().mapToGlobal(pos))
