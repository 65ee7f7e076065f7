"""The main window end to end, offscreen, with the real worker and the tiny model."""

from __future__ import annotations

import json
import zipfile

import pytest
from PySide6.QtCore import QElapsedTimer, QSettings, Qt, QTimer
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QMessageBox

from storystudio.project.fileio import discard_autosave, load_project, pending_autosaves, save_project
from storystudio.project.model import Project
from storystudio.ui import main_window as mw
from storystudio.ui.main_window import MainWindow, offer_recovery


@pytest.fixture
def warnings_seen(monkeypatch):
    seen = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: seen.append(a[2] if len(a) > 2 else k))
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: seen.append(a[2] if len(a) > 2 else k))
    return seen


def tiny_project(model_dir) -> Project:
    project = Project.example()
    st = project.settings
    st.model, st.device, st.width, st.height, st.steps, st.id_length = str(model_dir), "cpu", 64, 64, 3, 2
    return project


@pytest.fixture
def window(qtbot, tmp_path, tiny_model_dirs, warnings_seen):
    settings = QSettings(str(tmp_path / "qsettings.ini"), QSettings.IniFormat)
    win = MainWindow(tiny_project(tiny_model_dirs["sd15"]), settings=settings)
    win.show()
    yield win
    win.session.undo.setClean()  # let the window close without asking
    win.close()


def wait_idle(qtbot, win, timeout=60000):
    qtbot.waitUntil(lambda: not win.jobs.busy and not win.service.busy, timeout=timeout)


def test_opens_with_the_example(qtbot, window, monkeypatch):
    qtbot.waitUntil(lambda: window.settings_panel.device_label.text() == "CPU", timeout=30000)  # after warm-up
    assert window.timeline.panel_model.rowCount() == 8
    assert window.characters.list.count() == 2
    assert window.windowTitle().startswith("Lighthouse")
    assert window.panel_view.panel_id == window.session.project.panels[0].id
    menus = [a.text() for a in window.menuBar().actions()]
    assert menus == ["&File", "&Edit", "&View", "&Generate", "&Pages", "&Help"]
    names = {a.text() for m in window.menuBar().actions() for a in m.menu().actions()}
    for wanted in ("&New", "&Open…", "&Save", "Save &As…", "&Import Story Script…", "&Generate All", "&Stop",
                   "&Preferences…", "&About StoryStudio"):
        assert wanted in names


def test_drag_reorder_through_the_views_model_and_undo(window):
    model = window.timeline.panel_model
    ids = window.session.order()
    mime = model.mimeData([model.index(0), model.index(1)])
    assert model.dropMimeData(mime, Qt.MoveAction, 5, 0, model.index(-1))
    assert window.session.order() == ids[2:5] + ids[:2] + ids[5:]
    assert model.data(model.index(3), model.IdRole) == ids[0]
    assert window.session.dirty and window.windowTitle().startswith("Lighthouse*")
    mime = model.mimeData([model.index(7)])
    model.dropMimeData(mime, Qt.MoveAction, 0, 0, model.index(-1))
    assert window.session.undo.count() == 1  # consecutive drags are one undo step
    window.actions_by_name["undo"].trigger()
    assert window.session.order() == ids
    window.actions_by_name["redo"].trigger()
    assert window.session.order()[0] == ids[7]


def test_generate_all_then_regenerate_one(qtbot, window):
    loading = []
    window.service.worker.model_loading.connect(lambda job, source: loading.append(source))
    job = window.generate_all()
    assert job is not None
    model = window.timeline.panel_model
    assert all(model.status(p) == "queued" for p in window.session.project.panels)
    wait_idle(qtbot, window)
    panels = window.session.project.panels
    assert loading == [window.session.project.settings.model]  # loaded once, announced
    assert "(SD15) on CPU" in window.model_label.text()
    assert all(len(p.versions) == 1 and p.chosen == 0 for p in panels)
    assert all(model.status(p) == "done" for p in panels)
    first = {p.id: window.session.project.images[p.versions[0].image] for p in panels}
    target = panels[7].id
    window.timeline.select_id(target)
    asked = []
    window.ask_repeat = lambda numbers: asked.append(numbers) or "anyway"
    window.actions_by_name["regenerate"].trigger()
    assert asked == [[8]]  # nothing changed: the same seed would draw the same picture, and the user is told
    wait_idle(qtbot, window)
    panels = window.session.project.panels
    assert [len(p.versions) for p in panels] == [1] * 7 + [2]
    again = window.session.panel(target)
    assert window.session.project.images[again.versions[1].image] == first[target]  # same seed, same picture
    window.actions_by_name["undo"].trigger()  # applying a result is undoable
    assert len(window.session.panel(target).versions) == 1


