"""The pose editor: drag a joint, import an OpenPose picture, and the panel keeps its poses (undoable)."""

from __future__ import annotations

import io

import pytest
from PySide6.QtCore import QPoint, QSettings, Qt
from PySide6.QtWidgets import QDialog, QMessageBox

from storystudio.project import pose
from storystudio.project.pose import COLOURS, PanelPose, Skeleton
from storystudio.ui import main_window as mw
from storystudio.ui.main_window import MainWindow
from storystudio.ui.pose_editor import PoseEditorDialog, pose_summary
from storystudio.ui.preferences import Preferences

CPU = {"summary": "CPU", "gpu_gb": None, "devices": ["cpu"]}


@pytest.fixture
def window(qtbot, tmp_path):
    prefs = Preferences(QSettings(str(tmp_path / "q.ini"), QSettings.IniFormat))
    prefs.set("machine", CPU)
    win = MainWindow(None, settings=prefs)
    win.show()
    yield win
    win.session.undo.setClean()
    win.close()


def pose_file(tmp_path, name="pose.png") -> str:
    out = io.BytesIO()
    pose.render_skeletons((256, 384), [(Skeleton.standing(), pose.WHOLE_PANEL)]).save(out, "PNG")
    path = tmp_path / name
    path.write_bytes(out.getvalue())
    return str(path)


def test_dragging_a_joint_moves_it_and_the_canvas_shows_the_control_picture(qtbot, window):
    project = window.session.project
    panel = project.panels[1]
    dialog = PoseEditorDialog(panel, 2, panel.characters(), project.images, (512, 512))
    qtbot.addWidget(dialog)
    dialog.resize(700, 700)
    dialog.show()
    dialog.draw_preset()
    canvas = dialog.canvas
    start = canvas.joint_point(4)  # the right wrist
    assert canvas.joint_at(start) == 4
    target = QPoint(round(start.x()) + 30, round(start.y()) - 60)
    qtbot.mousePress(canvas, Qt.LeftButton, pos=start.toPoint())
    qtbot.mouseMove(canvas, target)
    qtbot.mouseRelease(canvas, Qt.LeftButton, pos=target)
    moved = dialog.values()[0][0].skeleton.points[4]
    rect = canvas.picture_rect()
    placed = pose.place(dialog.poses, dialog.characters)[0][1]
    want = pose.box_point(placed, (round(rect.width()), round(rect.height())), target.x() - rect.x(),
                          target.y() - rect.y())
    assert moved == pytest.approx(want, abs=1e-5)
    assert moved != Skeleton.standing().points[4]
    # what the canvas paints at the wrist is the joint's OpenPose colour (the control picture itself)
    shot = canvas.grab().toImage()
    at = canvas.joint_point(4)
    assert shot.pixelColor(round(at.x()), round(at.y())).getRgb()[:3] == COLOURS[4]
    # right-click leaves a joint out
    elbow = canvas.joint_point(3).toPoint()
    qtbot.mouseClick(canvas, Qt.RightButton, pos=elbow)
    assert dialog.values()[0][0].skeleton.points[3] is None


def test_an_imported_pose_picture_and_a_bad_one(qtbot, window, tmp_path, monkeypatch):
    project = window.session.project
    panel = project.panels[1]
    dialog = PoseEditorDialog(panel, 2, panel.characters(), project.images, (512, 512))
    qtbot.addWidget(dialog)
    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text: warned.append(text))
    bad = tmp_path / "photo.png"
    bad.write_bytes(b"\x89PNG not really")
    assert not dialog.import_image(bad)
    assert warned == ['"photo.png" is not a picture StoryStudio can read (PNG or JPEG).']
    assert dialog.import_image(pose_file(tmp_path))
    poses, images = dialog.values()
    assert poses[0].image in images and poses[0].skeleton is None
    assert pose_summary(panel) == "none (the model chooses)"


