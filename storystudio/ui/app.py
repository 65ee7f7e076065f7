"""The application window.

PLACEHOLDER: until the desktop-app work lands, the window only shows a story
(the bundled example, or a script given on the command line) read-only, and
says so. Generation runs through ``storystudio render``.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QApplication,
    QLabel,
    QListWidget,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from .. import __version__
from ..project.script import ScriptError, load_script
from ..resources_path import resource

PLACEHOLDER_NOTE = (
    "Placeholder window: this preview shows the story read-only. The panel timeline, character sheet "
    "and generation from the app are not built yet; generate panels with `storystudio render`."
)


class PlaceholderWindow(QMainWindow):
    """Shows a story's cast and panels, labelled as a placeholder."""

    def __init__(self, script_path: str | None = None):
        super().__init__()
        self.setWindowTitle(f"StoryStudio {__version__} (placeholder window)")
        self.resize(960, 600)
        self.note = QLabel(PLACEHOLDER_NOTE)
        self.note.setWordWrap(True)
        self.note.setStyleSheet("background:#fff4c2; color:#4a3b00; padding:8px; border-radius:4px;")
        self.cast = QListWidget()
        self.panels = QListWidget()
        split = QSplitter(Qt.Horizontal)
        split.addWidget(self._titled("Characters", self.cast))
        split.addWidget(self._titled("Panels", self.panels))
        split.setSizes([320, 640])
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addWidget(self.note)
        layout.addWidget(split, 1)
        self.setCentralWidget(body)
        self.statusBar().showMessage("No model loaded: generation is not available in this window yet.")
        self.load(script_path or str(resource("examples", "lighthouse.story.txt")))

    @staticmethod
    def _titled(title: str, widget: QWidget) -> QWidget:
        box = QWidget()
        lay = QVBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        label = QLabel(f"<b>{title}</b>")
        lay.addWidget(label)
        lay.addWidget(widget, 1)
        return box

    def load(self, path: str) -> bool:
        try:
            story = load_script(path)
        except ScriptError as exc:
            QMessageBox.warning(self, "StoryStudio", f"This story cannot be opened:\n\n{exc}")
            return False
        self.cast.clear()
        self.panels.clear()
        for c in story.characters:
            self.cast.addItem(f"[{c.name}] {c.description}")
        for i, p in enumerate(story.panels, 1):
            caption = f"  # {p.caption}" if p.caption else ""
            self.panels.addItem(f"{i}. {p.prompt}{caption}")
        self.setWindowTitle(f"{story.title or 'Story'} - StoryStudio {__version__} (placeholder window)")
        return True


def run_app(path: str | None = None) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("StoryStudio")
    window = PlaceholderWindow(path)
    window.show()
    return app.exec()
