"""Qt pieces for the tests that paint pages: a GUI application and a laid-out comic in flat colours."""

from __future__ import annotations

import os

import pytest
from PySide6.QtCore import QSettings

from helpers import COLOURS, flat_png
from storystudio.export.page_render import ensure_gui_app
from storystudio.project.layout import auto_layout
from storystudio.project.model import Project

SETTINGS_DIR = os.environ["STORYSTUDIO_TEST_SETTINGS"]  # made by tests/conftest.py
for _format in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
    QSettings.setPath(_format, QSettings.Scope.UserScope, SETTINGS_DIR)


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
