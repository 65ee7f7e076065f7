"""Damaged copies of a real project file, made the ways a disk, a download, an editor or an attacker
damages one: byte flips, truncation, zip members removed, added, renamed or lying about themselves,
a value of the wrong JSON type at every path of project.json, huge, tiny and non-finite numbers, deep
nesting, hostile texts, and values at the edges of what the schema allows.

Pure (no torch, no Qt): tests/project checks that each one loads or is refused in one sentence, and
tests/export renders and exports the ones that load. Seeded: the same seed makes the same mutants.
"""

from __future__ import annotations

import io
import json
import random
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from helpers import COLOURS, flat_png
from storystudio.project.animatic import CameraMove, Cut, Shot
from storystudio.project.layout import Balloon, auto_layout
from storystudio.project.model import Project
from storystudio.project.pose import WHOLE_PANEL, PanelPose, Skeleton, render_skeletons
from storystudio.project.regions import Region


@dataclass
class Mutant:
    kind: str  # which family of damage
    what: str  # this one, in words (for the failure report)
    data: bytes  # the damaged .storystudio file


def _pose_picture() -> bytes:
    out = io.BytesIO()
    render_skeletons((32, 48), [(Skeleton.standing(), WHOLE_PANEL)]).save(out, "PNG")
    return out.getvalue()


def real_project() -> Project:
    """The example story as a user leaves it: pictures, references, a photo, pages with lettering, an
    animatic with camera moves, a crossfade and a generated clip, panels with their own sizes and poses."""
    project = Project.example()
    for number, (panel, colour) in enumerate(zip(project.panels, COLOURS)):
        project.add_version(panel.id, flat_png(colour, (24, 24)), {"seed": number, "steps": 2})
        if number % 3 == 0:
            project.add_version(panel.id, flat_png(colour[::-1], (24, 24)), {"seed": number + 100})
    for character in project.characters:
        for index in range(2):
            project.add_reference(character.id, flat_png(COLOURS[index], (16, 16)), {"seed": index})
        character.chosen_references = [1, 0]
    project.characters[0].photo = project.add_image(flat_png((1, 2, 3), (20, 30)))
    project.panels[1].dialogue = "Grandpa, what is that light?\nOnly the old lighthouse."
    project.panels[2].size = (1024, 576)
    project.characters[0].photo_strength = 0.75
    shared = next((p for p in project.panels if len(p.characters()) >= 2), project.panels[0])
    shared.regions = [Region(name, (0.1 * i, 0.05, 0.1 * i + 0.6, 0.95))
                      for i, name in enumerate(shared.characters() or ["Nobody"])]
    project.panels[3].duration = 2.5
    # a drawn pose in its own box and an imported OpenPose picture of the whole panel
    tagged = project.panels[1].characters()[0]
    project.panels[1].poses = [
        PanelPose(tagged, Skeleton.standing().without(16), box=(0.1, 0.0, 0.6, 1.0)),
        PanelPose("", image=project.add_image(_pose_picture())),
    ]
    project.layout = auto_layout(project.panels, size="us-comic")
    project.layout.pages[0].balloons.append(Balloon("sfx", 40, 60, 120, 50, text="WHOOSH"))
    first, second = project.panels[0].id, project.panels[1].id
    project.animatic.shots[first] = Shot(CameraMove.preset("zoom-in"))
    project.animatic.cuts[first] = Cut("generated", 1.0, clip=[project.add_image(flat_png((9, 9, 9), (16, 16)))
                                                                for _ in range(2)],
                                       clip_between=(first, second), clip_parameters={"frames": 2})
    project.animatic.cuts[second] = Cut("crossfade", 0.75)
    project.resolve_words()
    return project


def _changed(written: Any, checked: Any, here: str = "") -> list[str]:
    """Places where the schema's reading of a value differs from the value written."""
    if isinstance(written, dict) and isinstance(checked, dict):
        return [m for key in written.keys() & checked.keys() for m in _changed(written[key], checked[key], f"{here}/{key}")]
    if isinstance(written, list) and isinstance(checked, list) and len(written) == len(checked):
        return [m for i, (a, b) in enumerate(zip(written, checked)) for m in _changed(a, b, f"{here}/{i}")]
    same = written == checked and isinstance(written, (bool, str)) == isinstance(checked, (bool, str))
    return [] if same else [f"{here}: {written!r} -> {checked!r}"]


def changed_by_schema(doc: dict[str, Any]) -> list[str]:
    """Where the schema reads a (valid) project document differently from what it holds: a value of another
    JSON type than the schema's ("5" for 5) that a lax check would have let through."""
    from storystudio.project import schema

    return _changed(doc, schema.validated(doc).model_dump(mode="json", by_alias=True))


