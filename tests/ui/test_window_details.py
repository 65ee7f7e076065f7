"""The window's smaller promises: defaults that fit, estimates, title, menus, help, dialogs, file folders."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QFontMetrics, QImage
from PySide6.QtWidgets import QDialog, QFileDialog, QMessageBox, QPlainTextEdit, QTextBrowser

from storystudio.project.model import Project, ProjectSettings
from storystudio.ui import main_window as mw
from storystudio.ui.defaults import at_defaults, fitting
from storystudio.ui.files import remember, start_folder
from storystudio.ui.jobs import JobKind
from storystudio.ui.machine import Machine
from storystudio.ui.main_window import MainWindow
from storystudio.ui.preferences import Preferences
from storystudio.ui.texts import readable_time, window_title
from storystudio.ui.timeline import PanelListModel, _elide_lines, panel_text
from storystudio.ui.worker import RenderJob

ROOT = Path(__file__).resolve().parents[2]
CPU = {"summary": "CPU", "gpu_gb": None, "devices": ["cpu"]}
GPU = {"summary": "NVIDIA RTX 4090, 24 GiB", "gpu_gb": 24.0, "devices": ["cuda", "cpu"]}


def prefs_at(tmp_path, machine=None) -> Preferences:
    prefs = Preferences(QSettings(str(tmp_path / "q.ini"), QSettings.IniFormat))
    if machine:
        prefs.set("machine", machine)
    return prefs


@pytest.fixture
def make_window(qtbot, tmp_path):
    made = []

    def make(project=None, machine=None, **kwargs):
        win = MainWindow(project, settings=prefs_at(tmp_path, machine), **kwargs)
        win.show()
        made.append(win)
        return win

    yield make
    for win in made:
        win.session.undo.setClean()
        win.close()


def test_fitting_defaults():
    cpu, gpu = Machine.from_dict(CPU), Machine.from_dict(GPU)
    assert (fitting(cpu).width, fitting(cpu).steps, fitting(cpu).arch) == (512, 20, "sd15")  # catalog.recommend
    assert (fitting(gpu).width, fitting(gpu).steps, fitting(gpu).arch) == (768, 35, "sdxl")
    assert fitting(gpu, "sd15").width == 512
    assert at_defaults(ProjectSettings(), cpu)
    assert not at_defaults(ProjectSettings(width=640), cpu)


def test_a_new_project_on_a_computer_without_a_gpu_starts_small(make_window, tmp_path):
    win = make_window(machine=CPU)
    st = win.session.project.settings
    assert (st.width, st.height, st.steps) == (512, 512, 20) and not win.session.dirty
    st.width = 1024  # the user's own choice survives New? No: New starts again from what fits
    win.session.undo.setClean()
    win.new_project()
    st = win.session.project.settings
    assert (st.width, st.steps) == (512, 20) and not win.session.dirty and "*" not in win.windowTitle()
    on_gpu = make_window(machine=GPU)
    assert (on_gpu.session.project.settings.width, on_gpu.session.project.settings.steps) == (768, 35)


def test_an_opened_project_keeps_its_settings(make_window, tmp_path):
    from storystudio.project.fileio import save_project

    project = Project.example()
    project.settings.width = project.settings.height = 1024
    path = tmp_path / "big.storystudio"
    save_project(project, path)
    win = make_window(machine=CPU)
    assert win.open_path(str(path))
    assert win.session.project.settings.width == 1024


def test_the_first_start_learns_the_computer_from_the_warm_up(qtbot, make_window):
    win = make_window()  # nothing known yet: the built-in defaults
    assert win.session.project.settings.steps == 35
    qtbot.waitUntil(lambda: win.machine is not None, timeout=60000)  # the warm-up found the CPU
    st = win.session.project.settings
    assert (st.width, st.steps) == (512, 20) and not win.session.dirty
    assert win.prefs.get("machine")["devices"] == ["cpu"]
    devices = [win.settings_panel.device_combo.itemData(i) for i in range(win.settings_panel.device_combo.count())]
    assert devices == ["auto", "cpu"]  # no graphics card offered on a computer without one


def test_estimates_come_from_measured_speed(make_window):
    win = make_window(machine=CPU)
    st = win.session.project.settings
    st.model = "tiny"
    seconds, text = win.estimate(8)
    assert seconds is None and "No time estimate yet" in text
    assert "No time estimate yet" in win.settings_panel.estimate_label.text()
    win.prefs.set("model_families", {"tiny": "sd15"})
    win.prefs.set("speeds", {f"CPU|sd15|{st.width}x{st.height}": 0.5})
    seconds, text = win.estimate(8)
    assert seconds == pytest.approx(8 * st.steps * 0.5) and "about 1 min on CPU" in text


def test_a_finished_job_measures_this_computers_speed(qtbot, make_window, tiny_model_dirs):
    project = Project.example()
    st = project.settings
    st.model, st.device, st.width, st.height, st.steps, st.id_length = str(tiny_model_dirs["sd15"]), "cpu", 64, 64, \
        6, 2
    win = make_window(project, machine=CPU, path=None)
    st = win.session.project.settings
    st.steps, st.width, st.height = 6, 64, 64  # the tiny model at a tiny size
    steps_seen = []
    win.jobs.changed.connect(lambda job: steps_seen.append(win.time_left.text()))
    win.regenerate([win.session.project.panels[6].id])
    qtbot.waitUntil(lambda: not win.jobs.busy, timeout=120000)
    assert any("left" in text or "measuring" in text for text in steps_seen)  # time left while it ran
    speeds = win.prefs.get("speeds")
    assert list(speeds) == ["CPU|sd15|64x64"] and speeds["CPU|sd15|64x64"] > 0
    assert win.prefs.get("model_families") == {st.model: "sd15"}
    assert "on CPU" in win.estimate(1)[1] and win.estimate(1)[0] is not None


def test_after_stop_the_half_drawn_preview_goes(make_window):
    from test_jobs import FakeService

    service = FakeService()
    service.shutdown = lambda: None
    win = make_window(machine=CPU, service=service)
    project = win.session.project
    target = project.panels[0].id
    win.timeline.select_id(target)
    job = win.jobs.submit(JobKind.PANELS, RenderJob(project.to_story(), project.settings, None), [target])
    preview = QImage(32, 32, QImage.Format_RGB888)
    preview.fill(0x336699)
    win.service.worker.progress.emit(job.id, "read", [target], 3, 20, 3, 20, preview)
    assert win.panel_view.showing_preview
    win.service.worker.finished.emit(job.id, "cancelled")
    assert not win.panel_view.showing_preview and "No picture yet" in win.panel_view.image.text()


def test_window_title_rule():
    assert window_title("Lighthouse", None, False) == "Lighthouse - StoryStudio"
    assert window_title("Lighthouse", "/x/my.storystudio", True) == "Lighthouse — my.storystudio* - StoryStudio"
    assert window_title("", None, True) == "Untitled* - StoryStudio"


def test_readable_times():
    now = datetime(2026, 3, 3, 18, 0).astimezone()
    assert readable_time((now - timedelta(hours=2)).isoformat(), now) == "today at 16:00"
    assert readable_time((now - timedelta(days=1)).isoformat(), now) == "yesterday at 18:00"
    assert readable_time((now - timedelta(days=30)).isoformat(), now) == "Sunday 1 February 2026 at 18:00"
    assert readable_time("not a time") == "not a time"


def test_the_recovery_question_reads_like_a_date(monkeypatch, qapp):
    from storystudio.project.fileio import discard_autosave, pending_autosaves, write_autosave

    for info in pending_autosaves():
        discard_autosave(info.path)
    write_autosave(Project.example(), None)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.No)
    assert mw.offer_recovery() is None
    assert "autosaved today at" in asked[0] and "T" not in asked[0].split("autosaved")[1].split(")")[0]


def test_timeline_labels_read_as_words_and_keep_their_status(make_window):
    assert panel_text("[Mira] and [Tobias] stand in the [NC] lamp room") == "Mira and Tobias stand in the lamp room"
    assert panel_text("[NC] a storm at night") == "a storm at night"
    win = make_window(machine=CPU)
    model = win.timeline.panel_model
    win.session.project.panels[0].prompt = "[Mira] " + "walks along a very long pebble beach at dawn " * 6
    text = model.data(model.index(0))
    assert text.startswith("1. Mira walks") and "[" not in text
    metrics = QFontMetrics(win.timeline.font())
    lines = _elide_lines(text, metrics, 160, 2).split("\n")
    assert len(lines) == 2 and lines[-1].endswith("…")  # two lines, cut: the status line below keeps its place
    assert model.data(model.index(0), PanelListModel.StatusTextRole) == "empty"


def test_shows_wraps_and_edit_opens_a_real_editor(qtbot, make_window, monkeypatch):
    win = make_window(machine=CPU)
    view = win.panel_view
    assert isinstance(view.prompt, QPlainTextEdit) and view.prompt.lineWrapMode() == QPlainTextEdit.WidgetWidth
    pid = win.session.project.panels[1].id

    def edit(dialog):
        dialog.prompt.setPlainText("[Mira] finds a shell")
        dialog.caption.setText("A shell!")
        dialog.dialogue.setPlainText("Mira: Look!\n\nTobias: Keep it.")
        return QDialog.Accepted

    monkeypatch.setattr(mw.PanelTextDialog, "exec", edit)
    win.timeline.edit_requested.emit(pid)  # the context menu's "Edit prompt and caption…"
    panel = win.session.panel(pid)
    assert (panel.prompt, panel.caption, panel.dialogue) == ("[Mira] finds a shell", "A shell!",
                                                             "Mira: Look!\nTobias: Keep it.")
    assert win.session.undo.count() == 1  # one step
    win.session.undo.undo()
    assert win.session.panel(pid).prompt != "[Mira] finds a shell"


def test_random_seed_button_uses_glyphs_every_font_has(make_window):
    win = make_window(machine=CPU)
    text = win.settings_panel.seed_button.text()
    assert text.isascii() and all(QFontMetrics(win.settings_panel.seed_button.font()).inFont(c) for c in text)


def test_file_dialogs_start_in_the_last_folder(make_window, tmp_path, monkeypatch):
    prefs = prefs_at(tmp_path)
    assert start_folder(prefs) == str(Path.home())
    remember(prefs, str(tmp_path / "stories" / "a.storystudio"))
    (tmp_path / "stories").mkdir()
    assert start_folder(prefs) == str(tmp_path / "stories")
    assert start_folder(prefs, "b.txt") == str(tmp_path / "stories" / "b.txt")
    win = make_window(machine=CPU)
    win.prefs.set("last_folder", str(tmp_path / "stories"))
    asked = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: asked.append(a[2]) or ("", ""))
    win.open_dialog()
    win.import_script_dialog()
    assert asked == [str(tmp_path / "stories")] * 2


def test_view_menu_help_and_the_animatic_export(qtbot, make_window, monkeypatch):
    win = make_window(machine=CPU)
    view = {a.text(): a for a in win.view_menu.actions() if a.text()}
    for title in ("Characters", "Generation", "Panels", "Script", "Messages", "Main Toolbar"):
        assert title in view and view[title].isChecked()
    view["Characters"].trigger()
    assert not win.docks["characters"].isVisible()
    view["Characters"].trigger()
    assert win.docks["characters"].isVisible()
    files = [a.text() for a in win.menuBar().actions()[0].menu().actions()]
    assert "Export &Animatic (MP4)…" in files
    opened, asked = [], []
    monkeypatch.setattr(win, "_ask_save", lambda *a: opened.append(a) or "")
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.Yes)
    win.actions_by_name["export_animatic"].trigger()
    assert "8 panel(s) have no picture yet" in asked[0]  # said before the export, then asked where to
    assert opened and opened[0][0] == "Export Animatic"
    helps = [a.text() for a in win.menuBar().actions()[-1].menu().actions() if a.text()]
    assert helps == ["&Getting Started", "&Keyboard Shortcuts", "&About StoryStudio"]
    win.getting_started()
    assert "Generate All" in win.help_dialog.findChild(QTextBrowser).toPlainText()
    win.help_dialog.close()
    keys = dict(win.shortcut_list())
    assert keys["Ctrl+G"] == "Generate All" and "Ctrl+Shift+E" in keys


def test_preferences_and_dock_say_run_on(make_window):
    from storystudio.ui.preferences import RUN_ON, PreferencesDialog

    win = make_window(machine=CPU)
    dialog = PreferencesDialog(win.prefs, win, win.machine)
    form = win.settings_panel.layout()
    role = form.ItemRole.LabelRole
    labels = [form.itemAt(r, role).widget().text() for r in range(form.rowCount()) if form.itemAt(r, role)]
    assert RUN_ON in labels and dialog.fields["device"].toolTip()
    memory = [dialog.memory_box.itemText(i) for i in range(dialog.memory_box.count())]
    assert memory == ["Not needed: this computer has no graphics card"] and not dialog.memory_box.isEnabled()
    dialog.close()


def test_no_torchvision_warning_when_the_worker_loads_a_model(tiny_model_dirs):
    code = ("from storystudio.ui.worker import warm_up; warm_up(); "
            "from storystudio.engine.models.loading import load_model; "
            f"load_model({str(tiny_model_dirs['sd15'])!r}, device='cpu')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "torchvision" not in run.stderr + run.stdout


def test_the_generation_preferences_reach_each_job(make_window):
    from test_jobs import FakeService

    service = FakeService()
    service.shutdown = lambda: None
    win = make_window(machine=GPU, service=service)
    win.session.project.settings.model = "some/model"
    win.prefs.set("compile", True)
    win.prefs.set("bank_ram_gib", 1.5)
    win.prefs.set("bank_disk_gib", 4.0)
    job = win.jobs.find(win.generate_all())
    assert job.params.compile is True
    assert job.params.bank_budget == (int(1.5 * 2**30), 4 * 2**30)
    win.prefs.set("compile", False)
    win.prefs.set("bank_ram_gib", 0.0)
    win.prefs.set("bank_disk_gib", 0.0)
    job = win.jobs.find(win.generate_all())
    assert job.params.compile is False and job.params.bank_budget == (0, 0)  # the default: keep no bank
