"""This package's tests use the tiny models and Qt (see tests/model_fixtures.py and tests/qt_fixtures.py)."""

from model_fixtures import tiny_model, tiny_model_dirs, tiny_sd15, tiny_sdxl  # noqa: F401
from qt_fixtures import comic, qt_gui  # noqa: F401