def archive(members: dict[str, bytes], comment: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        out.comment = comment
        for name, data in members.items():
            out.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if name.endswith(".json") else zipfile.ZIP_STORED)
    return buffer.getvalue()


def members_of(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as handle:
        return {info.filename: handle.read(info) for info in handle.infolist()}


def paths(value: Any, here: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """Every path in a JSON document (containers and leaves), with its value."""
    yield here, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*here, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*here, index))


def replaced(doc: Any, path: tuple, value: Any) -> Any:
    """A copy of ``doc`` with ``path`` set to ``value`` (the root when the path is empty)."""
    if not path:
        return value
    out = json.loads(json.dumps(doc))
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


def _name(path: tuple) -> str:
    return "/".join(str(p) for p in path) or "(root)"


WRONG_TYPES = [None, True, 0, -1, 1.5, "x", "", [], [1, 2], {}, {"a": 1}]
NUMBERS = [10**40, 2**63, -(2**63), -1e308, 1e308, 0, -1, 0.5, 1e-12, 64, 2048, 14400, -14400, "1" + "0" * 5000]
TEXTS = ["", " ", "x" * 20_000, "\x00\x01\x02", "../../etc/passwd", "[NC] fog", "[Zed] dances", "[[[[[",
         "\u202e\u0301\U0001f600", "a" * 65, "dialogue:99999", "C:\\\\x", "/abs/path.png"]


def mutants(seed: int = 1234, size: int = 1200) -> list[Mutant]:
    """At least ``size`` mutants of :func:`real_project`'s file: every kind, and byte flips (250 or more)."""
    rng = random.Random(seed)
    original = _saved(real_project())
    members = members_of(original)
    doc = json.loads(members["project.json"])
    all_paths = list(paths(doc))
    leaves = [(p, v) for p, v in all_paths if not isinstance(v, (dict, list))]
    numbers = [(p, v) for p, v in leaves if isinstance(v, (int, float)) and not isinstance(v, bool)]
    texts = [(p, v) for p, v in leaves if isinstance(v, str)]
    out: list[Mutant] = []

    def with_doc(kind: str, what: str, new_doc: Any, raw: str | None = None) -> None:
        text = raw if raw is not None else json.dumps(new_doc, ensure_ascii=False)
        out.append(Mutant(kind, what, archive({**members, "project.json": text.encode("utf-8")})))

    # a wrong JSON type at every path (the path's own kind left out)
    for path, value in all_paths:
        choices = [w for w in WRONG_TYPES if type(w) is not type(value)]
        wrong = rng.choice(choices)
        with_doc("wrong type", f"{_name(path)} = {json.dumps(wrong)[:20]}", replaced(doc, path, wrong))
    # huge, tiny, negative and edge numbers at numeric paths; non-finite ones as JSON text cannot say them
    for path, _ in rng.sample(numbers, min(len(numbers), 40)):
        for number in rng.sample(NUMBERS, 3):
            if isinstance(number, str):  # a number of 5000 digits: only JSON text can hold it
                text = json.dumps(replaced(doc, path, "__HUGE__")).replace('"__HUGE__"', number)
                with_doc("number", f"{_name(path)} = 10^5000", None, raw=text)
            else:
                with_doc("number", f"{_name(path)} = {str(number)[:20]}", replaced(doc, path, number))
        marker = "__NONFINITE__"
        text = json.dumps(replaced(doc, path, marker)).replace(f'"{marker}"', rng.choice(["1e999", "-1e999"]))
        with_doc("non-finite", f"{_name(path)} = 1e999", None, raw=text)
    # hostile texts at text paths
    for path, _ in rng.sample(texts, min(len(texts), 40)):
        for hostile in rng.sample(TEXTS, 2):
            with_doc("text", f"{_name(path)} = {hostile[:12]!r}", replaced(doc, path, hostile))
    # deep nesting, at the root of a field and inside free-form parameters
    for depth in (40, 1000, 100_000):
        for path in (("settings", "model"), ("panels", 0, "versions", 0, "parameters", "x"), ("layout", "pages")):
            nested = "[" * depth + "]" * depth
            marker = "__DEEP__"
            target = replaced(doc, path, marker)
            with_doc("deep", f"{_name(path)} nested {depth} deep", None,
                     raw=json.dumps(target).replace(f'"{marker}"', nested))
    # member changes
    names = list(members)
    images = [n for n in names if n.startswith("images/")]
    changes = {
        "no project.json": {k: v for k, v in members.items() if k != "project.json"},
        "an image missing": {k: v for k, v in members.items() if k != images[0]},
        "an unexpected member": {**members, "notes.txt": b"hello"},
        "a member outside": {**members, "../evil.png": members[images[0]]},
        "an absolute member": {**members, "/etc/x.png": members[images[0]]},
        "a folder member": {**members, "images/sub/": b""},
        "an image that is text": {**members, images[1]: b"not a picture"},
        "an image cut short": {**members, images[1]: members[images[1]][:40]},
        "an empty project.json": {**members, "project.json": b""},
        "project.json in UTF-16": {**members, "project.json": members["project.json"].decode().encode("utf-16")},
        "project.json a number": {**members, "project.json": b"12"},
        "project.json binary": {**members, "project.json": bytes(range(256)) * 4},
        "a huge picture": {**members, images[2]: flat_png((5, 5, 5), (4100, 8))},
        "an extra image": {**members, "images/extra.png": members[images[0]]},
    }
    for what, changed in changes.items():
        out.append(Mutant("member", what, archive(changed)))
    out.append(Mutant("member", "a 100 kB zip comment", archive(members, comment=b"c" * 65_000)))
    out.append(Mutant("member", "the same member twice", _twice(members)))
    # lying zip headers: sizes, checksums, names and methods in the central directory or local headers
    for field, offset, fmt in (("crc", 16, "<I"), ("compressed size", 20, "<I"), ("size", 24, "<I"),
                               ("method", 10, "<H"), ("name length", 28, "<H"), ("extra length", 30, "<H")):
        for target in ("project.json", images[0]):
            for lie in (0, 1, 0xFFFF, 0x7FFFFFFF if fmt == "<I" else 0xFF):
                out.append(Mutant("lying header", f"{target}: central {field} = {lie}",
                                  _lie(original, target, offset, fmt, lie)))
    for field, offset, fmt in (("crc", 14, "<I"), ("compressed size", 18, "<I"), ("size", 22, "<I"),
                               ("method", 8, "<H"), ("name length", 26, "<H")):
        for target in ("project.json", images[0]):
            for lie in (0, 0xFFFF if fmt == "<H" else 0x7FFFFFFF):
                out.append(Mutant("lying header", f"{target}: local {field} = {lie}",
                                  _lie(original, target, offset, fmt, lie, local=True)))
    # truncation and byte flips (of the whole file: the central directory, the JSON, the pictures)
    for _ in range(40):
        cut = rng.randrange(len(original))
        out.append(Mutant("truncated", f"first {cut} bytes", original[:cut]))
    for _ in range(max(250, size - len(out))):
        damaged = bytearray(original)
        flips = rng.randint(1, 4)
        where = [rng.randrange(len(damaged)) for _ in range(flips)]
        for at in where:
            damaged[at] ^= 1 << rng.randrange(8)
        out.append(Mutant("byte flips", f"bits flipped at {where}", bytes(damaged)))
    return out


