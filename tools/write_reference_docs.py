"""Write the reference pages that are made from the code: docs/LIMITS.md, docs/FILE-FORMAT.md and
docs/project.schema.json.

    python tools/write_reference_docs.py

tests/project/test_reference_docs.py fails when a page is not what this writes.
"""

from __future__ import annotations

from pathlib import Path

from storystudio.project.reference import file_format_markdown, json_schema_text, limits_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = {"LIMITS.md": limits_markdown, "FILE-FORMAT.md": file_format_markdown, "project.schema.json": json_schema_text}

if __name__ == "__main__":
    for name, make in PAGES.items():
        (DOCS / name).write_text(make(), encoding="utf-8")
        print(f"wrote {DOCS / name}")
