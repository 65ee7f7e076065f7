"""Shared fixtures: tiny random-weight models built offline, loaded through the real code path."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach the Hub
import tempfile  # noqa: E402

# autosaves and recent files of the tests never land in the user's own data folder
os.environ["STORYSTUDIO_DATA_DIR"] = tempfile.mkdtemp(prefix="storystudio-test-data-")

from pathlib import Path

import pytest
import torch

from storystudio.engine.models import load_model, quiet_libraries
from storystudio.engine.random_models import create_tiny_model
from storystudio.project.script import parse_script

torch.set_num_threads(min(4, os.cpu_count() or 1))
quiet_libraries()

EXAMPLE = Path(__file__).resolve().parents[1] / "resources" / "examples" / "lighthouse.story.txt"

# A short story for fast tests: Ann has three solo panels, Bo one, one panel shows both, one nobody.
SMALL_STORY = """\
[Ann] a girl with red hair and a green coat
[Bo] a tall man with a grey beard

[Ann] reads a book # Ann loves books.
[Ann] walks in the rain
[Bo] paints a fence
[Ann] eats an apple
[NC] a quiet street at night # Later.
[Ann] and [Bo] laugh together
"""


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {arch: create_tiny_model(root / arch, arch) for arch in ("sd15", "sdxl")}


@pytest.fixture(scope="session", params=["sd15", "sdxl"])
def tiny_model(request, tiny_model_dirs):
    """A tiny model loaded by load_model, once per architecture."""
    return load_model(str(tiny_model_dirs[request.param]), device="cpu")


@pytest.fixture(scope="session")
def tiny_sdxl(tiny_model_dirs):
    return load_model(str(tiny_model_dirs["sdxl"]), device="cpu")


@pytest.fixture(scope="session")
def tiny_sd15(tiny_model_dirs):
    return load_model(str(tiny_model_dirs["sd15"]), device="cpu")


@pytest.fixture
def small_story():
    return parse_script(SMALL_STORY, title="small")
