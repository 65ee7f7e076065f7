"""Fixtures of the ``storystudio`` command's tests: the tiny models, Qt, a small script, a cache, a project.

Everything runs on the CPU and offline with the tiny random models of tests/model_fixtures.py (their
pictures are noise). Helpers to run the command are in tests/cli_helpers.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cli_helpers import SNAPSHOT
from helpers import COLOURS, SMALL_STORY, flat_png
from model_fixtures import tiny_controlnets, tiny_model, tiny_model_dirs, tiny_sd15, tiny_sdxl  # noqa: F401
from qt_fixtures import comic, qt_gui  # noqa: F401
from storystudio.project.fileio import save_project
from storystudio.project.layout import Balloon
from storystudio.project.model import Project


@pytest.fixture(scope="module")
def small_script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scripts") / "small.story.txt"
    path.write_text(SMALL_STORY, encoding="utf-8")
    return path


# ---- the model folders and the Hugging Face cache ---------------------------------------------
@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory, tiny_model_dirs) -> Path:  # noqa: F811 (a fixture)
    """A Hugging Face cache holding the tiny sd15 model as the repo ``tiny/sd15``."""
    cache = tmp_path_factory.mktemp("hf-cache")
    repo = cache / "models--tiny--sd15"
    shutil.copytree(tiny_model_dirs["sd15"], repo / "snapshots" / SNAPSHOT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT, encoding="utf-8")  # no newline, as the Hub client writes it
    return cache


# ---- exporting a saved project, and rendering one ---------------------------------------------
@pytest.fixture
def saved_project(tmp_path, qapp) -> Path:
    """The example project with a flat colour per panel, laid out on manga pages, with a hand-made balloon."""
    from storystudio.project.layout import auto_layout

    project = Project.example()
    for panel, colour in zip(project.panels, COLOURS):
        project.add_version(panel.id, flat_png(colour), {"seed": 1})
    project.layout = auto_layout(project.panels, size="manga-a5", direction="rtl")
    project.layout.pages[0].balloons.append(Balloon("sfx", 40, 60, 120, 50, text="WHOOSH"))
    path = tmp_path / "lighthouse.storystudio"
    save_project(project, path)
    return path

