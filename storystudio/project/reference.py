"""Reference pages written from the code itself, so that they cannot drift from it: the limits
(docs/LIMITS.md, from ``limits.py``). ``tools/write_reference_docs.py`` writes them; a test checks
they are current.
"""

from __future__ import annotations

import ast
import inspect

from . import limits


def _value(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_value(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and value >= 1024**2 and value % 1024**2 == 0:
        return f"{value // 1024**2:,} MiB" if value < 1024**3 else f"{value // 1024**3:,} GiB"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def limit_constants() -> list[tuple[str, object, str]]:
    """(name, value, reason) of every limit, in the order ``limits.py`` states them, with its ``#:`` comment."""
    source = inspect.getsource(limits)
    lines = source.splitlines()
    found = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
            continue
        name = node.targets[0].id
        if not name.isupper():
            continue
        comment: list[str] = []
        number = node.lineno - 2
        while number >= 0 and lines[number].startswith("#:"):
            comment.insert(0, lines[number][2:].strip())
            number -= 1
        if not comment:  # one comment may name a group of constants stated one after another
            previous = found[-1][2] if found else ""
            comment = [previous]
        found.append((name, getattr(limits, name), " ".join(comment)))
    return found


def limits_markdown() -> str:
    rows = "\n".join(f"| `{name}` | {_value(value)} | {reason} |" for name, value, reason in limit_constants())
    return f"""# Limits

Everything StoryStudio is given (a story script, a project file, a picture inside one, command-line
options, a model file) is checked against these limits before any work starts: a value past one is
refused in one plain sentence, so that bad or hostile input never exhausts the computer. Each limit is
one constant in `storystudio/project/limits.py`; this page is written from that file
(`python tools/write_reference_docs.py`), and a test fails when it is not current.

| limit | value | why |
|---|---|---|
{rows}

Where they are checked:

- **story scripts** (`project/script.py`): size, line length, panels, cast, name length; a script with
  many mistakes lists the first {limits.MAX_SCRIPT_PROBLEMS} and counts the rest;
- **project files** (`project/fileio.py`): the zip members and their total;
- **generation settings** (`engine/story/settings.py`, `GenerationSettings.validate` and
  `check_panel_sizes`): steps, size (per model family: SD1.5 at most
  {limits.max_picture_side("sd15")}, SD2.x {limits.max_picture_side("sd2")}, SDXL
  {limits.max_picture_side("sdxl")} pixels a side), guidance, seed, reference images, batch size;
- **the command line** (`storystudio/cli/`): every number option, before the model loads (the model's
  family is read from its files without loading it);
- **messages** quote at most {limits.MAX_QUOTE_CHARS} characters of a bad value.
"""
