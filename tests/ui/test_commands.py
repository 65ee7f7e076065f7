"""Every undoable edit: redo applies it, undo restores exactly what was there."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from storystudio.project.model import Project
from storystudio.ui import commands as cmd
from storystudio.ui.session import ProjectSession


def png(colour: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def session(qtbot):
    return ProjectSession(Project.example())


def snapshot(session):
    return session.project.to_dict()


def check_undo_redo(session, command):
    before = snapshot(session)
    session.undo.push(command)
    after = snapshot(session)
    assert after != before
    session.undo.undo()
    assert snapshot(session) == before
    session.undo.redo()
    assert snapshot(session) == after
    return after


def test_move_panels_and_merge(session, qtbot):
    ids = session.order()
    with qtbot.waitSignal(session.panels_changed):
        session.undo.push(cmd.MovePanels(session, [ids[0]], 3))
    assert session.order() == [ids[1], ids[2], ids[0]] + ids[3:]
    session.undo.push(cmd.MovePanels(session, [ids[0]], 5))  # a second drag merges with the first
    assert session.undo.count() == 1
    assert session.order() == [ids[1], ids[2], ids[3], ids[4], ids[0]] + ids[5:]
    session.undo.undo()
    assert session.order() == ids


def test_move_several_panels_keeps_their_order(session):
    ids = session.order()
    session.undo.push(cmd.MovePanels(session, [ids[5], ids[1]], 0))
    assert session.order()[:2] == [ids[1], ids[5]]
    assert sorted(session.order()) == sorted(ids)


def test_text_edits_merge_per_field(session):
    pid = session.order()[2]
    session.undo.push(cmd.SetPanelText(session, pid, "caption", "A"))
    session.undo.push(cmd.SetPanelText(session, pid, "caption", "AB"))
    session.undo.push(cmd.SetPanelText(session, pid, "prompt", "[Mira] sleeps"))
    assert session.undo.count() == 2
    assert session.panel(pid).caption == "AB"
    session.undo.undo()
    session.undo.undo()
    assert session.panel(pid).caption == "Nobody had knocked on this door in years."


def test_insert_duplicate_delete(session):
    check_undo_redo(session, cmd.new_panel(session, 2, "a lighthouse at noon"))
    assert session.project.panels[2].prompt == "a lighthouse at noon"
    pid = session.order()[0]
    after = check_undo_redo(session, cmd.duplicate_panel(session, pid))
    twin = after["panels"][1]
    assert twin["prompt"] == after["panels"][0]["prompt"] and twin["id"] != pid
    ids = session.order()
    check_undo_redo(session, cmd.DeletePanels(session, [ids[1], ids[4], ids[6]]))
    assert session.order() == [i for i in ids if i not in (ids[1], ids[4], ids[6])]


def test_apply_image_choose_version_and_variation(session):
    pid = session.order()[6]
    check_undo_redo(session, cmd.ApplyPanelImage(session, pid, png("red"), {"seed": 1}))
    session.undo.push(cmd.ApplyPanelImage(session, pid, png("blue"), {"seed": 2}))
    panel = session.panel(pid)
    assert len(panel.versions) == 2 and panel.chosen == 1
    check_undo_redo(session, cmd.ChooseVersion(session, pid, 0))
    assert session.panel(pid).chosen == 0
    check_undo_redo(session, cmd.NewVariation(session, pid))
    assert session.panel(pid).variation == 1


def test_character_commands(session):
    check_undo_redo(session, cmd.AddCharacter(session, "Gull", "a grey seagull"))
    cid = session.project.characters[0].id
    check_undo_redo(session, cmd.SetCharacterField(session, cid, "description", "a girl in a red coat"))
    check_undo_redo(session, cmd.SetCharacterField(session, cid, "locked", True))
    check_undo_redo(session, cmd.ApplyReferences(session, cid, [(png("red"), {"seed": 3}), (png("green"), {})]))
    assert session.character(cid).chosen_references == [0, 1]
    check_undo_redo(session, cmd.DeleteCharacter(session, cid))
    assert session.project.character_by_id(cid) is None


def test_settings_command(session):
    check_undo_redo(session, cmd.SetSetting(session, "steps", 12))
    assert session.project.settings.steps == 12


def test_clean_state_follows_saving(session, tmp_path):
    assert not session.dirty
    session.undo.push(cmd.SetSetting(session, "seed", 9))
    assert session.dirty
    session.save(tmp_path / "a.storystudio")
    assert not session.dirty and session.display_name == "a.storystudio"
    session.undo.undo()
    assert session.dirty


def test_renaming_a_character_renames_its_tags_in_one_step(session):
    mira = session.project.character_by_name("Mira")
    shown = [p.id for p in session.panels_showing(mira.id)]
    before = snapshot(session)
    cmd.rename_character(session, mira.id, "Mirabel")
    assert session.undo.count() == 1
    assert [p.id for p in session.panels_showing(mira.id)] == shown
    assert session.panel(shown[-1]).prompt.startswith("[Mirabel] and [Tobias]")
    assert "Mira]" not in session.project.export_script().replace("[Mirabel]", "")
    session.undo.undo()
    assert snapshot(session) == before
