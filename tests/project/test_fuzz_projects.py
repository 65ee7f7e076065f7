"""The loader against 1,437 damaged copies of a real project: each one is refused with the loader's own
error in one short sentence, or loads, saves and loads back equal. Nothing else may come out of it.

The mutants (tests/project_mutants.py) are seeded; tests/export/test_fuzz_exports.py renders and exports
the ones that load.
"""

from __future__ import annotations

from collections import Counter

from project_mutants import changed_by_schema, loaded_mutants
from storystudio.project.model import Project
from storystudio.project.fileio import FORMAT_NAME, SCHEMA_VERSION, ProjectFileError, load_project, save_project


#: Damage that no file may have: nesting past limits.MAX_JSON_DEPTH, a number JSON cannot hold (1e999), a
#: file cut short (its zip directory is at the end), and these member changes.
MUST_BE_REFUSED = {"deep", "non-finite", "truncated"}
REFUSED_MEMBER_CHANGES = {"no project.json", "an image missing", "a member outside", "an absolute member",
                          "an image that is text", "an image cut short", "an empty project.json",
                          "project.json in UTF-16", "project.json a number", "project.json binary", "a huge picture"}


def test_every_damaged_copy_is_refused_plainly_or_loads_and_saves_equal(tmp_path):
    found = loaded_mutants()
    assert len(found) >= 1000
    outcomes: Counter[tuple[str, str]] = Counter()
    wrong: list[str] = []
    for mutant, result in found:
        if isinstance(result, ProjectFileError):
            message = str(result)
            if "\n" in message or len(message) > 400 or not message.endswith("."):
                wrong.append(f"{mutant.kind} ({mutant.what}): a message that is not one short sentence: {message!r}")
            outcomes[(mutant.kind, "refused")] += 1
            continue
        if mutant.kind in MUST_BE_REFUSED or mutant.what in REFUSED_MEMBER_CHANGES:
            wrong.append(f"{mutant.kind} ({mutant.what}): {'loaded' if isinstance(result, Project) else 'raised'}, "
                         "but a file with this damage must be refused")
            continue
        if isinstance(result, Exception):
            wrong.append(f"{mutant.kind} ({mutant.what}): {type(result).__name__}: {str(result)[:200]}")
            continue
        try:
            save_project(result, tmp_path / "saved.storystudio")
            again = load_project(tmp_path / "saved.storystudio")
            assert again.to_dict() == result.to_dict() and again.images == result.images
            doc = {"format": FORMAT_NAME, "schema": SCHEMA_VERSION, **result.to_dict()}
            assert not changed_by_schema(doc), changed_by_schema(doc)[:3]  # each value of the schema's type
        except Exception as exc:  # noqa: BLE001 - what this test is about
            wrong.append(f"{mutant.kind} ({mutant.what}): loaded, but then: {type(exc).__name__}: "
                         f"{str(exc)[:200]}")
            continue
        outcomes[(mutant.kind, "loaded")] += 1
    summary = ", ".join(f"{kind} {result} {n}" for (kind, result), n in sorted(outcomes.items()))
    print(f"{len(found)} mutants: {summary}")
    assert not wrong, f"{len(wrong)} of {len(found)} mutants went wrong:\n" + "\n".join(wrong[:40])
    loaded = sum(n for (_, result), n in outcomes.items() if result == "loaded")
    assert loaded > 100 and sum(outcomes.values()) - loaded > 500  # both outcomes are well exercised