def test_the_panel_view_edits_poses_in_one_undo_step_and_saves_them(qtbot, window, tmp_path, monkeypatch):
    from storystudio.project.fileio import load_project, save_project

    project = window.session.project
    panel = project.panels[1]
    window.timeline.select_id(panel.id)
    window.panel_view.show_panel(panel.id)
    file = pose_file(tmp_path)

    def edit(dialog):
        dialog.draw_preset()
        dialog.mirror()
        dialog.who.setCurrentIndex(dialog.who.count() - 1)  # the whole panel
        dialog.import_image(file)
        return QDialog.Accepted

    monkeypatch.setattr(PoseEditorDialog, "exec", edit)
    window.panel_view.pose_button.click()
    after = window.session.panel(panel.id).poses
    assert [p.character for p in after] == [panel.characters()[0], ""]
    settings = project.settings
    drawn = pose.preset("standing", pose.default_box(0, len(panel.characters())),
                        panel.size or (settings.width, settings.height)).mirrored()
    assert [v for p in after[0].skeleton.points for v in p] == pytest.approx([v for p in drawn.points for v in p])
    assert after[1].image in project.images
    assert window.panel_view.pose_label.text() == f"[{panel.characters()[0]}] drawn, whole panel imported"
    assert window.session.undo.count() == 1
    path = tmp_path / "posed.storystudio"
    save_project(project, path)
    assert load_project(path).panels[1].poses == after
    window.session.undo.undo()
    assert window.session.panel(panel.id).poses == []
    assert mw.pose_summary(window.session.panel(panel.id)) == "none (the model chooses)"


def test_a_cancelled_editor_changes_nothing(qtbot, window, monkeypatch):
    panel = window.session.project.panels[1]
    panel.poses = [PanelPose("", Skeleton.standing())]
    window.panel_view.show_panel(panel.id)

    def cancel(dialog):
        dialog.remove()
        return QDialog.Rejected

    monkeypatch.setattr(PoseEditorDialog, "exec", cancel)
    window.panel_view.edit_poses()
    assert window.session.panel(panel.id).poses == [PanelPose("", Skeleton.standing())]
    assert window.session.undo.count() == 0


def test_the_generation_dock_sets_pose_strength_and_steps(window):
    panel = window.settings_panel
    settings = window.session.project.settings
    panel.pose_strength_spin.setValue(0.7)
    panel.pose_start_spin.setValue(0.1)
    panel.pose_end_spin.setValue(0.6)
    assert (settings.control_strength, settings.control_start, settings.control_end) == (0.7, 0.1, 0.6)
    panel.pose_start_spin.setValue(0.8)  # after the end: refused, the box shows the range as it was
    assert settings.control_start == 0.1 and panel.pose_start_spin.value() == 0.1
    window.session.undo.undo()
    assert settings.control_end == 1.0


def test_regenerate_knows_a_new_pose_draws_a_new_picture():
    from storystudio.project.model import ImageVersion, Project
    from storystudio.ui.recipes import recipe, would_repeat

    project = Project.example()
    panel = project.panels[1]
    made = dict(recipe(panel, project.to_story(), project.settings), model=project.settings.model)
    made.pop("controls")  # drawn before poses: its parameters have none
    panel.versions.append(ImageVersion("img-x.png", made))
    assert would_repeat(panel, project.to_story(), project.settings)
    panel.poses = [PanelPose(panel.characters()[0], Skeleton.standing())]
    assert not would_repeat(panel, project.to_story(), project.settings)  # the pose changes the picture
    posed = recipe(panel, project.to_story(), project.settings)
    recorded = [dict(c, model="controlnet-openpose-sdxl") for c in posed["controls"]]  # as the engine records it
    panel.versions.append(ImageVersion("img-y.png", dict(made, controls=recorded)))
    assert would_repeat(panel, project.to_story(), project.settings)
    panel.poses[0] = PanelPose(panel.characters()[0], Skeleton.standing().moved(4, 0.2, 0.2))
    assert not would_repeat(panel, project.to_story(), project.settings)
