"""``storystudio render --pose N=IMAGE`` and a project's poses: checked before any work, drawn with the
ControlNet, recorded in the PNG parameters and kept in the saved project."""

from __future__ import annotations

import io

import numpy as np
import pytest

from cli_helpers import assert_plain_error, cli, pixels, point_hf_cache
from helpers import flat_png
from storystudio.engine.imaging import read_png_parameters
from storystudio.project import pose
from storystudio.project.fileio import load_project, save_project
from storystudio.project.model import Project
from storystudio.project.pose import PanelPose, Skeleton
from storystudio.project.script import parse_script

FAST = ["--steps", "2", "--size", "64x64", "--device", "cpu", "--id-length", "1", "--seed", "4"]
STORY = "[Ann] a girl with red hair\n\n[Ann] reads a book\n[Ann] walks in the rain\n[NC] a quiet street\n"


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("pose-script") / "story.txt"
    path.write_text(STORY, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pose_picture(tmp_path_factory):
    out = io.BytesIO()
    pose.render_skeletons((64, 64), [(Skeleton(pose.PRESETS["arms up"]), pose.WHOLE_PANEL)]).save(out, "PNG")
    path = tmp_path_factory.mktemp("pose-picture") / "arms-up.png"
    path.write_bytes(out.getvalue())
    return path


@pytest.mark.parametrize(("options", "expected"), [
    (["--pose", "2"], "--pose takes N=IMAGE (a panel number and a pose picture), not \"2\""),
    (["--pose", "two=x.png"], "--pose takes N=IMAGE"),
    (["--pose", "9=POSE"], "--pose names panel 9, but the story has panels 1 to 3."),
    (["--pose", "0=POSE"], "--pose names panel 0, but the story has panels 1 to 3."),
    (["--pose", "2=missing.png"], 'the pose picture "missing.png" cannot be read (No such file or directory).'),
    (["--pose", "2=PHOTO"], 'The pose picture "photo.png" does not look like an OpenPose skeleton'),
    (["--pose", "2=TEXT"], 'The pose picture "notes.png" is not a picture StoryStudio can read'),
    (["--pose-strength", "3"], "--pose-strength must be a number from 0 to 2, not 3"),
    (["--pose-steps", "0.8:0.2"], "--pose-steps takes START:END"),
    (["--pose-steps", "nan:1"], "--pose-steps takes START:END"),
    (["--depth", "7=POSE"], "--depth names panel 7, but the story has panels 1 to 3."),
    (["--lineart", "2=TEXT"], 'The line art "notes.png" is not a picture StoryStudio can read'),
])
def test_bad_pose_options_are_refused_in_one_line_before_the_model_loads(options, expected, tmp_path, script,
                                                                         pose_picture, tiny_model_dirs):
    (tmp_path / "photo.png").write_bytes(flat_png((200, 170, 150), (64, 64)))
    (tmp_path / "notes.png").write_bytes(b"not a picture")
    files = {"POSE": str(pose_picture), "PHOTO": str(tmp_path / "photo.png"), "TEXT": str(tmp_path / "notes.png"),
             "missing.png": "missing.png"}
    options = [next((o.replace(k, v) for k, v in files.items() if o.endswith("=" + k)), o) for o in options]
    out = tmp_path / "out"
    run = cli("render", script, "--out", out, "--model", tiny_model_dirs["sd15"], *FAST, *options)
    assert_plain_error(run, expected)
    assert "Loading" not in run.err and len(run.err.strip().splitlines()) == 1, run.err
    assert not out.exists()


def test_a_missing_controlnet_is_one_sentence_before_the_model_loads(tmp_path, script, pose_picture,
                                                                     tiny_model_dirs, monkeypatch):
    point_hf_cache(monkeypatch, tmp_path / "empty-cache", tmp_path)
    run = cli("render", script, "--out", tmp_path / "out", "--model", tiny_model_dirs["sd15"], *FAST,
              "--pose", f"2={pose_picture}")
    assert_plain_error(run, "Panels with a pose need ControlNet 1.1 OpenPose for SD1.5, which is not on this "
                            "computer; download it in the Models dialog (or: storystudio models download "
                            "controlnet-openpose-sd15).")
    assert "Loading" not in run.err


def test_pose_draws_its_panel_and_the_png_records_it(tmp_path, script, pose_picture, tiny_model_dirs,
                                                     tiny_controlnets):
    model, net = tiny_model_dirs["sd15"], tiny_controlnets["sd15"]
    plain = cli("render", script, "--out", tmp_path / "plain", "--model", model, *FAST)
    assert plain.rc == 0, plain.err
    posed = cli("render", script, "--out", tmp_path / "posed", "--model", model, *FAST, "--pose", f"2={pose_picture}",
                "--pose-model", net, "--pose-strength", "0.9", "--pose-steps", "0:1")
    assert posed.rc == 0, posed.err
    for name in ("panel-001.png", "panel-003.png"):
        assert np.array_equal(pixels(tmp_path / "plain" / name), pixels(tmp_path / "posed" / name))
    assert not np.array_equal(pixels(tmp_path / "plain" / "panel-002.png"),
                              pixels(tmp_path / "posed" / "panel-002.png"))
    record = read_png_parameters(tmp_path / "posed" / "panel-002.png")["controls"]
    drawn = pose.Guide("pose", images=((pose_picture.read_bytes(), pose.WHOLE_PANEL),)).render((64, 64))
    assert record == [dict(kind="pose", sha256=pose.picture_digest(drawn), strength=0.9, start=0.0, end=1.0,
                           model=str(net))]
    assert "controls" not in read_png_parameters(tmp_path / "posed" / "panel-001.png")


def test_a_projects_poses_are_drawn_and_kept(tmp_path, tiny_model_dirs, tiny_controlnets):
    project = Project.from_story(parse_script(STORY))
    project.panels[1].poses = [PanelPose("Ann", Skeleton(pose.PRESETS["walking"]))]
    project.settings.control_strength = 1.5
    path = tmp_path / "posed.storystudio"
    save_project(project, path)
    run = cli("render", path, "--out", tmp_path / "out", "--model", tiny_model_dirs["sd15"], *FAST,
              "--pose-model", tiny_controlnets["sd15"])
    assert run.rc == 0, run.err
    record = read_png_parameters(tmp_path / "out" / "panel-002.png")["controls"]
    guide = project.to_story().panels[1].guides[0]
    assert record[0]["sha256"] == pose.picture_digest(guide.render((64, 64))) and record[0]["strength"] == 1.5
    saved = load_project(tmp_path / "out" / "posed.storystudio")
    assert saved.panels[1].poses == project.panels[1].poses
    assert saved.panels[1].chosen_version.parameters["controls"] == record


def test_a_depth_map_from_the_command_line(tmp_path, script, tiny_model_dirs, tiny_controlnets):
    depth = tmp_path / "depth.png"
    depth.write_bytes(flat_png((90, 90, 90), (64, 64)))  # a depth map is any picture: no skeleton check
    run = cli("render", script, "--out", tmp_path / "out", "--model", tiny_model_dirs["sd15"], *FAST,
              "--depth", f"3={depth}", "--depth-model", tiny_controlnets["sd15"])
    assert run.rc == 0, run.err
    record = read_png_parameters(tmp_path / "out" / "panel-003.png")["controls"]
    assert [(r["kind"], r["model"]) for r in record] == [("depth", str(tiny_controlnets["sd15"]))]
