"""The Messages list: every note of the engine, every problem before an export, each with its panel.

Notes used to replace one another in the status bar; here they stay until
the user clears them. A message may concern a panel (clicking it goes there,
and the timeline shows a badge on the panel) or a character. The model is a
``QAbstractListModel`` that the Messages dock shows and the timeline asks.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from enum import Enum

from PySide6.QtCore import QAbstractListModel, QModelIndex, Qt, Signal

_PANEL_NOTE = re.compile(r"^\s*Panel (\d+)\s*:")
_CHARACTER_NOTE = re.compile(r"^\s*\[([^\]]+)\]")


class Severity(Enum):
    INFO = "info"  # a summary: what a job did
    NOTE = "note"  # worth knowing (a prompt cut short, fewer references)
    WARNING = "warning"  # the result will lack something (no picture, text that does not fit)
    ERROR = "error"  # a job failed


MARKS = {Severity.INFO: "ℹ", Severity.NOTE: "•", Severity.WARNING: "⚠", Severity.ERROR: "✖"}


@dataclass(frozen=True)
class Message:
    severity: Severity
    text: str
    panel: str | None = None  # the panel it concerns (its id)
    character: str | None = None  # or the character (its name)
    source: str = ""  # "generation", "export", ...
    time: float = field(default_factory=time.time, compare=False)


def note_subject(text: str, panel_key_at) -> tuple[str | None, str | None]:
    """The panel id and character name an engine note is about.

    The engine words its notes "Panel N: ..." (N counted in the story it was
    given) or "[Name] ..."; ``panel_key_at(N)`` turns N into the panel's id.
    This is the one place that reads those words.
    """
    match = _PANEL_NOTE.match(text)
    if match:
        return panel_key_at(int(match.group(1))), None
    match = _CHARACTER_NOTE.match(text)
    if match:
        return None, match.group(1).strip()
    return None, None


class MessageList(QAbstractListModel):
    """The messages, newest last; ``panels_changed(ids)`` when the messages about some panels change."""

    PanelRole = Qt.ItemDataRole.UserRole + 1
    SeverityRole = Qt.ItemDataRole.UserRole + 2
    panels_changed = Signal(list)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.messages: list[Message] = []
        self.panel_label = lambda panel_id: ""  # "Panel 3", set by the window (numbers follow the story order)

    def add(self, message: Message) -> None:
        if self.messages and self.messages[-1] == message:
            return  # the same note twice in a row (a job run again) says nothing new
        row = len(self.messages)
        self.beginInsertRows(QModelIndex(), row, row)
        self.messages.append(message)
        self.endInsertRows()
        if message.panel:
            self.panels_changed.emit([message.panel])

    def clear(self, source: str | None = None) -> None:
        """Drop every message, or those of one source (an export's checks are made again each time)."""
        gone = [m for m in self.messages if source is None or m.source == source]
        if not gone:
            return
        self.beginResetModel()
        self.messages = [m for m in self.messages if m not in gone]
        self.endResetModel()
        panels = sorted({m.panel for m in gone if m.panel})
        if panels:
            self.panels_changed.emit(panels)

    def for_panel(self, panel_id: str) -> list[Message]:
        return [m for m in self.messages if m.panel == panel_id]

    def worst_for_panel(self, panel_id: str) -> Severity | None:
        order = [Severity.ERROR, Severity.WARNING, Severity.NOTE]
        present = {m.severity for m in self.for_panel(panel_id)}
        return next((s for s in order if s in present), None)

    # ---- the model ---------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.messages)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self.messages):
            return None
        m = self.messages[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            where = self.panel_label(m.panel) if m.panel else ""
            return f"{MARKS[m.severity]} {where + ': ' if where and not m.text.startswith('Panel') else ''}{m.text}"
        if role == Qt.ItemDataRole.ToolTipRole:
            stamp = time.strftime("%H:%M:%S", time.localtime(m.time))
            return f"{stamp}  {m.text}" + ("\nClick to go to the panel." if m.panel else "")
        if role == self.PanelRole:
            return m.panel
        if role == self.SeverityRole:
            return m.severity.value
        return None