def _saved(project: Project) -> bytes:
    import tempfile

    from storystudio.project.fileio import save_project

    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "real.storystudio"
        save_project(project, target)
        return target.read_bytes()


def _twice(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        for name, data in members.items():
            out.writestr(name, data)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is asked to write
            out.writestr("project.json", members["project.json"])
    return buffer.getvalue()


def _lie(data: bytes, member: str, offset: int, fmt: str, value: int, local: bool = False) -> bytes:
    """``data`` with one field of ``member``'s central directory entry (or, ``local``, of its local file
    header) set to ``value``."""
    out = bytearray(data)
    signature, name_at, length_at = (b"PK\x03\x04", 30, 26) if local else (b"PK\x01\x02", 46, 28)
    at = out.find(signature)
    while at != -1:
        name_length = struct.unpack_from("<H", out, at + length_at)[0]
        name = bytes(out[at + name_at:at + name_at + name_length]).decode("utf-8", "replace")
        if name == member:
            struct.pack_into(fmt, out, at + offset, value)
            return bytes(out)
        at = out.find(signature, at + 4)
    raise ValueError(f"no {'local header' if local else 'central directory entry'} for {member}")


@cache
def loaded_mutants() -> tuple[tuple[Mutant, Project | Exception], ...]:
    """Every mutant with what loading it gave: a Project, or the exception (computed once a session)."""
    import tempfile

    from storystudio.project.fileio import load_project

    out = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mutant.storystudio"
        for mutant in mutants():
            path.write_bytes(mutant.data)
            try:
                out.append((mutant, load_project(path)))
            except Exception as exc:  # noqa: BLE001 - the tests sort the outcomes
                out.append((mutant, exc))
    return tuple(out)