def test_regenerate_offers_a_variation_instead_of_the_same_picture(qtbot, window):
    target = window.session.project.panels[6].id  # the [NC] storm panel
    window.regenerate([target])
    wait_idle(qtbot, window)
    asked = []
    window.ask_repeat = lambda numbers: asked.append(numbers) or "variation"
    window.regenerate([target])
    wait_idle(qtbot, window)
    panel = window.session.panel(target)
    assert asked == [[7]] and panel.variation == 1 and len(panel.versions) == 2
    images = window.session.project.images
    assert images[panel.versions[0].image] != images[panel.versions[1].image]
    window.ask_repeat = lambda numbers: asked.append(numbers) or None  # cancelled: nothing starts
    assert window.regenerate([target]) is None and len(asked) == 2
    window.session.undo.push(mw.cmd.SetPanelText(window.session, target, "prompt", "a calm sea at dawn"))
    assert window.repeating([target]) == []  # changed words: it regenerates without asking
    window.session.undo.push(mw.cmd.SetSetting(window.session, "steps", 4))
    window.session.undo.undo()
    window.session.undo.undo()
    assert window.repeating([target]) == [target]
    window.session.undo.push(mw.cmd.SetSetting(window.session, "steps", 4))
    assert window.repeating([target]) == []  # another setting: a different picture


def test_new_variation_keeps_both_versions(qtbot, window):
    target = window.session.project.panels[6].id  # the [NC] storm panel
    window.regenerate([target])
    wait_idle(qtbot, window)
    window.new_variation([target])
    wait_idle(qtbot, window)
    panel = window.session.panel(target)
    assert panel.variation == 1 and len(panel.versions) == 2 and panel.chosen == 1
    images = window.session.project.images
    assert images[panel.versions[0].image] != images[panel.versions[1].image]
    assert panel.versions[1].parameters["seed"] != panel.versions[0].parameters["seed"]


def test_generate_references_fills_the_character_sheet(qtbot, window):
    mira = window.session.project.character_by_name("Mira")
    window.characters.select(mira.id)
    window.characters.generate_button.click()
    wait_idle(qtbot, window)
    mira = window.session.project.character_by_name("Mira")
    assert len(mira.references) == 2 and mira.chosen_references == [0, 1]  # id_length 2
    assert window.characters.references.count() == 2
    assert len(window.session.project.panels[0].versions) == 1  # the reference panels got their pictures


def test_cancel_mid_job(qtbot, window):
    window.session.project.settings.steps = 30
    seen = []
    window.service.worker.progress.connect(lambda *a: seen.append(a[3]))
    window.generate_all()
    qtbot.waitUntil(lambda: len(seen) >= 2, timeout=30000)
    window.actions_by_name["stop"].trigger()
    wait_idle(qtbot, window)
    assert max(seen) < 30
    assert all(not p.versions for p in window.session.project.panels)
    assert all(window.jobs.panel_status(p.id) is None for p in window.session.project.panels)
    assert not window.actions_by_name["stop"].isEnabled()


def test_panel_view_says_when_there_is_no_picture(qtbot, window):
    view = window.panel_view
    assert "No picture yet" in view.image.text()
    view.image.resize(view.image.width() + 40, view.image.height() + 40)  # a resize keeps the message
    assert "No picture yet" in view.image.text()


def test_without_a_model_the_models_dialog_opens(window, monkeypatch):
    from storystudio.ui.models_dialog import ModelsDialog

    opened = []
    monkeypatch.setattr(ModelsDialog, "exec", lambda dialog: opened.append(dialog) or 0)
    window.session.project.settings.model = ""
    assert window.generate_all() is None  # closed without choosing: nothing is generated
    assert len(opened) == 1


