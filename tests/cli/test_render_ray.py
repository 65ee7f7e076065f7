"""``render --ray``: its checks before any work, and without Ray installed (no Ray is started here; the run
through a real local Ray is in tests/engine/test_ray_story.py)."""

from __future__ import annotations

import sys

import pytest

from cli_helpers import assert_plain_error, cli

TINY = ["--steps", "1", "--size", "64x64", "--device", "cpu"]


@pytest.mark.parametrize(("options", "expected"), [
    (["--ray", "gpu box"], '"gpu box" is not a Ray cluster address; write auto, HOST:PORT'),
    (["--ray", "ray://gpu-box"], "is not a Ray cluster address"),
    (["--ray", "gpu-box:99999"], "is not a Ray cluster address"),
    (["--ray", "auto", "--save-banks"], "kept banks (--banks, --save-banks) are not used through Ray"),
    (["--ray", "x" * 500], "--ray may be at most 300 characters long"),
])
def test_ray_options_are_checked_before_any_work(options, expected, tmp_path, small_script, tiny_model_dirs):
    out = tmp_path / "out"
    run = cli("render", small_script, "--out", out, "--model", tiny_model_dirs["sd15"], *TINY, *options)
    assert_plain_error(run, expected)
    assert "Loading" not in run.err and "Connecting" not in run.err
    assert not out.exists()


def test_without_ray_installed_the_option_says_how_to_get_it(tmp_path, small_script, tiny_model_dirs,
                                                             monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as without the extra
    out = tmp_path / "out"
    run = cli("render", small_script, "--out", out, "--model", tiny_model_dirs["sd15"], *TINY, "--ray", "auto")
    assert_plain_error(run)
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert lines == ['storystudio: Rendering through Ray needs Ray, which is not installed; install it with '
                     'pip install "storystudio[ray]".']
    assert not out.exists()


def test_the_packaged_program_says_that_ray_needs_a_pip_install(tmp_path, small_script, tiny_model_dirs,
                                                                 monkeypatch):
    """pip cannot add an extra to the bundle: the sentence says where Ray can be had instead."""
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setattr(sys, "frozen", True, raising=False)  # what PyInstaller sets in the bundle
    run = cli("render", small_script, "--out", tmp_path / "out", "--model", tiny_model_dirs["sd15"], *TINY,
              "--ray", "auto")
    assert_plain_error(run)
    assert [line for line in run.err.splitlines() if line.strip()] == [
        "storystudio: Rendering through Ray needs Ray, which the StoryStudio program does not include; install "
        'StoryStudio with pip to use it (pip install "storystudio[ray]").']


def test_a_cluster_that_does_not_answer_is_one_sentence(tmp_path, small_script, tiny_model_dirs, monkeypatch):
    import ray

    def unreachable(*args, **kwargs):
        raise ConnectionError("Failed to connect to GCS at address 10.9.9.9:6379 within 30 seconds.")

    monkeypatch.setattr(ray, "init", unreachable)
    out = tmp_path / "out"
    run = cli("render", small_script, "--out", out, "--model", tiny_model_dirs["sd15"], *TINY,
              "--ray", "10.9.9.9:6379")
    assert_plain_error(run, 'Could not reach a Ray cluster at "10.9.9.9:6379": Failed to connect to GCS')
    assert "Loading" not in run.err and not out.exists()
