"""The Animatic tab: editing shots and cuts with undo, the threaded preview, generated transitions, MP4 export."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QEvent, QPointF, QSettings, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from helpers import COLOURS, flat_png
from storystudio.export.animatic import read_back
from storystudio.project.animatic import CameraMove, auto_duration
from storystudio.project.model import Project
from storystudio.ui.jobs import JobKind
from storystudio.ui.animatic_editor import AnimaticEditor
from storystudio.ui.main_window import MainWindow
from storystudio.ui.session import ProjectSession


def example_with_pictures() -> Project:
    project = Project.example()
    project.panels = project.panels[:4]
    for panel, colour in zip(project.panels, COLOURS):
        project.add_version(panel.id, flat_png(colour, (128, 96)), {})
    project.animatic.size, project.animatic.fps = "1280x720", 12
    return project


@pytest.fixture
def editor(qtbot):
    session = ProjectSession(example_with_pictures())
    widget = AnimaticEditor(session)
    qtbot.addWidget(widget)
    widget.resize(1100, 700)
    widget.show()
    yield widget
    widget.shutdown()


def test_strip_shows_holds_and_transitions(editor):
    kinds = [s.kind for s in editor.strip.segments]
    assert kinds == ["hold", "transition", "hold", "transition", "hold", "transition", "hold"]
    assert editor.player.frames == editor.renderer.frame_count > 0


def test_duration_and_auto_are_undoable(editor):
    session = editor.session
    panel = session.project.panels[1]
    editor.select("shot", panel.id)
    assert editor.auto_box.isChecked() and not editor.duration_spin.isEnabled()
    editor.auto_box.setChecked(False)
    assert panel.duration == auto_duration(panel)
    editor.duration_spin.setValue(4.5)
    editor.duration_spin.setValue(5.0)  # steps of one spin box merge into one undo step
    assert panel.duration == 5.0
    session.undo.undo()
    assert panel.duration == auto_duration(panel)
    session.undo.undo()
    assert panel.duration is None


def test_camera_preset_and_dragging_a_rectangle(qtbot, editor):
    session = editor.session
    panel = session.project.panels[0]
    editor.select("shot", panel.id)
    editor.preset_box.setCurrentIndex(editor.preset_box.findData("zoom-in"))
    editor.preset_box.activated.emit(editor.preset_box.currentIndex())
    assert session.project.animatic.shot(panel.id).camera == CameraMove.preset("zoom-in")
    # drag the end rectangle (red) to the right on the picture: a real mouse drag on the view
    view = editor.camera
    qtbot.waitUntil(lambda: view.end_item.rect().width() < 0.8 * view.bounds.width())  # shows the preset
    end = editor.camera.end_item.rect()
    start = end.center()
    target = start + QPointF(0.05 * view.bounds.width(), 0)

    def send(kind, point, button, buttons):
        pos = QPointF(view.mapFromScene(point))
        QApplication.sendEvent(view.viewport(), QMouseEvent(kind, pos, QPointF(view.viewport().mapToGlobal(
            pos.toPoint())), button, buttons, Qt.NoModifier))

    send(QEvent.MouseButtonPress, start, Qt.LeftButton, Qt.LeftButton)
    for k in range(1, 5):
        send(QEvent.MouseMove, start + (target - start) * (k / 4), Qt.NoButton, Qt.LeftButton)
    send(QEvent.MouseButtonRelease, target, Qt.LeftButton, Qt.NoButton)
    moved = session.project.animatic.shot(panel.id).camera.end
    assert moved[0] == pytest.approx(0.12 + 0.05, abs=0.01) and moved[2] == pytest.approx(0.76, abs=1e-3)
    assert session.project.animatic.shot(panel.id).camera.preset_name == "custom"
    session.undo.undo()
    assert session.project.animatic.shot(panel.id).camera == CameraMove.preset("zoom-in")


def test_cut_kind_and_length(editor):
    session = editor.session
    first = session.project.panels[0].id
    editor.select("cut", first)
    editor.kind_box.setCurrentIndex(editor.kind_box.findData("cut"))
    editor.kind_box.activated.emit(editor.kind_box.currentIndex())
    assert session.project.animatic.cut(first).kind == "cut"
    editor.rebuild()
    assert [s.kind for s in editor.strip.segments][:2] == ["hold", "hold"]  # a cut adds no frames
    session.undo.undo()
    assert session.project.animatic.cut(first).kind == "crossfade"


def test_preview_frames_are_drawn_off_the_gui_thread(qtbot, editor, monkeypatch):
    threads = []
    real = type(editor.renderer).frame

    def frame_and_note(self, index):
        threads.append(threading.current_thread())
        return real(self, index)

    monkeypatch.setattr(type(editor.renderer), "frame", frame_and_note)
    editor.player.seek(20)
    qtbot.waitUntil(lambda: editor.player.shown is not None and editor.player.shown[1] == 20, timeout=10000)
    assert threads and all(t is not threading.main_thread() for t in threads)
    editor.player.play_button.setChecked(True)
    qtbot.waitUntil(lambda: editor.player.position > 25, timeout=10000)
    editor.player.play_button.setChecked(False)
    assert editor.player.last_image is not None and editor.player.last_image.width() == 640


def test_bad_sound_file_is_refused_in_plain_words(editor, tmp_path):
    (tmp_path / "song.mp3").write_text("no music here")
    editor.set_audio(str(tmp_path / "song.mp3"))
    assert "cannot be read as sound" in editor.problem.text()
    assert editor.session.project.animatic.audio is None


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    for name in ("warning", "information"):
        monkeypatch.setattr(QMessageBox, name, lambda *a, **k: None)
    win = MainWindow(example_with_pictures(), settings=QSettings(str(tmp_path / "q.ini"), QSettings.IniFormat))
    win.show()
    yield win
    win.session.undo.setClean()
    win.close()


def test_generated_transition_runs_through_the_worker(qtbot, window):
    session = window.session
    first, second = session.project.panels[0].id, session.project.panels[1].id
    job = window.generate_transition(first, "blend")
    assert job is not None
    qtbot.waitUntil(lambda: not window.jobs.active(JobKind.TRANSITION), timeout=30000)
    cut = session.project.animatic.cut(first)
    assert cut.kind == "generated" and cut.clip_fits(first, second)
    assert len(cut.clip) == round(0.5 * 12) and all(name in session.project.images for name in cut.clip)
    assert cut.clip_parameters["backend"] == "Blend (no model)"
    session.undo.undo()
    assert session.project.animatic.cut(first).clip == []


def test_mp4_export_from_the_window(qtbot, window, tmp_path):
    job = window.start_export({"format": "mp4", "path": str(tmp_path / "a.mp4")})
    assert job is not None
    qtbot.waitUntil(lambda: window.export_job is None, timeout=60000)
    info = read_back(tmp_path / "a.mp4")
    assert info["size"] == (1280, 720) and info["frames"] == window.animatic.renderer.frame_count
    assert "Exported the animatic" in window.statusBar().currentMessage()


@pytest.fixture(scope="module")
def tiny_video_dirs(tmp_path_factory):
    from storystudio.engine.models.random_weights import create_tiny_video_models

    return create_tiny_video_models(tmp_path_factory.mktemp("video") / "models")


def test_diffusion_transition_runs_through_the_worker(qtbot, window, tiny_video_dirs):
    session = window.session
    first, second = session.project.panels[1].id, session.project.panels[2].id
    window.prefs.set("video_models", {k: str(v) for k, v in tiny_video_dirs.items()} | {"device": "cpu"})
    window.prefs.set("video_options", {"steps": 2, "native_frames": 4, "width": 64, "height": 64})
    window.generate_transition(first, "diffusion")
    qtbot.waitUntil(lambda: not window.jobs.active(JobKind.TRANSITION), timeout=120000)
    cut = session.project.animatic.cut(first)
    assert cut.kind == "generated" and cut.clip_fits(first, second) and len(cut.clip) == 6
    assert cut.clip_parameters["backend"].startswith("AnimateDiff") and cut.clip_parameters["steps"] == 2


def test_missing_video_models_lead_to_the_models_dialog(qtbot, window, tmp_path, monkeypatch):
    from storystudio.ui.models_dialog import ModelsDialog

    seen, opened = [], []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: seen.append(a[2]) or QMessageBox.Yes)
    monkeypatch.setattr(ModelsDialog, "exec", lambda dialog: opened.append(dialog.intro.text()) or 0)
    window.prefs.set("video_models", {"motion_adapter": str(tmp_path / "nowhere"), "device": "cpu"})
    first = window.session.project.panels[0].id
    window.generate_transition(first, "diffusion")
    qtbot.waitUntil(lambda: not window.jobs.active(JobKind.TRANSITION), timeout=60000)
    assert seen and "not on this computer" in seen[0] and "Open Models" in seen[0]
    assert opened and "video models" in opened[0]
    assert window.session.project.animatic.cut(first).clip == []


def test_the_preview_shows_the_frames_the_mp4_holds(qtbot, editor, tmp_path):
    """One frame function for both: the player's frame k is the MP4's frame k, at preview size."""
    import imageio_ffmpeg
    import numpy as np
    from PIL import Image

    from storystudio.export.animatic import AnimaticRenderer, export_mp4, frame_array

    project = editor.session.project
    editor.select("shot", project.panels[0].id)
    editor.edit_shot("Camera move", camera=CameraMove.preset("zoom-in"))  # frames that move, not one still
    for panel in project.panels:
        panel.duration = 1.0  # a short film keeps the test quick
    editor.rebuild()
    export_mp4(project, tmp_path / "a.mp4")
    reader = imageio_ffmpeg.read_frames(str(tmp_path / "a.mp4"))
    w, h = next(reader)["size"]
    decoded = [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]
    preview_size = editor.renderer.size
    for index in (3, editor.renderer.segments[1].first + 2, len(decoded) - 5):
        editor.player.seek(index)
        qtbot.waitUntil(lambda: editor.player.shown == (editor.player.generation, index), timeout=10000)
        shown = frame_array(editor.player.last_image).astype(np.int16)
        # exactly what the renderer draws at that size ...
        same = AnimaticRenderer(project, size=preview_size).frame_array(index).astype(np.int16)
        assert np.array_equal(shown, same)
        # ... and the MP4's frame, scaled down to it, within what H.264 and scaling change
        mp4 = np.asarray(Image.fromarray(decoded[index]).resize(preview_size, Image.Resampling.BOX), np.int16)
        assert np.abs(shown - mp4).mean() < 4
