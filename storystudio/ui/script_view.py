"""The Script dock: the whole story as script text, beside the timeline, in step with the panels both ways.

The text follows every change to the cast and panels while it has no edits
of its own. Typed edits are checked as they are typed (mistakes are listed in
plain words, nothing changes) and applied with *Apply* (Ctrl+Return) or when
the editor is left: one undoable step, by ``Project.import_script``'s rules
(a panel whose prompt is unchanged keeps its pictures). *Revert* drops the
edits.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QFontDatabase, QKeySequence, QShortcut
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from ..project.script import ScriptError, parse_script
from .commands import ApplyScript
from .session import ProjectSession

CHECK_MS = 400
FOLLOW_MS = 100


class _LeaveWatcher(QObject):
    def __init__(self, callback, parent: QObject):
        super().__init__(parent)
        self.callback = callback

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.FocusOut:
            self.callback()
        return False


class ScriptView(QWidget):
    def __init__(self, session: ProjectSession, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.synced = ""  # the text as the project last gave it
        self.editor = QPlainTextEdit()
        self.editor.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.editor.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.editor.setPlaceholderText("[Name] how the character looks\n\n[Name] what a panel shows # its caption")
        self.editor.setToolTip("The story as a script: the cast first ([Name] description), then one panel per "
                               "line; text after # is the caption. Apply (Ctrl+Return) changes the panels.")
        self.problems = QLabel()
        self.problems.setWordWrap(True)
        self.problems.setStyleSheet("color: #b00020;")
        self.problems.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.state = QLabel()
        self.state.setWordWrap(True)
        self.apply_button = QPushButton("Apply")
        self.apply_button.setToolTip("Change the cast and panels to match the script (Ctrl+Return; Undo goes back)")
        self.revert_button = QPushButton("Revert")
        self.revert_button.setToolTip("Drop the edits and show the story as it is")
        buttons = QHBoxLayout()
        buttons.addWidget(self.state, 1)
        buttons.addWidget(self.revert_button)
        buttons.addWidget(self.apply_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.editor, 1)
        layout.addWidget(self.problems)
        layout.addLayout(buttons)

        self.check_timer = QTimer(self)
        self.check_timer.setSingleShot(True)
        self.check_timer.setInterval(CHECK_MS)
        self.check_timer.timeout.connect(self.check)
        self.editor.textChanged.connect(self._typed)
        self.apply_button.clicked.connect(self.apply)
        self.revert_button.clicked.connect(self.revert)
        QShortcut(QKeySequence("Ctrl+Return"), self.editor, self.apply, context=Qt.ShortcutContext.WidgetShortcut)
        self._leave = _LeaveWatcher(self._left, self)
        self.editor.installEventFilter(self._leave)
        # changes come in bursts (a job applies picture after picture): the text follows once per burst
        self.follow_timer = QTimer(self)
        self.follow_timer.setSingleShot(True)
        self.follow_timer.setInterval(FOLLOW_MS)
        self.follow_timer.timeout.connect(self.follow)
        for signal in (session.panels_changed, session.characters_changed, session.project_replaced):
            signal.connect(self.follow_timer.start)
        session.panel_changed.connect(lambda _id: self.follow_timer.start())
        self.follow()

    # ---- state ---------------------------------------------------------------------------------
    @property
    def edited(self) -> bool:
        return self.editor.toPlainText() != self.synced

    def project_text(self) -> tuple[str, str | None]:
        """The project as script text, or (the last good text, why it cannot be written)."""
        try:
            return self.session.project.export_script(), None
        except ValueError as exc:
            return self.synced, str(exc)

    def follow(self) -> None:
        """Show the project's story, unless the user has edits of their own here."""
        if self.edited:
            self.state.setText("The panels changed meanwhile: Apply replaces them with this text, Revert shows "
                               "them.")
            return
        text, problem = self.project_text()
        self.synced = text
        if self.editor.toPlainText() != text:
            self.editor.blockSignals(True)
            self.editor.setPlainText(text)
            self.editor.blockSignals(False)
        self._show(None if problem is None else f"This story cannot be shown as a script: {problem}")
        self.state.setText("")
        self._buttons()

    def _typed(self) -> None:
        self._buttons()
        self.state.setText("Edited: Apply (Ctrl+Return) to change the panels." if self.edited else "")
        self.check_timer.start()

    def _buttons(self) -> None:
        self.apply_button.setEnabled(self.edited)
        self.revert_button.setEnabled(self.edited)

    def _show(self, problems: str | None) -> None:
        self.problems.setText(problems or "")
        self.problems.setVisible(bool(problems))

    def check(self) -> bool:
        """List the mistakes of the text as typed (nothing changes); True when it has none."""
        try:
            parse_script(self.editor.toPlainText())
        except ScriptError as exc:
            self._show("The script has mistakes; the panels stay as they are until they are fixed:\n"
                       + "\n".join(f"• {p}" for p in exc.problems))
            return False
        self._show(None)
        return True

    # ---- actions -------------------------------------------------------------------------------
    def apply(self) -> bool:
        """Make the cast and panels what the text says (one undo step); False when it has mistakes."""
        self.check_timer.stop()
        self.follow_timer.stop()
        if not self.edited:
            return True
        if not self.check():
            return False
        text = self.editor.toPlainText()
        try:
            command = ApplyScript(self.session, text)
        except ScriptError:  # check() passed, so only a problem the parser finds with the project's cast
            return self.check()
        self.synced = text  # no longer an edit: follow() shows the project's own wording of it
        if not command.changes_nothing:
            self.session.undo.push(command)
        self.follow_timer.stop()
        self.follow()
        self.state.setText("Applied." if not command.changes_nothing else "Nothing to change.")
        return True

    def revert(self) -> None:
        self.check_timer.stop()
        self.editor.blockSignals(True)
        self.editor.setPlainText(self.synced)
        self.editor.blockSignals(False)
        self.follow()

    def _left(self) -> None:
        if self.edited and self.check():
            self.apply()
