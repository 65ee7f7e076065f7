"""The reference pages made from the code are current, and every limit is named in them."""

from __future__ import annotations

from pathlib import Path

from storystudio.project import limits
from storystudio.project.reference import limit_constants, limits_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_limits_page_is_current():
    assert (DOCS / "LIMITS.md").read_text(encoding="utf-8") == limits_markdown(), (
        "docs/LIMITS.md is out of date: run python tools/write_reference_docs.py")


def test_every_limit_has_a_reason_and_is_named():
    constants = limit_constants()
    names = {name for name, _, _ in constants}
    assert names == {name for name in vars(limits) if name.isupper()}
    assert all(reason for _, _, reason in constants)
    page = (DOCS / "LIMITS.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in page for name in names)


def test_file_format_pages_are_current():
    from storystudio.project.reference import file_format_markdown, json_schema_text

    assert (DOCS / "FILE-FORMAT.md").read_text(encoding="utf-8") == file_format_markdown(), (
        "docs/FILE-FORMAT.md is out of date: run python tools/write_reference_docs.py")
    assert (DOCS / "project.schema.json").read_text(encoding="utf-8") == json_schema_text()


def test_every_field_of_the_schema_is_described():
    from storystudio.project.reference import json_schema

    full = json_schema()
    page = (DOCS / "FILE-FORMAT.md").read_text(encoding="utf-8")
    for name, definition in {"project.json": full, **full["$defs"]}.items():
        section = page.split(f"### {name}\n", 1)[1].split("\n### ", 1)[0]  # IndexError: no section for it
        for field in definition["properties"]:
            assert f"| `{field}` |" in section, (name, field)
