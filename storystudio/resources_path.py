"""Where the bundled data (examples, styles, fonts, catalogs) lives.

Installed, ``resources/`` is the package ``storystudio.resources``; in a source
checkout that was not installed it is the folder beside the package.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path


@cache
def resources_dir() -> Path:
    try:
        return Path(str(resources.files("storystudio.resources")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "resources"


def resource(*parts: str) -> Path:
    return resources_dir().joinpath(*parts)