def test_missing_model_is_a_plain_message_that_offers_the_models_dialog(qtbot, window, monkeypatch, tmp_path):
    from storystudio.ui.models_dialog import ModelsDialog

    asked, opened = [], []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.Yes)
    monkeypatch.setattr(ModelsDialog, "exec", lambda dialog: opened.append(dialog) or 0)
    window.session.project.settings.model = str(tmp_path / "gone")
    window.generate_all()
    wait_idle(qtbot, window)
    assert len(asked) == 1 and "does not exist" in asked[0] and "Open Models" in asked[0]
    assert len(opened) == 1  # the kind of the error, not its words, chose the Models dialog
    assert all(window.timeline.panel_model.status(p) == "failed" for p in window.session.project.panels)
    assert not window.actions_by_name["stop"].isEnabled()


def test_gui_stays_responsive_while_generating(qtbot, window):
    qtbot.waitUntil(lambda: not window.service.busy, timeout=60000)  # the start-up warm-up (imports) is done
    gaps, clock, timer = [], QElapsedTimer(), QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: gaps.append(clock.restart()) if clock.isValid() else clock.start())
    timer.start()
    window.generate_all()
    wait_idle(qtbot, window)
    timer.stop()
    assert len(gaps) > 10
    assert max(gaps) < 100, f"the GUI thread stalled for {max(gaps)} ms"


def test_save_quit_reopen_round_trip(qtbot, window, tmp_path):
    window.regenerate([window.session.project.panels[6].id])
    wait_idle(qtbot, window)
    window.timeline.panel_model.move([window.session.order()[6]], 0)
    path = str(tmp_path / "story.storystudio")
    assert window._save_to(path)
    assert not window.session.dirty and window.windowTitle() == "Lighthouse — story.storystudio - StoryStudio"
    before = window.session.project.to_dict()
    images = dict(window.session.project.images)
    reopened = load_project(path)
    assert reopened.to_dict() == before
    assert all(reopened.images[v.image] == images[v.image] for p in reopened.panels for v in p.versions)
    other = MainWindow(settings=QSettings(str(tmp_path / "q2.ini"), QSettings.IniFormat))
    qtbot.addWidget(other)
    assert other.open_path(path)
    assert other.session.project.to_dict() == before and other.session.path == path
    assert other.timeline.panel_model.data(other.timeline.panel_model.index(0), other.timeline.panel_model.IdRole) \
        == before["panels"][0]["id"]
    other.close()


def test_bad_files_are_refused_and_nothing_is_overwritten(window, tmp_path, warnings_seen):
    good = tmp_path / "good.storystudio"
    save_project(Project.example(), good)
    corrupt = tmp_path / "corrupt.storystudio"
    corrupt.write_bytes(b"PK\x03\x04 this is not really a zip")
    evil = tmp_path / "evil.storystudio"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        dst.writestr("../escaped.png", b"\x89PNG\r\n\x1a\n")
    newer = tmp_path / "newer.storystudio"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(newer, "w") as dst:
        data = json.loads(src.read("project.json"))
        data["schema"] = 99
        dst.writestr("project.json", json.dumps(data))
    window.timeline.panel_model.move([window.session.order()[0]], 3)  # unsaved work in the window
    before = window.session.project.to_dict()
    files = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.Discard)
        for bad, words in ((corrupt, "not a StoryStudio project"), (evil, "escaped.png"), (newer, "newer StoryStudio")):
            assert not window.open_path(str(bad))
            assert words in warnings_seen[-1]
    assert window.session.project.to_dict() == before  # what was open is still there
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == files
    assert not (tmp_path.parent / "escaped.png").exists()


def test_autosave_and_recovery(qtbot, window, monkeypatch):
    for info in pending_autosaves():
        discard_autosave(info.path)
    window.session.undo.push(mw.cmd.SetPanelText(window.session, window.session.order()[0], "caption", "Recovered!"))
    window.autosave()
    pending = pending_autosaves()
    assert pending and pending[0].title == "Lighthouse"
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.Yes)
    project, source, autosave = offer_recovery()
    assert project.panels[0].caption == "Recovered!" and source is None and autosave == pending[0].path


