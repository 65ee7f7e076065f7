"""The Models dialog against a model hub stand-in on 127.0.0.1, and the first generation without a model."""

from __future__ import annotations

import pytest
from hubserver import FakeHub, catalog_item, use_hub, write_catalog
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

from storystudio.project.model import Project
from storystudio.ui.main_window import MainWindow
from storystudio.ui.models_dialog import ModelsDialog, hub_token, save_hub_token
from storystudio.ui.preferences import PreferencesDialog

REPO = "tiny/sd15"


@pytest.fixture
def hub(tiny_model_dirs, tmp_path, monkeypatch):
    with FakeHub() as server:
        server.add_repo(REPO, tiny_model_dirs["sd15"])
        use_hub(monkeypatch, tmp_path, server)
        write_catalog(monkeypatch, tmp_path / "catalog.json", catalog_item(server.repos[REPO], "tiny"))
        yield server


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "q.ini"), QSettings.IniFormat)


@pytest.fixture
def dialog(qtbot, hub, settings, monkeypatch):
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: None)
    d = ModelsDialog(None, settings)
    qtbot.addWidget(d)
    qtbot.waitUntil(lambda: d.gpu_known, timeout=30000)
    yield d
    d.done(0)


def row_of(dialog, model_id: str) -> int:
    return next(r for r, row in enumerate(dialog.rows()) if row[1].id == model_id)


def test_catalog_recommendation_and_state(dialog):
    ids = [row[1].id for row in dialog.rows()]
    assert "tiny" in ids and "sdxl-base" in ids  # the bundled catalog and the extra one
    assert "no GPU found" in dialog.recommendation.text()  # the tests run on the CPU
    r = row_of(dialog, "tiny")
    assert dialog.table.item(r, 5).text() == "Not installed"


def test_download_with_progress_cancel_and_continue(qtbot, dialog, hub):
    hub.throttle = 3e6  # a few seconds for the tiny model: time to see progress and to cancel
    dialog.table.selectRow(row_of(dialog, "tiny"))
    assert dialog.download_button.isEnabled() and not dialog.use_button.isEnabled()
    values = []
    dialog.progress.valueChanged.connect(values.append)
    dialog.download_button.click()
    qtbot.waitUntil(lambda: any(0 < v < 1000 for v in values), timeout=30000)
    qtbot.waitUntil(lambda: "/s" in dialog.status.text(), timeout=10000)  # speed once there is some to measure
    assert " of " in dialog.status.text() and "left" in dialog.status.text()  # bytes, speed, time left
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: dialog.busy is None, timeout=30000)
    assert "stopped" in dialog.status.text()
    qtbot.waitUntil(lambda: "Partly downloaded" in dialog.table.item(row_of(dialog, "tiny"), 5).text(), timeout=10000)
    assert dialog.download_button.text() == "Continue Download"
    served = hub.body_bytes()
    hub.throttle = None
    dialog.table.selectRow(row_of(dialog, "tiny"))
    dialog.download_button.click()
    qtbot.waitUntil(lambda: dialog.busy is None, timeout=60000)
    qtbot.waitUntil(lambda: dialog.table.item(row_of(dialog, "tiny"), 5).text().startswith("Installed"), timeout=10000)
    assert "models--tiny--sd15" in dialog.table.item(row_of(dialog, "tiny"), 5).toolTip()  # where it is
    assert hub.body_bytes() - served < hub.repos[REPO].size  # the second run fetched only the rest
    chosen = []
    dialog.model_chosen.connect(chosen.append)
    dialog.table.selectRow(row_of(dialog, "tiny"))
    dialog.use_button.click()
    assert chosen == ["tiny"]
    dialog.default_button.click()
    assert dialog.qsettings.value("models/default") == "tiny"


def test_import_a_folder_and_remove_it(qtbot, dialog, tiny_model_dirs, monkeypatch):
    dialog.import_path(str(tiny_model_dirs["sdxl"]))
    qtbot.waitUntil(lambda: dialog.busy is None, timeout=30000)
    assert "Imported" in dialog.status.text()
    qtbot.waitUntil(lambda: any(m.arch == "sdxl" for m in dialog.others), timeout=10000)
    model = next(m for m in dialog.others if m.arch == "sdxl")
    dialog.table.selectRow(row_of(dialog, model.id))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.Yes)
    dialog.remove_button.click()
    qtbot.waitUntil(lambda: dialog.busy is None, timeout=30000)
    qtbot.waitUntil(lambda: not any(m.id == model.id for m in dialog.others), timeout=10000)
    assert tiny_model_dirs["sdxl"].is_dir()  # a folder used where it is is only forgotten, never deleted


