"""The character sheet: every edit is one undo step, and the sheet follows the session."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QFocusEvent
from PySide6.QtWidgets import QApplication

from storystudio.project.model import PNG_SIGNATURE, Project
from storystudio.ui.character_sheet import CharacterSheet
from storystudio.ui.commands import ApplyReferences, MovePanels, SetCharacterField
from storystudio.ui.session import ProjectSession


def png_bytes(color=(200, 30, 30), size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def names(sheet: CharacterSheet) -> list[str]:
    return [sheet.list.item(i).text() for i in range(sheet.list.count())]


def panel_numbers(sheet: CharacterSheet) -> list[str]:
    return [sheet.panel_list.item(i).text() for i in range(sheet.panel_list.count())]


def checked(sheet: CharacterSheet) -> list[bool]:
    return [sheet.references.item(i).checkState() == Qt.CheckState.Checked for i in range(sheet.references.count())]


@pytest.fixture
def session() -> ProjectSession:
    return ProjectSession(Project.example())


@pytest.fixture
def sheet(qtbot, session) -> CharacterSheet:
    widget = CharacterSheet(session)
    qtbot.addWidget(widget)
    widget.resize(800, 600)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def mira(session):
    return session.project.character_by_name("Mira")


def type_name(qtbot, sheet, text: str) -> None:
    sheet.name_edit.selectAll()
    qtbot.keyClicks(sheet.name_edit, text)
    qtbot.keyClick(sheet.name_edit, Qt.Key.Key_Return)


def test_lists_the_cast_and_shows_the_first_character(sheet, session):
    assert names(sheet) == ["Mira", "Tobias"]
    assert sheet.current_id() == mira(session).id
    assert sheet.name_edit.text() == "Mira"
    assert "copper hair" in sheet.description_edit.toPlainText()
    assert not sheet.locked_check.isChecked()


def test_add_undo_redo(sheet, session):
    new_id = sheet.add_character()
    assert names(sheet) == ["Mira", "Tobias", "New character"]
    assert sheet.current_id() == new_id and sheet.name_edit.text() == "New character"
    assert session.undo.count() == 1

    second = sheet.add_character()
    assert session.character(second).name == "New character 2"
    session.undo.undo()
    session.undo.undo()
    assert names(sheet) == ["Mira", "Tobias"]
    assert len(session.project.characters) == 2
    session.undo.redo()
    assert names(sheet) == ["Mira", "Tobias", "New character"]
    assert session.project.characters[2].id == new_id


def test_add_button_adds_one_character(sheet, session):
    sheet.add_button.click()
    assert len(session.project.characters) == 3
    assert session.undo.count() == 1


def test_rename_is_one_command_and_undo_restores(qtbot, sheet, session):
    character = mira(session)
    type_name(qtbot, sheet, "Miranda")
    assert session.undo.count() == 1
    assert character.name == "Miranda"
    assert names(sheet)[0] == "Miranda"
    assert not sheet.problem_label.isVisible()
    session.undo.undo()
    assert character.name == "Mira"
    assert sheet.name_edit.text() == "Mira"
    assert names(sheet)[0] == "Mira"


@pytest.mark.parametrize("bad, words", [("", "needs a name"), ("tobias", "already"), ("Tobias", "already"),
                                        ("Mi[ra", "square brackets"), ("NC", "nobody")])
def test_bad_names_are_refused_with_a_message(qtbot, sheet, session, bad, words):
    character = mira(session)
    sheet.name_edit.setText(bad)
    sheet.name_edit.editingFinished.emit()
    assert session.undo.count() == 0
    assert mira(session).name == "Mira"
    assert sheet.problem_label.isVisible()
    assert words in sheet.problem_label.text()
    # typing again hides the message, and a good name goes through
    type_name(qtbot, sheet, "Mira Jones")
    assert not sheet.problem_label.isVisible()
    assert character.name == "Mira Jones"
    assert session.undo.count() == 1


def test_description_commits_on_focus_out_and_undo_restores(sheet, session):
    character = mira(session)
    old = character.description
    sheet.description_edit.setPlainText("a girl in a green coat")
    QApplication.sendEvent(sheet.description_edit, QFocusEvent(QEvent.Type.FocusOut, Qt.FocusReason.TabFocusReason))
    assert character.description == "a girl in a green coat"
    assert session.undo.count() == 1
    assert not sheet.commit_description()  # nothing new: no second command
    assert session.undo.count() == 1
    session.undo.undo()
    assert character.description == old
    assert sheet.description_edit.toPlainText() == old


def test_unsaved_description_survives_other_changes_but_not_undo(sheet, session):
    tobias = session.project.character_by_name("Tobias")
    sheet.description_edit.setPlainText("typing in progress")
    session.undo.push(SetCharacterField(session, tobias.id, "locked", True))  # another change in the project
    assert sheet.description_edit.toPlainText() == "typing in progress"
    assert sheet.commit_description()
    assert mira(session).description == "typing in progress"


def test_switching_character_keeps_what_was_typed(sheet, session):
    tobias = session.project.character_by_name("Tobias")
    sheet.description_edit.setPlainText("a girl with a kite")
    sheet.select(tobias.id)
    assert mira(session).description == "a girl with a kite"
    assert sheet.name_edit.text() == "Tobias"
    assert "lighthouse keeper" in sheet.description_edit.toPlainText()


def test_lock_disables_editing_and_generation(sheet, session):
    character = mira(session)
    assert sheet.generate_button.isEnabled() and sheet.name_edit.isEnabled()
    sheet.locked_check.click()
    assert character.locked
    assert session.undo.count() == 1
    assert not sheet.name_edit.isEnabled()
    assert not sheet.description_edit.isEnabled()
    assert not sheet.generate_button.isEnabled()
    assert not sheet.photo_button.isEnabled()
    assert "\N{LOCK}" in names(sheet)[0]
    sheet.description_edit.setPlainText("sneaky")
    assert not sheet.commit_description()
    assert "copper hair" in character.description
    session.undo.undo()
    assert not character.locked
    assert not sheet.locked_check.isChecked()
    assert sheet.generate_button.isEnabled() and sheet.description_edit.isEnabled()
    assert names(sheet)[0] == "Mira"


def test_photo_from_a_file_and_undo(sheet, session, tmp_path):
    path = tmp_path / "face.jpg"
    Image.new("RGB", (120, 160), (10, 120, 200)).save(path, format="JPEG")
    assert sheet.set_photo_from_file(path)
    character = mira(session)
    assert character.photo in session.project.images
    stored = session.project.images[character.photo]
    assert stored.startswith(PNG_SIGNATURE)
    assert Image.open(io.BytesIO(stored)).size == (120, 160)
    assert session.undo.count() == 1
    assert not sheet.photo_label.pixmap().isNull()
    assert sheet.clear_photo_button.isEnabled()

    sheet.clear_photo_button.click()
    assert character.photo is None
    assert sheet.photo_label.pixmap().isNull()
    session.undo.undo()
    session.undo.undo()
    assert character.photo is None
    assert session.undo.index() == 0


def test_unreadable_photo_changes_nothing(sheet, session, tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"this is not a picture")
    images_before = dict(session.project.images)
    assert not sheet.set_photo_from_file(path)
    assert "broken.png" in sheet.problem_label.text()
    assert sheet.problem_label.isVisible()
    assert mira(session).photo is None
    assert session.undo.count() == 0
    assert session.project.images == images_before
    assert not sheet.set_photo_from_file(tmp_path / "missing.png")
    assert session.undo.count() == 0


def test_reference_strip_shows_and_chooses(sheet, session):
    character = mira(session)
    session.undo.push(ApplyReferences(session, character.id, [(png_bytes((255, 0, 0)), {"seed": 1}),
                                                               (png_bytes((0, 0, 255)), {"seed": 2})]))
    assert sheet.references.count() == 2
    assert checked(sheet) == [True, True]
    assert not sheet.references.item(0).icon().isNull()
    assert not sheet.references_hint.isVisible()
    count = session.undo.count()

    sheet.references.item(0).setCheckState(Qt.CheckState.Unchecked)  # what a click on its box does
    assert session.undo.count() == count + 1
    assert character.chosen_references == [1]
    assert checked(sheet) == [False, True]

    sheet.references.item(0).setCheckState(Qt.CheckState.Checked)  # picked again: after the other one
    assert character.chosen_references == [1, 0]
    session.undo.undo()
    session.undo.undo()
    assert character.chosen_references == [0, 1]
    assert checked(sheet) == [True, True]
    session.undo.undo()  # the references themselves
    assert sheet.references.count() == 0
    assert sheet.references_hint.isVisible()


def test_locked_references_cannot_be_unticked(sheet, session):
    character = mira(session)
    session.undo.push(ApplyReferences(session, character.id, [(png_bytes(), {})]))
    sheet.set_locked(True)
    assert not sheet.references.item(0).flags() & Qt.ItemFlag.ItemIsUserCheckable


def test_panels_showing_the_character_follow_the_story(sheet, session):
    assert panel_numbers(sheet) == ["Panel 1", "Panel 2", "Panel 3", "Panel 4", "Panel 8"]
    assert "1, 2, 3, 4, 8" in sheet.panels_label.text()
    # the last panel (Mira and Tobias together) moves to the front
    session.undo.push(MovePanels(session, [session.project.panels[7].id], 0))
    assert panel_numbers(sheet) == ["Panel 1", "Panel 2", "Panel 3", "Panel 4", "Panel 5"]
    sheet.select(session.project.character_by_name("Tobias").id)
    assert panel_numbers(sheet) == ["Panel 1", "Panel 6", "Panel 7"]
    session.undo.undo()
    assert panel_numbers(sheet) == ["Panel 5", "Panel 6", "Panel 8"]


def test_panels_follow_a_prompt_edit(sheet, session):
    storm = session.project.panels[6]
    session.set_panel_field(storm.id, "prompt", "[Mira] watches the storm")
    assert "Panel 7" in panel_numbers(sheet)


def test_double_click_on_a_panel_asks_to_show_it(qtbot, sheet, session):
    asked: list[str] = []
    sheet.panel_activated.connect(asked.append)
    item = sheet.panel_list.item(4)
    sheet.panel_list.scrollToItem(item)
    rect = sheet.panel_list.visualItemRect(item)
    assert sheet.panel_list.viewport().rect().contains(rect.center())
    # a double-click is a click followed by a double-click event
    qtbot.mouseClick(sheet.panel_list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert asked == []
    qtbot.mouseDClick(sheet.panel_list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert asked == [session.project.panels[7].id]


def test_delete_and_undo_puts_it_back_in_place(sheet, session):
    character = mira(session)
    sheet.select(character.id)
    sheet.delete_button.click()
    assert names(sheet) == ["Tobias"]
    assert sheet.name_edit.text() == "Tobias"
    session.undo.undo()
    assert names(sheet) == ["Mira", "Tobias"]
    assert session.project.characters[0] is character


def test_delete_last_character_empties_the_editor(sheet, session):
    sheet.delete_current()
    sheet.delete_current()
    assert sheet.list.count() == 0 and sheet.current_id() is None
    assert not sheet.editor.isEnabled() and not sheet.delete_button.isEnabled()
    session.undo.undo()
    assert sheet.current_id() is not None and sheet.editor.isEnabled()


def test_generate_asks_for_the_selected_character(qtbot, sheet, session):
    tobias = session.project.character_by_name("Tobias")
    sheet.select(tobias.id)
    with qtbot.waitSignal(sheet.generate_references_requested, timeout=1000) as blocker:
        sheet.generate_button.click()
    assert blocker.args == [tobias.id]
    assert session.undo.count() == 0


def test_a_new_project_is_shown(sheet, session):
    project = Project.example()
    project.characters = project.characters[1:]
    session.replace(project, None)
    assert names(sheet) == ["Tobias"]
    assert sheet.current_id() == project.characters[0].id
    assert panel_numbers(sheet) == ["Panel 5", "Panel 6", "Panel 8"]
