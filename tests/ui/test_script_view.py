"""The Script dock: the story as text beside the timeline, in step both ways, with undo."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from storystudio.project.model import Project
from storystudio.ui import commands as cmd
from storystudio.ui.script_view import ScriptView
from storystudio.ui.session import ProjectSession


@pytest.fixture
def view(qtbot):
    session = ProjectSession(Project.example())
    v = ScriptView(session)
    qtbot.addWidget(v)
    v.show()
    return v


def test_the_text_follows_the_panels(qtbot, view):
    session = view.session
    assert view.editor.toPlainText() == session.project.export_script()
    first = session.project.panels[0].id
    session.undo.push(cmd.SetPanelText(session, first, "prompt", "[Mira] flies a red kite"))
    qtbot.waitUntil(lambda: "[Mira] flies a red kite" in view.editor.toPlainText(), timeout=2000)
    session.undo.undo()
    qtbot.waitUntil(lambda: "flies a red kite" not in view.editor.toPlainText(), timeout=2000)


def test_edits_apply_as_one_undo_step_and_keep_unchanged_panels(qtbot, view):
    session = view.session
    before = [(p.id, p.prompt) for p in session.project.panels]
    lines = view.editor.toPlainText().splitlines()
    storm = next(i for i, line in enumerate(lines) if "storm" in line)
    lines[storm] = "[NC] a calm sea under stars # The storm was gone."
    lines.append("[Tobias] waves goodbye from the pier")
    view.editor.setPlainText("\n".join(lines) + "\n")
    assert view.edited and view.apply_button.isEnabled()
    assert view.apply()
    panels = session.project.panels
    assert len(panels) == len(before) + 1 and session.undo.count() == 1
    kept = {pid for pid, prompt in before if "storm" not in prompt}
    assert kept <= {p.id for p in panels}  # every unchanged panel kept its id (and so its pictures)
    assert panels[-1].prompt == "[Tobias] waves goodbye from the pier"
    assert not view.edited
    session.undo.undo()
    assert [(p.id, p.prompt) for p in session.project.panels] == before
    qtbot.waitUntil(lambda: view.editor.toPlainText() == session.project.export_script(), timeout=2000)
    session.undo.redo()
    assert len(session.project.panels) == len(before) + 1


def test_a_script_with_mistakes_changes_nothing_and_says_why(qtbot, view):
    session = view.session
    before = session.project.to_dict()
    view.editor.setPlainText(view.editor.toPlainText() + "[Nobody] walks in\n")
    qtbot.waitUntil(lambda: view.problems.isVisible(), timeout=3000)  # checked as it is typed
    assert "[Nobody]" in view.problems.text() and "stay as they are" in view.problems.text()
    assert not view.apply()
    assert session.project.to_dict() == before and session.undo.count() == 0
    view.revert()
    assert not view.edited and not view.problems.isVisible()


def test_typed_edits_are_not_overwritten_by_other_changes(qtbot, view):
    session = view.session
    view.editor.setPlainText(view.editor.toPlainText() + "[Mira] sleeps\n")
    session.undo.push(cmd.SetPanelText(session, session.project.panels[0].id, "caption", "Changed elsewhere."))
    qtbot.waitUntil(lambda: "meanwhile" in view.state.text(), timeout=2000)
    assert view.editor.toPlainText().endswith("[Mira] sleeps\n")


def test_ctrl_return_applies(qtbot, view):
    view.editor.setFocus()
    view.editor.moveCursor(view.editor.textCursor().MoveOperation.End)
    qtbot.keyClicks(view.editor, "[Mira] sleeps")
    qtbot.keyClick(view.editor, Qt.Key_Return, Qt.ControlModifier)
    assert view.session.project.panels[-1].prompt == "[Mira] sleeps" and not view.edited
