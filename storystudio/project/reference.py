"""Reference pages written from the code itself, so that they cannot drift from it: the limits
(docs/LIMITS.md, from ``limits.py``) and the project file format (docs/FILE-FORMAT.md and
docs/project.schema.json, from ``schema.py``). ``tools/write_reference_docs.py`` writes them; a test
checks they are current.
"""

from __future__ import annotations

import ast
import inspect
import json
import re

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
- **project files** (`project/fileio.py`, against the schema in `project/schema.py`, see
  FILE-FORMAT.md): the zip members and their total, `project.json`'s size and nesting, every number and
  text, the pictures' sides;
- **generation settings** (`engine/story/settings.py`, `GenerationSettings.validate` and
  `check_panel_sizes`): steps, size (per model family: SD1.5 at most
  {limits.max_picture_side("sd15")}, SD2.x {limits.max_picture_side("sd2")}, SDXL
  {limits.max_picture_side("sdxl")} pixels a side), guidance, seed, reference images, batch size;
- **the command line** (`storystudio/cli/`): every number option, before the model loads (the model's
  family is read from its files without loading it);
- **messages** quote at most {limits.MAX_QUOTE_CHARS} characters of a bad value.
"""


# ---- the file format, from the schema ----------------------------------------------------------------------

def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1000 else f"{value:g}"


def _kind(prop: dict) -> str:
    """A JSON schema property as words: "number from 0 to 1", "list of [Panel](#panel), at most 999"."""
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in prop:
        kinds = [_kind(p) for p in prop["anyOf"]]
        return " or ".join(k for k in kinds if k != "null") + (" or null" if "null" in kinds else "")
    if "const" in prop:
        return f'`"{prop["const"]}"`'
    if "enum" in prop:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    kind = prop.get("type", "any")
    words = {"string": "text", "integer": "whole number", "number": "number", "boolean": "true or false",
             "null": "null", "object": "group of named values", "array": "list"}.get(kind, kind)
    rules = []
    if "minimum" in prop and "maximum" in prop:
        rules.append(f"from {_number(prop['minimum'])} to {_number(prop['maximum'])}")
    elif "exclusiveMinimum" in prop and "maximum" in prop:
        rules.append(f"more than {_number(prop['exclusiveMinimum'])}, at most {_number(prop['maximum'])}")
    elif "minimum" in prop:
        rules.append(f"at least {_number(prop['minimum'])}")
    if "multipleOf" in prop:
        rules.append(f"a multiple of {_number(prop['multipleOf'])}")
    if "maxLength" in prop:
        rules.append(f"at most {prop['maxLength']:,} characters")
    if "pattern" in prop:
        rules.append(f"matching `{prop['pattern']}`")
    if kind == "array" and "prefixItems" in prop:
        words = "[" + ", ".join(_kind(p) for p in prop["prefixItems"]) + "]"
    elif kind == "array" and "items" in prop:
        words = f"list of {_kind(prop['items'])}"
        if "minItems" in prop:
            rules.append(f"at least {prop['minItems']}")
        if "maxItems" in prop:
            rules.append(f"at most {prop['maxItems']:,}")
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        words = f"group of {_kind(prop['additionalProperties'])} by name"
        if "maxProperties" in prop:
            rules.append(f"at most {prop['maxProperties']:,}")
    return words + (f" ({', '.join(rules)})" if rules else "")


def _sections(full: dict) -> list[str]:
    """The parts of the document in the order a reader meets them: project.json, then each part where its
    owner first names it (a part added to schema.py gets its section without being listed here)."""
    order = ["ProjectDocument"]
    for name in order:
        definition = full if name == "ProjectDocument" else full["$defs"][name]
        for found in re.findall(r'"\$ref": "#/\$defs/(\w+)"', json.dumps(definition["properties"])):
            if found not in order:
                order.append(found)
    missing = sorted(set(full["$defs"]) - set(order))
    return order + missing


def json_schema() -> dict:
    """The JSON schema of project.json (also in docs/project.schema.json, for other tools)."""
    from .schema import ProjectDocument

    return ProjectDocument.model_json_schema(by_alias=True)


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def file_format_markdown() -> str:
    from . import schema
    from .fileio import FORMAT_NAME, SCHEMA_VERSION

    full = json_schema()
    definitions = {"ProjectDocument": full, **full["$defs"]}
    sections = []
    for name in _sections(full):
        definition = definitions[name]
        required = set(definition.get("required", ()))
        rows = []
        for field, prop in definition["properties"].items():
            if field in required:
                default = "required"
            elif "default" in prop:
                default = f"`{json.dumps(prop['default'])}`"
            else:
                default = {"array": "`[]`", "object": "`{}`"}.get(prop.get("type", ""), "all its defaults")
            kind = _kind(prop).replace("|", "\\|")  # a pattern's | would end the table's cell
            rows.append(f"| `{field}` | {kind} | {default} | {prop.get('description', '')} |")
        title = "project.json" if name == "ProjectDocument" else name
        doc = getattr(schema, name).__doc__ or ""
        summary = " ".join(doc.split()).replace("``", "`")
        sections.append(f"### {title}\n\n{summary}\n\n| field | kind | default | meaning |\n|---|---|---|---|\n"
                        + "\n".join(rows))
    body = "\n\n".join(sections)
    return f"""# The `.storystudio` file format

A project file is a zip archive:

```
project.json          the project, described below ({{"format": "{FORMAT_NAME}", "schema": {SCHEMA_VERSION}, ...}})
images/<name>.png     every picture the project uses (stored, not compressed)
```

This page is written from the schema that the loader checks every file against
(`storystudio/project/schema.py`, with `python tools/write_reference_docs.py`; a test fails when it
is not current), and `docs/project.schema.json` is the same as a JSON schema for other tools. Numbers
must be finite and of the kind stated (`5`, not `"5"`; `true`, not `1`); names the schema does not know
are ignored; a value outside its range is refused with one sentence naming it ("the size of panel 3
must be a multiple of 64, not 100"). Files of an older schema number are upgraded first (`MIGRATIONS`
in `fileio.py`); files of a newer one are refused. The archive is read into memory, never extracted:
member names must be `project.json` or `images/<name>.png`, sizes are capped (see LIMITS.md), and every
picture the project names must be there, a PNG of at most {limits.MAX_IMAGE_SIDE} pixels a side (the
pictures that are shown are decoded through).

Beyond the schema, the project keeps a few rules that need several fields at once: ids of characters
and of panels are unique; `chosen` and `chosen_references` point at versions that exist; a balloon that
shows its panel's words (`source`) names its panel; a camera box lies inside its picture; and no page
is drawn larger than {limits.MAX_RASTER_SIDE:,} pixels at the layout's resolution.

A prompt may still tag a character who is not in the cast (the app keeps such a prompt when a character
is deleted); the file loads, and rendering names the panel to fix.

{body}
"""
