"""Shared fixtures: tiny random-weight models built offline, loaded through the real code path."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach the Hub
import tempfile  # noqa: E402

# autosaves and recent files of the tests never land in the user's own data folder
os.environ["STORYSTUDIO_DATA_DIR"] = tempfile.mkdtemp(prefix="storystudio-test-data-")

import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from storystudio.engine.models.loading import load_model, quiet_libraries
from storystudio.engine.models.random_weights import create_tiny_model
from storystudio.export.page_render import ensure_gui_app
from storystudio.project.layout import auto_layout
from storystudio.project.model import Project
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


# ---- comic pages: panels in flat, distinct colours, so rendered pages can be checked pixel by pixel

COLOURS = [(200, 30, 30), (30, 160, 60), (40, 70, 210), (230, 180, 20), (150, 40, 170), (20, 170, 180),
           (240, 110, 30), (90, 90, 90), (160, 120, 80), (10, 110, 110), (190, 60, 120), (70, 150, 230)]


def flat_png(colour: tuple[int, int, int], size: tuple[int, int] = (96, 96)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def qt_gui(qapp):
    # pytest-qt's QApplication first: a bare QGuiApplication would break the widget tests after these
    return ensure_gui_app()


@pytest.fixture
def comic(qt_gui) -> Project:
    """The example story with a flat colour per panel, laid out on US comic pages with its words."""
    project = Project.example()
    for panel, colour in zip(project.panels, COLOURS):
        project.add_version(panel.id, flat_png(colour), {"seed": 1})
    project.panels[1].dialogue = "Grandpa, what is that light?\nOnly the old lighthouse."
    project.layout = auto_layout(project.panels, size="us-comic")
    return project
