"""Shared by every test package, and pure: no torch, no Qt (tests/project runs without them).

The tiny random-weight models live in ``model_fixtures.py`` and the Qt pieces in
``qt_fixtures.py``; the conftest of each package that needs them imports them.
Plain helpers (stories, pictures) are in ``helpers.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach the Hub
import tempfile  # noqa: E402

# autosaves and recent files of the tests never land in the user's own data folder
os.environ["STORYSTUDIO_DATA_DIR"] = tempfile.mkdtemp(prefix="storystudio-test-data-")
# nor does anything the app keeps in QSettings (window geometry, preferences, measured speeds): Qt finds its
# settings under XDG_CONFIG_HOME, and qt_fixtures.py points QSettings there too
os.environ["XDG_CONFIG_HOME"] = os.environ["STORYSTUDIO_TEST_SETTINGS"] = tempfile.mkdtemp(
    prefix="storystudio-test-settings-")

import pytest  # noqa: E402

from helpers import SMALL_STORY  # noqa: E402
from storystudio.project.script import parse_script  # noqa: E402

@pytest.fixture
def small_story():
    return parse_script(SMALL_STORY, title="small")
