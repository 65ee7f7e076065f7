"""The panel timeline: thumbnails in story order, drag to reorder, per-panel status."""

from __future__ import annotations

from PySide6.QtCore import QAbstractListModel, QByteArray, QMimeData, QModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QMenu

from .commands import MovePanels
from .session import ProjectSession

MIME = "application/x-storystudio-panel-ids"
THUMB = 128
STATUS_COLOURS = {"empty": "#9aa0a6", "queued": "#8ab4f8", "generating": "#fbbc04", "done": "#34a853",
                  "failed": "#ea4335"}


class PanelListModel(QAbstractListModel):
    """One row per panel; drops become MovePanels commands on the session's undo stack."""

    StatusRole = Qt.UserRole + 1
    IdRole = Qt.UserRole + 2

    def __init__(self, session: ProjectSession, parent=None):
        super().__init__(parent)
        self.session = session
        self._thumbs: dict[str, QPixmap] = {}
        self.progress: dict[str, str] = {}  # panel id -> "3/35" while generating
        session.panels_changed.connect(self._reset)
        session.project_replaced.connect(self._reset)
        session.panel_changed.connect(self._panel_changed)
        session.status_changed.connect(self._panel_changed)
        session.characters_changed.connect(self._reset)

    def _reset(self) -> None:
        self.beginResetModel()
        self.endResetModel()

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

    def data(self, index: QModelIndex, role: int = Qt.DisplayRole):
        if not index.isValid():
            return None
        panel = self.session.project.panels[index.row()]
        status = self.session.panel_status(panel)
        if role == Qt.DisplayRole:
            text = panel.prompt if len(panel.prompt) < 48 else panel.prompt[:46] + "…"
            extra = f" · {self.progress[panel.id]}" if status == "generating" and panel.id in self.progress else ""
            return f"{index.row() + 1}. {text}\n[{status}{extra}]"
        if role == Qt.ToolTipRole:
            tip = f"{panel.prompt}"
            if panel.caption:
                tip += f"\nCaption: {panel.caption}"
            return tip + f"\nVersions: {len(panel.versions)}"
        if role == Qt.DecorationRole:
            version = panel.chosen_version
            pix = self.thumbnail(version.image if version else None)
            return QIcon(pix if not pix.isNull() else _placeholder(status))
        if role == self.StatusRole:
            return status
        if role == self.IdRole:
            return panel.id
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

    def __init__(self, session: ProjectSession, parent=None):
        super().__init__(parent)
        self.session = session
        self.panel_model = PanelListModel(session, self)
        self.setModel(self.panel_model)
        self.setViewMode(QListView.IconMode)
        self.setFlow(QListView.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Static)
        self.setResizeMode(QListView.Adjust)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setGridSize(QSize(THUMB + 48, THUMB + 52))
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
        self.setMinimumHeight(THUMB + 70)

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
