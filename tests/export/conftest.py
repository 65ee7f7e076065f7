"""A laid-out project whose panels are flat, distinct colours, so a rendered page can be checked pixel by pixel."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from storystudio.export.page_render import ensure_gui_app
from storystudio.project.layout import auto_layout
from storystudio.project.model import Project

COLOURS = [(200, 30, 30), (30, 160, 60), (40, 70, 210), (230, 180, 20), (150, 40, 170), (20, 170, 180),
           (240, 110, 30), (90, 90, 90), (160, 120, 80), (10, 110, 110), (190, 60, 120), (70, 150, 230)]


def png(colour: tuple[int, int, int], size: tuple[int, int] = (96, 96)) -> bytes:
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
        project.add_version(panel.id, png(colour), {"seed": 1})
    project.panels[1].dialogue = "Grandpa, what is that light?\nOnly the old lighthouse."
    project.layout = auto_layout(project.panels, size="us-comic")
    return project
