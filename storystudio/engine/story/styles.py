"""Style templates: a positive template around ``{prompt}`` and a negative prompt.

The catalogue is data (``resources/styles.json``); nine styles after the
StoryDiffusion demo's list, worded for StoryStudio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

from ...project.limits import quote
from ...resources_path import resource


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str
    negative: str

    def apply(self, prompt: str, negative: str = "") -> tuple[str, str]:
        """The styled prompt and the negative prompt (the style's plus the user's)."""
        neg = ", ".join(p for p in (negative.strip(), self.negative) if p)
        return self.prompt.replace("{prompt}", prompt.strip()), neg


@cache
def _catalog() -> tuple[dict[str, Style], str]:
    data = json.loads(resource("styles.json").read_text(encoding="utf-8"))
    styles = {s["name"]: Style(s["name"], s["prompt"], s["negative"]) for s in data["styles"]}
    return styles, data["default"]


def style_names() -> list[str]:
    return list(_catalog()[0])


def default_style() -> str:
    return _catalog()[1]


def get_style(name: str | None) -> Style:
    """Look a style up by name, forgiving case and spacing; a plain error names the choices."""
    styles, default = _catalog()
    if not name:
        return styles[default]
    wanted = "".join(name.lower().split())
    for key, style in styles.items():
        if "".join(key.lower().split()) == wanted:
            return style
    raise ValueError(f'There is no style called {quote(name)}. Choose one of: {", ".join(styles)}.')
