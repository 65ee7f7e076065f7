"""Starting the app: the example story, a project or a script given on the command line, crash recovery."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PySide6.QtWidgets import QApplication, QMessageBox

from helpers import SMALL_STORY
from storystudio import cli
from storystudio.project.fileio import discard_autosave, pending_autosaves, save_project, write_autosave
from storystudio.project.model import Project
from storystudio.ui import app as app_module
from storystudio.ui.main_window import MainWindow


@pytest.fixture
def warnings_shown(monkeypatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: calls.append(a[2]) or QMessageBox.Ok)
    return calls


@pytest.fixture
def no_autosaves():
    for info in pending_autosaves():
        discard_autosave(info.path)


def test_initial_project_choices(tmp_path):
    project, path, problem = app_module.initial_project(None)
    assert project.title == "Lighthouse" and len(project.panels) == 8 and path is None and problem is None
    script = tmp_path / "small.story.txt"
    script.write_text(SMALL_STORY, encoding="utf-8")
    project, path, problem = app_module.initial_project(str(script))
    assert [c.name for c in project.characters] == ["Ann", "Bo"] and len(project.panels) == 6 and path is None
    saved = tmp_path / "mine.storystudio"
    save_project(project, saved)
    again, path, problem = app_module.initial_project(str(saved))
    assert again.to_dict() == project.to_dict() and path == str(saved) and problem is None
    broken = tmp_path / "broken.storystudio"
    broken.write_text("not a zip", encoding="utf-8")
    fallback, path, problem = app_module.initial_project(str(broken))
    assert fallback.title == "Lighthouse" and path is None and "cannot be opened" in problem


def run_with_fake_loop(monkeypatch, path=None) -> list[MainWindow]:
    seen = []

    def fake_exec(self):  # stands in for the event loop: look at the windows, then "quit"
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, MainWindow) and widget.isVisible():
                seen.append(widget)
                widget.session.undo.setClean()
                widget.close()
        return 7

    monkeypatch.setattr(QApplication, "exec", fake_exec)
    assert app_module.run_app(path) == 7
    return seen


def test_run_app_opens_the_main_window(qtbot, monkeypatch, warnings_shown, no_autosaves, tmp_path):
    script = tmp_path / "small.story.txt"
    script.write_text(SMALL_STORY, encoding="utf-8")
    windows = run_with_fake_loop(monkeypatch, str(script))
    assert len(windows) == 1 and windows[0].timeline.panel_model.rowCount() == 6
    assert warnings_shown == []


def test_run_app_offers_to_recover_after_a_crash(qtbot, monkeypatch, warnings_shown, no_autosaves):
    crashed = Project.example()
    crashed.panels[0].caption = "unsaved words"
    write_autosave(crashed, None)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.Yes)
    windows = run_with_fake_loop(monkeypatch)
    assert asked and "Recover" in asked[0]
    assert windows[0].session.project.panels[0].caption == "unsaved words"
    assert not pending_autosaves()  # the recovered copy is handed over, then cleaned when the window closes


def test_declining_recovery_discards_the_autosave(qtbot, monkeypatch, warnings_shown, no_autosaves):
    write_autosave(Project.example(), None)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.No)
    windows = run_with_fake_loop(monkeypatch)
    assert windows[0].session.project.panels[0].caption != "unsaved words"
    assert not pending_autosaves()


def test_start_app_refuses_two_paths(capsys, monkeypatch):
    started = []
    monkeypatch.setattr(app_module, "run_app", lambda path=None: started.append(path) or 0)
    assert cli._start_app(["one.story.txt", "two.story.txt"]) == cli.EXIT_USER == 2
    err = capsys.readouterr().err
    assert err.startswith("storystudio: ") and "at most one" in err and "Traceback" not in err
    assert cli.main(["one.story.txt", "two.story.txt"]) == 2
    assert started == []


def test_start_app_passes_one_path_to_the_window(monkeypatch):
    started = []
    monkeypatch.setattr(app_module, "run_app", lambda path=None: started.append(path) or 0)
    assert cli._start_app(["one.story.txt"]) == 0
    assert cli._start_app([]) == 0
    assert started == ["one.story.txt", None]


def test_the_window_opens_without_torch():
    """torch and diffusers are never imported by the GUI thread: the worker brings them in."""
    code = """
import sys, threading, time
seen = []
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name in ("torch", "diffusers"):
            seen.append((name, threading.current_thread() is threading.main_thread()))
        return None
sys.meta_path.insert(0, Spy())
from PySide6.QtWidgets import QApplication
app = QApplication([])
from storystudio.ui.main_window import MainWindow
w = MainWindow()
w.show()
app.processEvents()
shown = 'torch' in sys.modules
while w.service.busy:  # the warm-up job imports them, in the worker thread
    app.processEvents()
    time.sleep(0.01)
print(shown, sorted(set(seen)))
w.session.undo.setClean()
w.close()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                         env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False [('diffusers', False), ('torch', False)]"


def test_the_window_and_taskbar_show_the_app_icon(qtbot, monkeypatch, warnings_shown, no_autosaves):
    windows = run_with_fake_loop(monkeypatch)
    app = QApplication.instance()
    assert app.desktopFileName() == "storystudio"  # matches resources/desktop/storystudio.desktop
    for icon in (app.windowIcon(), windows[0].windowIcon()):
        assert not icon.isNull()
        assert sorted(s.width() for s in icon.availableSizes()) == [16, 24, 32, 48, 64, 128, 256, 512]
        assert not icon.pixmap(48, 48).toImage().isNull()


def test_first_run_without_a_model_says_how_to_get_one(qtbot, monkeypatch, warnings_shown, no_autosaves):
    messages = []

    def fake_exec(self):
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, MainWindow) and widget.isVisible():
                messages.append((widget.session.project.settings.model, widget.statusBar().currentMessage()))
                widget.session.undo.setClean()
                widget.close()
        return 0

    monkeypatch.setattr(QApplication, "exec", fake_exec)
    app_module.run_app(None)
    assert len(messages) == 1 and not messages[0][0]
    assert "Generate All" in messages[0][1] and "Models dialog" in messages[0][1]


def test_smoke_test_mode_reports_the_window_and_quits():
    """STORYSTUDIO_SMOKE_TEST=1 is how packaging/smoke_test.sh checks that a bundle opens its window."""
    import os

    out = subprocess.run([sys.executable, "-m", "storystudio"], capture_output=True, text=True, timeout=180,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen", "STORYSTUDIO_SMOKE_TEST": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "StoryStudio window: 'Lighthouse - StoryStudio', 8 panels, icon sizes [16, 24, 32, 48, 64, 128, 256, 512]",
        "StoryStudio worker: ready"]  # after the warm-up imported torch and diffusers
    assert "Traceback" not in out.stderr
