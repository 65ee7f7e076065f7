"""``storystudio render`` checks everything before the model loads, and keeps ``--out`` to one whole run.

Limits come from ``storystudio.project.limits``; each refusal is one short sentence and leaves the
output folder as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import assert_plain_error, cli, pngs
from storystudio.project import limits

TINY = ["--steps", "1", "--size", "64x64", "--device", "cpu"]
TWO_PANELS = "[Ann] a girl with red hair\n\n[Ann] reads a book\n[NC] a quiet street\n"


def run_files(out: Path) -> set[str]:
    """Every file in ``out`` (relative), but the manifest and what the test put there itself."""
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.json", "keep.txt"}


@pytest.mark.parametrize(("options", "expected"), [
    (["--size", "99968x99968"], "pictures may be at most 2048 pixels a side"),
    (["--size", "1088x1088"], "SD1.5 models draw at most 1024 pixels a side (twice the 512 they were trained at)"),
    (["--size", "32x32"], "at least 64x64"),
    (["--guidance", "nan"], "--guidance must be a number from 0 to 30, not nan"),
    (["--guidance", "inf"], "--guidance must be a number from 0 to 30, not inf"),
    (["--guidance", "-1"], "--guidance must be a number from 0 to 30"),
    (["--steps", "1001"], f"--steps must be from 1 to {limits.MAX_STEPS}, not 1001"),
    (["--steps", "0"], "--steps must be from 1"),
    (["--seed", "-5"], "--seed must be from 0 to 2147483647, not -5"),
    (["--seed", "9" * 5000], '--seed must be from 0 to 2147483647, not "99999999999999999999..."'),
    (["--id-length", "99"], "--id-length must be from 1 to 8"),
    (["--batch-size", "100000"], "--batch-size must be from 0 to 16"),
    (["--rate", "nan"], "the consistency rate must be a number from 0 to 1"),
    (["--dpi", "100000"], "--dpi must be from 36 to 1200"),
    (["--transition-seconds", "inf", "--mp4", "x.mp4"], "--transition-seconds must be a number from 0 to 10"),
    (["--negative", "n" * 20_000], "--negative may be at most 10000 characters long, not 20000"),
    (["--style", "s" * 100_000], "--style may be at most 100 characters long"),
    (["--device", "d" * 100_000], "invalid choice: 'dddddddddddddddddddddddddddddddddddddddd...'"),
    (["--out", ""], "--out needs a name; an empty one is not a place"),
    (["--panels", "1,x" * 10], '"x1" is not a panel number of this story (1 to 6)'),
])
def test_options_out_of_limits_are_refused_before_the_model_loads(options, expected, tmp_path, small_script,
                                                                  tiny_model_dirs):
    out = tmp_path / "out"
    run = cli("render", small_script, "--out", out, "--model", tiny_model_dirs["sd15"], *TINY, *options)
    assert_plain_error(run, expected)
    assert "Loading" not in run.err, "refused only after the model was loaded"
    assert len(run.err) < 400, run.err
    assert not out.exists() and not list(tmp_path.glob(".*part"))


def test_sdxl_may_draw_larger_than_sd15(tmp_path, small_script, tiny_model_dirs):
    """The same size is refused for an SD1.5 model and passes the checks for an SDXL one (which then
    refuses it only because the tiny model's UNet needs multiples of 32: after loading, nothing written)."""
    size = ["--size", "1536x1536"]
    refused = cli("render", small_script, "--out", tmp_path / "a", "--model", tiny_model_dirs["sd15"], *TINY, *size)
    assert_plain_error(refused, "SD1.5 models draw at most 1024")
    passed = cli("render", small_script, "--out", tmp_path / "b", "--model", tiny_model_dirs["sdxl"], *TINY,
                 "--size", "2040x2040")
    assert_plain_error(passed, "multiples of 32")
    assert "Loading" in passed.err and not (tmp_path / "b").exists()


def test_a_story_over_the_panel_limit_is_refused_before_loading(tmp_path, tiny_model_dirs):
    script = tmp_path / "long.story.txt"
    script.write_text("[NC] fog\n" * (limits.MAX_PANELS + 1), encoding="utf-8")
    run = cli("render", script, "--out", tmp_path / "out", "--model", tiny_model_dirs["sd15"], *TINY)
    assert_plain_error(run, f"The story has {limits.MAX_PANELS + 1} panels; a story may have at most 999")
    assert "Loading" not in run.err


def test_exports_may_go_into_the_output_folder_render_creates(tmp_path, tiny_model_dirs):
    """Issue 11, point 6: --pdf OUT/comic.pdf and --mp4 OUT/a.mp4 while OUT does not exist yet."""
    script = tmp_path / "two.story.txt"
    script.write_text(TWO_PANELS, encoding="utf-8")
    out = tmp_path / "new" / "out"
    run = cli("render", script, "--out", out, "--model", tiny_model_dirs["sd15"], *TINY, "--id-length", "1",
              "--pdf", out / "comic.pdf", "--cbz", out / "books" / "comic.cbz", "--mp4", out / "a.mp4",
              "--fps", "12", "--video-size", "1280x720")
    assert run.rc == 0, run.err
    for name in ("comic.pdf", "books/comic.cbz", "a.mp4", "panel-001.png", "panel-002.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["files"] == ["panel-001.png", "panel-002.png"]
    assert not list(tmp_path.rglob("*.part"))
    # a folder that render does not make still has to exist
    run = cli("render", script, "--out", tmp_path / "o2", "--model", tiny_model_dirs["sd15"], *TINY,
              "--pdf", tmp_path / "elsewhere" / "comic.pdf")
    assert_plain_error(run, "elsewhere", "does not exist")


def test_a_rerun_replaces_the_earlier_run_as_a_whole(tmp_path, small_script, tiny_model_dirs):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    first = cli("render", small_script, "--out", out, "--model", tiny_model_dirs["sd15"], *TINY, "--save-banks")
    assert first.rc == 0, first.err
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest["files"]) == run_files(out)
    assert {"banks/Ann.safetensors", "banks/Bo.safetensors", "panel-006.png"} <= run_files(out)

    script = tmp_path / "two.story.txt"
    script.write_text(TWO_PANELS, encoding="utf-8")
    second = cli("render", script, "--out", out, "--model", tiny_model_dirs["sd15"], *TINY, "--id-length", "1")
    assert second.rc == 0, second.err
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "complete" and manifest["title"] == "two"
    assert run_files(out) == set(manifest["files"]) == {"panel-001.png", "panel-002.png"}  # nothing of the first
    assert not (out / "banks").exists()
    assert (out / "keep.txt").read_text(encoding="utf-8") == "mine"  # not a run's file: untouched
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_a_render_of_some_panels_into_an_earlier_run_is_refused(tmp_path, small_script, tiny_model_dirs):
    out = tmp_path / "out"
    assert cli("render", small_script, "--out", out, "--model", tiny_model_dirs["sd15"], *TINY).rc == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    run = cli("render", small_script, "--out", out, "--model", tiny_model_dirs["sd15"], *TINY, "--panels", "2")
    assert_plain_error(run, "already holds a render", "Choose another --out")
    assert "Loading" not in run.err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_refusal_after_the_model_loads_leaves_no_trace(tmp_path, small_script, tiny_model_dirs):
    out = tmp_path / "sub" / "out"
    run = cli("render", small_script, "--out", out, "--model", tiny_model_dirs["sd15"], "--steps", "1",
              "--size", "80x80", "--device", "cpu")
    assert_plain_error(run, "multiples of 32")
    assert "Loading" in run.err
    assert list(tmp_path.iterdir()) == []  # not even the parent folder


def test_a_staging_folder_left_by_a_killed_render_is_removed(tmp_path, tiny_model_dirs):
    out = tmp_path / "out"
    stale = out / ".storystudio-render-999999999.part"  # no such process
    stale.mkdir(parents=True)
    (stale / "panel-001.png").write_bytes(b"half")
    script = tmp_path / "two.story.txt"
    script.write_text(TWO_PANELS, encoding="utf-8")
    run = cli("render", script, "--out", out, "--model", tiny_model_dirs["sd15"], *TINY, "--id-length", "1")
    assert run.rc == 0, run.err
    assert not stale.exists()
    assert pngs(out) == ["panel-001.png", "panel-002.png"]


@pytest.mark.parametrize("exists", [False, True], ids=["new out", "existing out"])
def test_a_ctrl_c_just_as_the_staging_folder_is_made_removes_it(tmp_path, monkeypatch, exists):
    """The signal is handled right after ``mkdir`` returns (as Python runs handlers between bytecodes):
    the folder it made must still go. The CI once found one left after Ctrl+C on "Model ready"."""
    import signal

    from storystudio.cli import runfolder
    from storystudio.cli.base import interrupts

    out = tmp_path / "out"
    if exists:
        out.mkdir()
    real_mkdir = Path.mkdir

    def mkdir_then_sigint(self, *args, **kwargs):
        real_mkdir(self, *args, **kwargs)
        interrupts.handler(signal.SIGINT, None)  # what the SIGINT handler does at that moment

    monkeypatch.setattr(Path, "mkdir", mkdir_then_sigint)
    with pytest.raises(KeyboardInterrupt):
        with runfolder.RunFolder(out).staging():
            pytest.fail("the block must not start once Ctrl+C came")
    monkeypatch.undo()
    assert list(tmp_path.rglob("*storystudio-render-*")) == []
    assert out.exists() == exists
    interrupts.stop.clear()



def test_a_project_tagging_somebody_not_in_the_cast_is_refused_before_loading(tmp_path, tiny_model_dirs):
    """The app keeps a prompt's tag when its character is deleted; render names the panel to fix."""
    from storystudio.project.fileio import save_project
    from storystudio.project.model import Project

    project = Project.example()
    project.panels[2].prompt = "[Zed] dances on the pier"
    save_project(project, tmp_path / "story.storystudio")
    out = tmp_path / "out"
    run = cli("render", tmp_path / "story.storystudio", "--out", out, "--model", tiny_model_dirs["sd15"], *TINY)
    assert_plain_error(run, "panel 3: There is no character named [Zed]")
    assert "Loading" not in run.err and not out.exists()


def test_pages_too_large_at_the_resolution_are_refused_before_loading(tmp_path, small_script, tiny_model_dirs):
    out = tmp_path / "out"
    run = cli("render", small_script, "--out", out, "--model", tiny_model_dirs["sd15"], *TINY,
              "--pdf", tmp_path / "c.pdf", "--page-size", "webtoon", "--dpi", "1200")
    assert_plain_error(run, "at 1200 dpi page 1 would be", f"more than the {limits.MAX_RASTER_SIDE:,} a page may "
                       "have; give --dpi")
    assert "Loading" not in run.err and not out.exists() and not (tmp_path / "c.pdf").exists()
