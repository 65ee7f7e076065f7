"""Story data (cast and panels), the plain-text story script format, and the project document and file."""

from .fileio import (
    MIGRATIONS,
    SCHEMA_VERSION,
    AutosaveInfo,
    ProjectFileError,
    RecentFiles,
    autosave_dir,
    data_dir,
    discard_autosave,
    load_project,
    pending_autosaves,
    save_project,
    write_autosave,
)
from .model import (
    ImageVersion,
    Project,
    ProjectCharacter,
    ProjectPanel,
    ProjectSettings,
)
from .script import ScriptError, ScriptProblem, format_script, load_script, parse_script
from .story import Character, Panel, Story

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AutosaveInfo",
    "Character",
    "ImageVersion",
    "Panel",
    "Project",
    "ProjectCharacter",
    "ProjectFileError",
    "ProjectPanel",
    "ProjectSettings",
    "RecentFiles",
    "ScriptError",
    "ScriptProblem",
    "Story",
    "autosave_dir",
    "data_dir",
    "discard_autosave",
    "format_script",
    "load_project",
    "load_script",
    "parse_script",
    "pending_autosaves",
    "save_project",
    "write_autosave",
]
