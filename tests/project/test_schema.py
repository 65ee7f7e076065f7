"""The schema and the classes that write project.json stay in step: every name a project writes is a field
of the schema (a field added to ``to_dict`` but not to schema.py would be loaded unchecked), and the
schema's defaults are what ``from_dict`` gives a file that leaves them out."""

from __future__ import annotations

import json
from typing import Any

from project_mutants import changed_by_schema, real_project
from storystudio.project import schema
from storystudio.project.fileio import FORMAT_NAME, SCHEMA_VERSION
from storystudio.project.model import Project


def _document(project: Project) -> dict[str, Any]:
    return {"format": FORMAT_NAME, "schema": SCHEMA_VERSION, **project.to_dict()}


def _unchecked(written: Any, checked: Any, here: str = "") -> list[str]:
    """Names in ``written`` that the schema's dump of it does not have (so the schema does not know them)."""
    if isinstance(written, dict) and isinstance(checked, dict):
        out = [f"{here}/{key}" for key in written if key not in checked]
        for key in written.keys() & checked.keys():
            out += _unchecked(written[key], checked[key], f"{here}/{key}")
        return out
    if isinstance(written, list) and isinstance(checked, (list, tuple)):
        return [m for i, (a, b) in enumerate(zip(written, checked)) for m in _unchecked(a, b, f"{here}/{i}")]
    return []


def test_every_name_a_project_writes_is_in_the_schema():
    doc = _document(real_project())
    dumped = schema.validated(doc).model_dump(mode="json", by_alias=True)
    assert _unchecked(doc, dumped) == []
    # the check can see an unknown name (the schema ignores such names when it reads a file)
    doc["panels"][0]["pose"] = "sitting"
    assert _unchecked(doc, dumped) == ["/panels/0/pose"]


def test_the_schema_reads_what_a_project_writes_unchanged():
    assert changed_by_schema(json.loads(json.dumps(_document(real_project())))) == []


def test_defaults_of_the_schema_are_the_projects_own():
    """A file holding only the required names reads as the schema's defaults say."""
    bare = {"format": FORMAT_NAME, "schema": SCHEMA_VERSION, "id": "p1",
            "characters": [{"id": "c1", "name": "Mira", "description": "a girl"}],
            "panels": [{"id": "n1", "prompt": "[Mira] waves"}]}
    dumped = schema.validated(bare).model_dump(mode="json", by_alias=True)
    project = Project.from_dict(bare, {})
    written = _document(project)
    for key in ("settings", "layout", "animatic"):
        assert written[key] == dumped[key], key
    for key in ("caption", "dialogue", "variation", "versions", "chosen", "duration", "size", "regions"):
        assert written["panels"][0][key] == dumped["panels"][0][key], key
    for key in ("photo", "photo_strength", "locked", "references", "chosen_references"):
        assert written["characters"][0][key] == dumped["characters"][0][key], key