def test_a_bad_file_is_refused_in_plain_words(qtbot, dialog, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    dialog.import_path(str(tmp_path / "notes.txt"))
    qtbot.waitUntil(lambda: dialog.busy is None, timeout=30000)
    assert "not a model file" in dialog.status.text()


def test_first_generation_without_a_model_opens_the_dialog_and_goes_on(qtbot, hub, settings, monkeypatch,
                                                                       tiny_model_dirs):
    project = Project.example()
    project.settings.device, project.settings.width, project.settings.height = "cpu", 64, 64
    project.settings.steps, project.settings.id_length = 2, 2
    window = MainWindow(project, settings=settings)
    window.show()
    opened = []

    def pick(dialog):  # the user picks the tiny model (a folder they have) and closes the dialog
        opened.append(dialog.intro.text())
        dialog.model_chosen.emit(str(tiny_model_dirs["sd15"]))
        return 0

    monkeypatch.setattr(ModelsDialog, "exec", pick)
    job = window.generate_all()
    assert opened and "needs a picture model" in opened[0]
    assert job is not None and window.session.project.settings.model == str(tiny_model_dirs["sd15"])
    qtbot.waitUntil(lambda: not window.jobs.busy and not window.service.busy, timeout=120000)
    assert all(p.chosen_version for p in window.session.project.panels)
    window.session.undo.setClean()
    window.close()


def test_closing_the_dialog_without_a_model_generates_nothing(qtbot, hub, settings, monkeypatch):
    window = MainWindow(Project.example(), settings=settings)
    monkeypatch.setattr(ModelsDialog, "exec", lambda dialog: 0)
    assert window.generate_all() is None
    assert "No model chosen" in window.statusBar().currentMessage()
    window.session.undo.setClean()
    window.close()


def test_preferences_keep_settings_and_never_show_the_token(qtbot, hub, settings):
    dialog = PreferencesDialog(settings)
    qtbot.addWidget(dialog)
    dialog.memory_box.setCurrentIndex(dialog.memory_box.findData("model-offload"))
    dialog.device_box.setCurrentIndex(dialog.device_box.findData("cpu"))
    dialog.token.setText("hf_secret_value_123")
    dialog.accept()
    assert settings.value("models/memory") == "model-offload" and settings.value("defaults/device") == "cpu"
    assert hub_token() == "hf_secret_value_123"
    again = PreferencesDialog(settings)
    qtbot.addWidget(again)
    assert again.token.text() == "" and "never shown" in again.token_state.text()
    assert "hf_secret" not in again.token_state.text()
    again.forget_token.click()
    assert hub_token() is None
    save_hub_token("x")
    window = MainWindow(Project(title="t"), settings=settings)
    window.session.undo.setClean()
    settings.setValue("models/default", "tiny")
    window.new_project()
    assert window.session.project.settings.model == "tiny" and window.session.project.settings.device == "cpu"
    assert window._model_choice().memory == "model-offload"
    window.session.undo.setClean()
    window.close()


def test_the_generation_panel_opens_the_models_dialog(qtbot, hub, settings, monkeypatch):
    window = MainWindow(Project.example(), settings=settings)
    opened = []
    monkeypatch.setattr(ModelsDialog, "exec", lambda dialog: opened.append(dialog) or 0)
    window.settings_panel.models_button.click()
    assert len(opened) == 1 and opened[0].intro.isHidden()
    window.session.undo.setClean()
    window.close()


def test_an_imported_folder_is_selected_and_can_be_used_at_once(qtbot, hub, settings, tiny_model_dirs, monkeypatch):
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: None)
    dialog = ModelsDialog(None, settings, close_on_use=True)  # a generation waits for a model
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.import_path(str(tiny_model_dirs["sd15"]))
    qtbot.waitUntil(lambda: dialog.busy is None, timeout=30000)
    qtbot.waitUntil(lambda: dialog.selected() is not None and dialog.selected()[0] == "installed", timeout=10000)
    assert dialog.selected()[1].arch == "sd15" and dialog.use_button.isEnabled()
    chosen = []
    dialog.model_family.connect(lambda model, family: chosen.append((model, family)))
    dialog.use_button.click()
    assert chosen and chosen[0][1] == "sd15"
    assert dialog.result() == dialog.DialogCode.Accepted and not dialog.isVisible()  # closed: generation goes on
    dialog.shutdown()


def test_use_for_this_project_starts_the_waiting_generation(qtbot, hub, settings, monkeypatch, tiny_model_dirs):
    project = Project.example()
    project.settings.device, project.settings.width, project.settings.height = "cpu", 64, 64
    project.settings.steps, project.settings.id_length = 2, 2
    window = MainWindow(project, settings=settings)
    started = []

    def pick(dialog):  # the user presses Use for This Project: the dialog closes by itself
        assert dialog.close_on_use
        dialog.model_family.emit(str(tiny_model_dirs["sd15"]), "sd15")
        dialog.model_chosen.emit(str(tiny_model_dirs["sd15"]))
        started.append(window.jobs.busy)
        return 1

    monkeypatch.setattr(ModelsDialog, "exec", pick)
    job = window.generate_all()
    assert job is not None and started == [False]  # it was waiting for the dialog, and starts right after
    assert window.session.project.settings.model == str(tiny_model_dirs["sd15"])
    assert window.prefs.get("model_families")[str(tiny_model_dirs["sd15"])] == "sd15"
    window.stop()
    qtbot.waitUntil(lambda: not window.jobs.busy, timeout=60000)
    window.session.undo.setClean()
    window.close()