def test_closing_with_unsaved_changes_asks(qtbot, window, monkeypatch):
    window.session.undo.push(mw.cmd.SetSetting(window.session, "seed", 77))
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.Cancel)
    assert not window.close()
    assert asked and "Save the changes" in asked[0] and window.isVisible()


def test_import_script_replaces_the_project(window, tmp_path, warnings_seen, monkeypatch):
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.Discard)
    script = tmp_path / "short.story.txt"
    script.write_text("[Ann] a girl with red hair\n\n[Ann] reads # Quiet.\n[NC] a beach\n", encoding="utf-8")
    assert window.import_script(str(script))
    assert [p.prompt for p in window.session.project.panels] == ["[Ann] reads", "a beach"]
    assert window.session.project.title == "short" and window.timeline.panel_model.rowCount() == 2
    bad = tmp_path / "bad.txt"
    bad.write_text("[Ann] a girl\n\n[Bob] runs\n", encoding="utf-8")
    assert not window.import_script(str(bad))
    assert "[Bob]" in warnings_seen[-1] and window.timeline.panel_model.rowCount() == 2


def test_window_state_is_remembered(qtbot, tmp_path):
    path = str(tmp_path / "state.ini")
    first = MainWindow(settings=QSettings(path, QSettings.IniFormat))
    qtbot.addWidget(first)
    first.show()
    first.resize(first.minimumSizeHint().width(), 700)  # the offscreen screen is 800x800
    qtbot.waitUntil(lambda: first.height() == 700)
    size = (first.width(), first.height())
    first.docks["script"].hide()
    first.close()
    second = MainWindow(settings=QSettings(path, QSettings.IniFormat))
    qtbot.addWidget(second)
    second.show()
    assert (second.width(), second.height()) == size
    assert not second.docks["script"].isVisible() and second.docks["timeline"].isVisible()
    second.close()


def test_a_drop_on_the_timeline_moves_panels_as_one_command(qtbot, window):
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QDropEvent

    view, model = window.timeline, window.timeline.panel_model
    ids = window.session.order()
    target = view.visualRect(model.index(4))
    mime = model.mimeData([model.index(1)])
    # dropped on the right half of panel 5: the dragged panel goes after it
    pos = QPointF(target.center().x() + target.width() / 4, target.center().y())
    event = QDropEvent(pos, Qt.MoveAction, mime, Qt.LeftButton, Qt.NoModifier)
    view.dropEvent(event)
    assert window.session.order() == [ids[0], ids[2], ids[3], ids[4], ids[1]] + ids[5:]
    assert event.isAccepted() and window.session.undo.count() == 1
    after = window.session.order()
    assert not model.removeRows(1, 1)  # what the drag source does after a move changes nothing
    assert window.session.order() == after
    left, second = view.visualRect(model.index(0)), view.visualRect(model.index(1))
    assert view.drop_row(QPointF(left.left() + 2, left.center().y()).toPoint()) == 0
    gap = QPointF((left.right() + second.left()) / 2, left.center().y()).toPoint()  # between two panels
    assert view.drop_row(gap) == 1
    assert view.viewport().acceptDrops()  # a real pointer drop reaches the view


def test_redraw_a_panel_at_its_frames_shape(qtbot, window):
    window.session.project.settings.width = window.session.project.settings.height = 128
    window.lay_out_pages()
    frame = window.session.project.layout.pages[0].frames[0]  # the wide top tier
    expected = window.canvas.frame_size(frame)
    assert expected[0] > expected[1]
    window.canvas.redraw_at_frame_shape([frame.panel])  # what the frame's context menu does
    panel = window.session.project.panel_by_id(frame.panel)
    assert tuple(panel.size) == expected
    wait_idle(qtbot, window, timeout=120000)
    version = panel.chosen_version
    assert version is not None and (version.parameters["width"], version.parameters["height"]) == expected
    image = QImage.fromData(window.session.project.images[version.image])
    assert (image.width(), image.height()) == expected
    window.timeline.select_id(panel.id)
    assert window.panel_view.size_label.text() == f"{expected[0]} x {expected[1]} (its frame's shape)"
    window.panel_view.size_reset.click()
    assert panel.size is None and window.panel_view.size_label.text() == "128 x 128 (the story's size)"
    window.session.undo.undo()
    assert tuple(panel.size) == expected
