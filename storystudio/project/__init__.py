"""Story data (cast and panels) and the plain-text story script format."""

from .script import ScriptError, ScriptProblem, format_script, load_script, parse_script
from .story import Character, Panel, Story

__all__ = [
    "Character",
    "Panel",
    "ScriptError",
    "ScriptProblem",
    "Story",
    "format_script",
    "load_script",
    "parse_script",
]
