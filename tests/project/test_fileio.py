"""Tests for the .storystudio file, autosaves and the recent files list."""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path

import platformdirs
import pytest
from PIL import Image

from storystudio.project.animatic import Animatic, CameraMove, Cut, Shot
from storystudio.project import (
    MIGRATIONS,
    SCHEMA_VERSION,
    AutosaveInfo,
    Project,
    ProjectFileError,
    RecentFiles,
    autosave_dir,
    discard_autosave,
    load_project,
    pending_autosaves,
    save_project,
    write_autosave,
)
from storystudio.project import limits
from storystudio.project.layout import auto_layout

OLD_TIME = "2001-02-03T04:05:06+00:00"


def png(color: tuple[int, int, int] = (10, 20, 30), size: tuple[int, int] = (4, 4)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def project() -> Project:
    """The example with pictures in every kind of place, and one image nobody uses."""
    project = Project.example()
    project.modified = OLD_TIME
    for number, panel in enumerate(project.panels[:3]):
        project.add_version(panel.id, png((number, 0, 0)), {"prompt": panel.prompt, "seed": number})
    project.add_version(project.panels[0].id, png((9, 9, 9)), {"seed": 99})
    project.panels[0].chosen = 0
    project.panels[1].dialogue = "Who is there?"
    project.panels[2].duration = 3.5
    project.panels[2].variation = 2
    mira, tobias = project.characters
    mira.photo = project.add_image(png((0, 200, 0)))
    mira.locked = True
    for shade in (1, 2, 3):
        project.add_reference(tobias.id, png((0, 0, shade)), {"seed": shade})
    tobias.chosen_references = [2, 0]
    project.settings.model = "org/model"
    project.settings.guidance = 6.5
    project.layout = auto_layout(project.panels[:4], size="manga-b5", direction="rtl")
    project.animatic = Animatic(fps=12, size="1080x1920", audio="/music/theme.ogg")
    project.animatic.shots[project.panels[0].id] = Shot(CameraMove.preset("zoom-in"), caption=False)
    clip = [project.add_image(png((9, 9, shade))) for shade in (1, 2, 3)]
    project.animatic.cuts[project.panels[0].id] = Cut("generated", 1.0, clip, (project.panels[0].id,
                                                                               project.panels[1].id), {"steps": 4})
    project.add_image(png((255, 255, 255)))  # unused
    return project


def corrupt_idat(data: bytes) -> bytes:
    damaged = bytearray(data)
    damaged[damaged.find(b"IDAT") + 6] ^= 0xFF
    return bytes(damaged)


def document(project: Project, schema: int = SCHEMA_VERSION) -> dict:
    return {"format": "storystudio-project", "schema": schema, **project.to_dict()}


def write_zip(path: Path, members: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return path


def members_of(project: Project, doc: dict | None = None) -> dict[str, bytes | str]:
    members: dict[str, bytes | str] = {"project.json": json.dumps(doc or document(project))}
    for name in project.referenced_images():
        members[f"images/{name}"] = project.images[name]
    return members


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
    }


# ---- saving and loading ------------------------------------------------------------


def test_round_trip(project, tmp_path):
    path = tmp_path / "story.storystudio"
    save_project(project, path)
    loaded = load_project(path)
    assert loaded.to_dict() == project.to_dict()
    assert set(loaded.images) == project.referenced_images()
    for name, data in loaded.images.items():
        assert data == project.images[name]
    assert loaded.panels[0].chosen_version.parameters == {"prompt": loaded.panels[0].prompt, "seed": 0}
    assert loaded.characters[1].chosen_references == [2, 0]
    assert loaded.layout == project.layout and loaded.animatic == project.animatic
    assert all(loaded.images[name] == project.images[name] for name in loaded.animatic.cuts[project.panels[0].id].clip)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["story.storystudio"]


def test_save_updates_modified_and_writes_only_used_images(project, tmp_path):
    path = tmp_path / "story.storystudio"
    unused = project.unused_images()
    assert len(unused) == 1
    save_project(project, path)
    assert project.modified != OLD_TIME
    with zipfile.ZipFile(path) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        doc = json.loads(archive.read("project.json"))
    assert doc["format"] == "storystudio-project" and doc["schema"] == SCHEMA_VERSION == 4
    assert doc["modified"] == project.modified
    assert set(infos) == {"project.json"} | {f"images/{n}" for n in project.referenced_images()}
    assert f"images/{unused[0]}" not in infos
    assert infos["project.json"].compress_type == zipfile.ZIP_DEFLATED
    assert all(i.compress_type == zipfile.ZIP_STORED for n, i in infos.items() if n.startswith("images/"))


def test_saving_again_replaces_the_file(project, tmp_path):
    path = tmp_path / "story.storystudio"
    save_project(project, path)
    project.title = "Second draft"
    save_project(project, path)
    assert load_project(path).title == "Second draft"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["story.storystudio"]


def test_failed_save_leaves_the_old_file(project, tmp_path, monkeypatch):
    path = tmp_path / "story.storystudio"
    save_project(project, path)
    before = path.read_bytes()
    stamp = project.modified
    project.title = "Never saved"
    original = zipfile.ZipFile.writestr
    calls = []

    def failing(self, *args, **kwargs):
        calls.append(args[0])
        if len(calls) > 1:
            raise RuntimeError("disk exploded")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing)
    with pytest.raises(RuntimeError):
        save_project(project, path)
    assert len(calls) == 2
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["story.storystudio"]
    assert project.modified == stamp


def test_save_refuses_a_project_with_a_missing_image(project, tmp_path):
    del project.images[project.panels[1].versions[0].image]
    with pytest.raises(ProjectFileError, match=r"cannot be saved: the image img-\w+\.png that panel 2 uses is missing"):
        save_project(project, tmp_path / "story.storystudio")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_duplicate_ids(project, tmp_path):
    project.panels[1].id = project.panels[0].id
    with pytest.raises(ProjectFileError, match="the project has two panels with the same id"):
        save_project(project, tmp_path / "story.storystudio")
    assert list(tmp_path.iterdir()) == []


def test_save_into_a_missing_folder_is_a_plain_error(project, tmp_path):
    with pytest.raises(ProjectFileError, match=r'^"story.storystudio" could not be saved \(.+\)\.$'):
        save_project(project, tmp_path / "no-such-folder" / "story.storystudio")


def test_schema_1_file_is_upgraded(project, tmp_path):
    doc = document(project, schema=1)
    doc.pop("layout")
    doc["pages"] = []
    for panel in doc["panels"]:
        prompt = panel.pop("prompt")
        panel["text"] = prompt if panel_has_tags(prompt) else f"[NC] {prompt}"
        for key in ("dialogue", "duration", "variation"):
            del panel[key]
    for character in doc["characters"]:
        del character["locked"]
    path = write_zip(tmp_path / "old.storystudio", members_of(project, doc))

    loaded = load_project(path)
    assert [p.prompt for p in loaded.panels] == [p.prompt for p in project.panels]
    assert loaded.panels[6].no_character
    assert all(p.dialogue == "" and p.duration is None and p.variation == 0 for p in loaded.panels)
    assert not any(c.locked for c in loaded.characters)
    assert loaded.panels[0].versions == project.panels[0].versions
    assert set(loaded.images) == project.referenced_images()
    assert set(MIGRATIONS) == set(range(1, SCHEMA_VERSION))


def test_schema_2_file_gets_an_empty_layout(project, tmp_path):
    doc = document(project, schema=2)
    doc.pop("layout")
    doc["pages"] = []
    loaded = load_project(write_zip(tmp_path / "v2.storystudio", members_of(project, doc)))
    assert loaded.layout.pages == [] and loaded.layout.size == "us-comic"
    assert [p.id for p in loaded.panels] == [p.id for p in project.panels]


def test_damaged_layout_is_refused_in_plain_words(project, tmp_path):
    doc = document(project)
    doc["layout"]["pages"][0]["frames"][0]["fit"] = "stretch"
    path = write_zip(tmp_path / "bad.storystudio", members_of(project, doc))
    with pytest.raises(ProjectFileError, match="the fit of frame 1 of page 1 must be one of 'cover' or 'contain'"):
        load_project(path)


def test_panel_sizes_are_kept_and_older_files_have_none(project, tmp_path):
    project.panels[1].size = (512, 1024)
    path = tmp_path / "sized.storystudio"
    save_project(project, path)
    with zipfile.ZipFile(path) as archive:
        doc = json.loads(archive.read("project.json"))
    assert doc["panels"][1]["size"] == [512, 1024] and doc["panels"][0]["size"] is None
    loaded = load_project(path)
    assert loaded.panels[1].size == (512, 1024) and loaded.panels[0].size is None
    assert loaded.to_story().panels[1].size == (512, 1024)

    older = document(project)  # written before panels had their own size: same schema, no key
    for panel in older["panels"]:
        del panel["size"]
    loaded = load_project(write_zip(tmp_path / "older.storystudio", members_of(project, older)))
    assert all(p.size is None for p in loaded.panels)
    assert loaded.to_dict()["panels"][1]["size"] is None


def test_frame_of_a_deleted_panel_loads_as_empty(project, tmp_path):
    doc = document(project)
    doc["layout"]["pages"][0]["frames"][0]["panel"] = "gone"
    loaded = load_project(write_zip(tmp_path / "gone.storystudio", members_of(project, doc)))
    assert loaded.layout.pages[0].frames[0].panel == "gone"  # kept; the renderer draws an empty frame


def panel_has_tags(prompt: str) -> bool:
    return "[" in prompt


def test_newer_schema_is_refused(project, tmp_path):
    path = write_zip(tmp_path / "new.storystudio", members_of(project, document(project, schema=7)))
    with pytest.raises(ProjectFileError) as info:
        load_project(path)
    assert str(info.value) == (
        '"new.storystudio" was made by a newer StoryStudio (project format 7); this version reads up to '
        "format 4. Update StoryStudio to open it."
    )


def _edit(change):
    """A bad-file case: the project's document changed by ``change``."""

    def build(project: Project) -> dict[str, bytes | str]:
        doc = document(project)
        change(doc)
        return members_of(project, doc)

    return build


def _members(change):
    """A bad-file case: the archive members changed by ``change``."""

    def build(project: Project) -> dict[str, bytes | str]:
        members = members_of(project)
        change(members, project)
        return members

    return build


def _set(mapping, key, value):
    mapping[key] = value


BAD_FILES = {
    "not a zip": (lambda project: None, r"is not a StoryStudio project \(it is not a zip archive\)\.$"),
    "no project.json": (
        _members(lambda m, p: m.pop("project.json")),
        r"is not a StoryStudio project \(it has no project\.json\)\.$",
    ),
    "bad json": (
        _members(lambda m, p: _set(m, "project.json", '{"format": "storystudio-project", "schema": 2,')),
        r"is damaged: its project\.json is not readable JSON text\.$",
    ),
    "not a number": (
        _members(lambda m, p: _set(m, "project.json", json.dumps(document(p)).replace("6.5", "NaN"))),
        r"is damaged: its project\.json is not readable JSON text\.$",
    ),
    "other format": (
        _edit(lambda d: _set(d, "format", "something-else")),
        r"is not a StoryStudio project \(its project\.json describes something else\)\.$",
    ),
    "schema text": (_edit(lambda d: _set(d, "schema", "2")), r'project format number \("2"\) is not valid\.$'),
    "steps text": (
        _edit(lambda d: _set(d["settings"], "steps", "ten")),
        r'is damaged: the steps of the settings should be a whole number, not "ten"\.$',
    ),
    "seed bool": (
        _edit(lambda d: _set(d["settings"], "seed", True)),
        r"the seed of the settings should be a whole number, not true\.$",
    ),
    "freeu number": (
        _edit(lambda d: _set(d["settings"], "freeu", 1)),
        r"the freeu of the settings should be true or false, not 1\.$",
    ),
    "zero width": (
        _edit(lambda d: _set(d["settings"], "width", 0)),
        r"the width of the settings must be at least 64, not 0\.$",
    ),
    "characters not a list": (
        _edit(lambda d: _set(d, "characters", {})),
        r"the characters of the project should be a list\.$",
    ),
    "no prompt": (_edit(lambda d: d["panels"][2].pop("prompt")), r"is damaged: panel 3 has no prompt\.$"),
    "duplicate panel ids": (
        _edit(lambda d: _set(d["panels"][3], "id", d["panels"][1]["id"])),
        r'is damaged: the project has two panels with the same id \("\w+"; panel 4 is the second\)\.$',
    ),
    "duplicate character ids": (
        _edit(lambda d: _set(d["characters"][1], "id", d["characters"][0]["id"])),
        r"is damaged: the project has two characters with the same id",
    ),
    "panel size text": (
        _edit(lambda d: _set(d["panels"][1], "size", "64x96")),
        r'is damaged: the size of panel 2 should be a width and a height in whole pixels, not "64x96"\.$',
    ),
    "panel size of three numbers": (
        _edit(lambda d: _set(d["panels"][1], "size", [64, 96, 2])),
        r"the size of panel 2 should be a width and a height in whole pixels\.$",
    ),
    "panel size in fractions": (
        _edit(lambda d: _set(d["panels"][1], "size", [64.5, 96])),
        r"the size of panel 2 should be a width and a height in whole pixels\.$",
    ),
    "panel size too small": (
        _edit(lambda d: _set(d["panels"][1], "size", [64, 0])),
        r"is damaged: the size of panel 2 must be at least 64, not 0\.$",
    ),
    "chosen out of range": (
        _edit(lambda d: _set(d["panels"][1], "chosen", 4)),
        r"is damaged: panel 2 picks picture version 5, but it has 1\.$",
    ),
    "chosen reference out of range": (
        _edit(lambda d: _set(d["characters"][1], "chosen_references", [0, 3])),
        r"character 2 picks reference 4, but it has 3\.$",
    ),
    "image name with a folder": (
        _edit(lambda d: _set(d["panels"][0]["versions"][0], "image", "../x.png")),
        r'the image of version 1 of panel 1 should be a plain picture file name \(like img-1\.png\), not "\.\./x\.png"\.$',
    ),
    "missing image": (
        _members(lambda m, p: m.pop(f"images/{p.panels[1].versions[0].image}")),
        r"is damaged: the image images/img-\w+\.png that panel 2 uses is missing\.$",
    ),
    "missing photo": (
        _members(lambda m, p: m.pop(f"images/{p.characters[0].photo}")),
        r"is damaged: the image images/img-\w+\.png that Mira's photo uses is missing\.$",
    ),
    "not png bytes": (
        _members(lambda m, p: _set(m, f"images/{p.characters[1].references[1].image}", b"GIF89a not a png")),
        r"the image images/img-\w+\.png that Tobias's reference 2 uses is not a PNG picture\.$",
    ),
    "broken png": (
        _members(lambda m, p: _set(m, f"images/{p.panels[2].versions[0].image}", png()[:8] + b"\0" * 40)),
        r"the image images/img-\w+\.png that panel 3 uses is not a readable PNG picture\.$",
    ),
    "png with a bad checksum": (  # opens fine; only a full verify notices
        _members(lambda m, p: _set(m, f"images/{p.panels[0].versions[1].image}", corrupt_idat(png()))),
        r"the image images/img-\w+\.png that panel 1 uses is not a readable PNG picture\.$",
    ),
    "parent folder member": (
        _members(lambda m, p: _set(m, "../evil.png", png())),
        r'was refused: it contains a file with an unsafe name \("\.\./evil\.png"\).*Nothing was extracted',
    ),
    "nested parent member": (
        _members(lambda m, p: _set(m, "images/../../evil.png", png())),
        r"unsafe name .*Nothing was extracted from it\.$",
    ),
    "absolute member": (
        _members(lambda m, p: _set(m, "/tmp/evil.png", png())),
        r'unsafe name \("/tmp/evil\.png"\).*Nothing was extracted from it\.$',
    ),
    "drive letter member": (_members(lambda m, p: _set(m, "C:/evil.png", png())), r"unsafe name"),
    "backslash member": (
        _members(lambda m, p: _set(m, "images\\..\\evil.png", png())),
        r'unsafe name \("images\\\.\.\\evil\.png"\).*Nothing was extracted from it\.$',
    ),
    "backslash image member": (
        _members(lambda m, p: _set(m, "images\\x.png", png())),
        r'unsafe name \("images\\x\.png"\)',
    ),
    "unexpected member": (
        _members(lambda m, p: _set(m, "script.py", "print('hi')")),
        r'is not a StoryStudio project: it contains an unexpected file "script\.py"\.$',
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_are_refused_plainly_and_nothing_is_written(case, project, tmp_path, monkeypatch):
    build, pattern = BAD_FILES[case]
    folder = tmp_path / "files"
    folder.mkdir()
    path = folder / "bad.storystudio"
    members = build(project)
    if members is None:
        path.write_bytes(b"This is a plain text file, not a project.\n")
    else:
        write_zip(path, members)
        with zipfile.ZipFile(path) as archive:  # the archive really holds the names the case is about
            assert [i.filename for i in archive.infolist()] == list(members)
    monkeypatch.chdir(folder)
    before = snapshot(tmp_path)

    with pytest.raises(ProjectFileError) as info:
        load_project(path)

    message = str(info.value)
    assert message.startswith('"bad.storystudio" ')
    assert message.endswith(".")
    assert "\n" not in message and "Traceback" not in message and "Error" not in message
    assert re.search(pattern, message), message
    assert snapshot(tmp_path) == before


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ProjectFileError, match=r'^"gone.storystudio" does not exist\.$'):
        load_project(tmp_path / "gone.storystudio")
    with pytest.raises(ProjectFileError, match=r"is a folder"):
        load_project(tmp_path)


def test_empty_file_is_not_a_zip(tmp_path):
    path = tmp_path / "empty.storystudio"
    path.write_bytes(b"")
    with pytest.raises(ProjectFileError, match=r"it is not a zip archive"):
        load_project(path)


def test_oversized_member_is_refused(project, tmp_path, monkeypatch):
    path = tmp_path / "story.storystudio"
    save_project(project, path)
    monkeypatch.setattr(limits, "MAX_MEMBER_BYTES", 1000)
    with pytest.raises(ProjectFileError, match=r"was refused: the file project\.json inside it would unpack to"):
        load_project(path)


def test_oversized_total_is_refused(project, tmp_path, monkeypatch):
    path = tmp_path / "story.storystudio"
    save_project(project, path)
    size = sum(info.file_size for info in zipfile.ZipFile(path).infolist())
    monkeypatch.setattr(limits, "MAX_TOTAL_BYTES", size - 1)
    with pytest.raises(ProjectFileError, match=r"was refused: its contents would unpack to more than"):
        load_project(path)
    monkeypatch.setattr(limits, "MAX_TOTAL_BYTES", size)
    assert load_project(path).title == project.title


def test_images_folder_entry_and_unused_images_are_accepted(project, tmp_path):
    members = members_of(project)
    members["images/"] = b""
    members[f"images/{project.unused_images()[0]}"] = b"not even a picture"
    loaded = load_project(write_zip(tmp_path / "story.storystudio", members))
    assert set(loaded.images) == project.referenced_images()


# ---- autosave ----------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "data"
    monkeypatch.setenv("STORYSTUDIO_DATA_DIR", str(root))
    return root


def test_autosave_dir_follows_the_environment(data_dir, monkeypatch):
    assert autosave_dir() == data_dir / "autosave"
    monkeypatch.delenv("STORYSTUDIO_DATA_DIR")
    assert autosave_dir() == platformdirs.user_data_path("StoryStudio", appauthor=False) / "autosave"


def note_of(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.comment.decode("utf-8"))


def test_autosave_of_an_unsaved_project(project, data_dir):
    assert pending_autosaves() == []
    path = write_autosave(project, None)
    assert path.parent == data_dir / "autosave"
    assert re.fullmatch(r"[0-9a-f]{16}\.storystudio", path.name)
    assert list(path.parent.iterdir()) == [path]  # one file: the note is the archive's comment
    info = note_of(path)
    assert info["note"] == "storystudio-autosave/1"
    assert info["source_path"] is None and info["title"] == "Lighthouse"
    assert project.modified == OLD_TIME  # an autosave is not a save

    pending = pending_autosaves()
    assert len(pending) == 1
    assert isinstance(pending[0], AutosaveInfo)
    assert pending[0].path == path
    assert pending[0].source_path is None
    assert pending[0].title == "Lighthouse"
    assert pending[0].saved_at == info["saved_at"]
    assert load_project(path).to_dict() == project.to_dict()


def test_autosave_keeps_one_file_per_project(project, data_dir):
    first = write_autosave(project, None)
    project.panels[0].caption = "Changed."
    assert write_autosave(project, None) == first
    project.title = "Renamed story"
    assert write_autosave(project, None) == first  # the name follows the project, not its title
    assert [(p.path, p.title) for p in pending_autosaves()] == [(first, "Renamed story")]
    assert [p.name for p in (data_dir / "autosave").iterdir()] == [first.name]
    assert load_project(first).panels[0].caption == "Changed."


def test_autosaves_of_different_sources_are_separate(project, data_dir, tmp_path):
    source_a, source_b = str(tmp_path / "a.storystudio"), str(tmp_path / "b.storystudio")
    path_a = write_autosave(project, source_a)
    path_b = write_autosave(project, source_b)
    unsaved = write_autosave(Project.example(), None)
    assert len({path_a, path_b, unsaved}) == 3
    pending = {p.path: p for p in pending_autosaves()}
    assert set(pending) == {path_a, path_b, unsaved}
    assert pending[path_a].source_path == source_a
    assert pending[path_b].source_path == source_b


def test_discard_autosave(project, data_dir):
    kept = write_autosave(Project.example(), None)
    path = write_autosave(project, None)
    discard_autosave(path)
    assert not path.exists()
    assert [p.path for p in pending_autosaves()] == [kept]
    discard_autosave(path)  # already gone: nothing to do
    discard_autosave(kept)
    assert pending_autosaves() == []
    assert list((data_dir / "autosave").iterdir()) == []


def test_what_a_crash_leaves_is_tidied_away(project, data_dir):
    """Orphans (an archive without its note, a note without its archive), damaged files and abandoned
    .part files go when the autosaves are listed; an earlier version's autosave (title in the name, note
    beside it) is still offered, once."""
    path = write_autosave(project, None)
    folder = path.parent
    (folder / "orphan.json").write_text('{"source_path": null, "title": "x", "saved_at": "now"}', encoding="utf-8")
    (folder / "broken.json").write_text("{not json", encoding="utf-8")
    (folder / "broken.storystudio").write_bytes(b"")
    (folder / "abandoned.storystudio.part").write_bytes(b"half an archive")
    noteless = folder / "0123456789abcdef.storystudio"
    save_project(Project.example(), noteless)
    legacy = folder / "old-story-fedcba9876543210.storystudio"
    save_project(Project.example(), legacy)
    legacy.with_suffix(".json").write_text(json.dumps({"source_path": None, "title": "Old story",
                                                       "saved_at": OLD_TIME}), encoding="utf-8")
    assert sorted((p.path.name, p.title) for p in pending_autosaves()) == sorted([(legacy.name, "Old story"),
                                                                                  (path.name, "Lighthouse")])
    assert sorted(p.name for p in folder.iterdir()) == sorted([path.name, legacy.name, legacy.stem + ".json"])


def test_a_part_file_being_written_is_not_tidied(project, data_dir):
    import fcntl

    path = write_autosave(project, None)
    part = path.with_name(path.name + ".part")
    with open(part, "wb") as handle:  # another StoryStudio writing it right now holds its lock
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(b"in progress")
        pending_autosaves()
        assert part.exists()
    pending_autosaves()
    assert not part.exists()


_AUTOSAVER = """
import sys, time
from storystudio.project.fileio import write_autosave
from storystudio.project.model import Project
project = Project.example()
project.id = sys.argv[2]  # the same project in every process
for number, panel in enumerate(project.panels):
    project.add_version(panel.id, bytes.fromhex(sys.argv[1]), {"n": number})
write_autosave(project, None)
print("ready", flush=True)
n = 0
while True:
    n += 1
    project.title = f"Version {n}"
    write_autosave(project, None)
"""


def test_killed_while_autosaving_leaves_one_readable_autosave(project, data_dir):
    """A process writing the same project's autosave over and over is killed at 20 moments; each time the
    recovery offer lists that project once, the autosave loads, and no .part file is left."""
    import random
    import signal
    import subprocess
    import sys
    import time

    picture = png(size=(256, 256)).hex()
    env = {**os.environ, "STORYSTUDIO_DATA_DIR": str(data_dir)}
    rng = random.Random(12)
    titles, halves = set(), 0
    for _ in range(20):
        writer = subprocess.Popen([sys.executable, "-c", _AUTOSAVER, picture, project.id], stdout=subprocess.PIPE,
                                  env=env, text=True)
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0, 0.05))
        writer.send_signal(signal.SIGKILL)
        writer.wait(30)
        halves += bool(list((data_dir / "autosave").glob("*.part")))
        pending = pending_autosaves()
        assert len(pending) == 1, pending
        assert load_project(pending[0].path).title == pending[0].title
        titles.add(pending[0].title)
        assert not list((data_dir / "autosave").glob("*.part"))
        assert sorted(p.name for p in (data_dir / "autosave").iterdir()) == [pending[0].path.name]
    assert len(titles) > 1 and halves > 0  # the kills landed at different moments, some in the middle of a write


# ---- recent files ----------------------------------------------------------------------------


def touch_files(folder: Path, count: int) -> list[Path]:
    paths = []
    for index in range(count):
        path = folder / f"p{index}.storystudio"
        path.write_bytes(b"x")
        paths.append(path)
    return paths


def test_recent_files_order_dedupe_and_limit(tmp_path):
    recent = RecentFiles(tmp_path / "recent.json", limit=3)
    a, b, c, d = touch_files(tmp_path, 4)
    for path in (a, b, c):
        recent.add(path)
    assert recent.items() == [c, b, a]
    recent.add(str(a))  # again: moves to the front, not listed twice
    assert recent.items() == [a, c, b]
    recent.add(d)
    assert recent.items() == [d, a, c]
    assert len(json.loads((tmp_path / "recent.json").read_text(encoding="utf-8"))) == 3
    # another instance reads the same list
    assert RecentFiles(tmp_path / "recent.json", limit=3).items() == [d, a, c]


def test_recent_files_skip_missing_and_clear(tmp_path):
    recent = RecentFiles(tmp_path / "recent.json")
    a, b = touch_files(tmp_path, 2)
    recent.add(a)
    recent.add(b)
    b.unlink()
    assert recent.items() == [a]
    b.write_bytes(b"back")  # a file that comes back (e.g. a drive plugged in again) shows again
    assert recent.items() == [b, a]
    recent.remove(b)
    assert recent.items() == [a]
    recent.clear()
    assert recent.items() == []
    recent.add(a)
    assert recent.items() == [a]


def test_recent_files_default_location_and_bad_file(data_dir, tmp_path):
    (a,) = touch_files(tmp_path, 1)
    recent = RecentFiles()
    assert recent.path == data_dir / "recent.json"
    recent.add(a)
    assert (data_dir / "recent.json").is_file()
    (data_dir / "recent.json").write_text("{broken", encoding="utf-8")
    assert RecentFiles().items() == []
    RecentFiles().add(a)
    assert RecentFiles().items() == [a]


def test_relative_recent_paths_are_stored_absolute(tmp_path, monkeypatch):
    (a,) = touch_files(tmp_path, 1)
    monkeypatch.chdir(tmp_path)
    recent = RecentFiles(tmp_path / "recent.json")
    recent.add(a.name)
    monkeypatch.chdir(os.path.dirname(tmp_path))
    assert recent.items() == [a]


# ---- schema 3 -> 4: the words live once, with the panel ------------------------------

OLD_FILE = Path(__file__).parent / "data" / "schema-3.storystudio"


def test_schema_3_file_keeps_what_every_place_showed(tmp_path):
    """``data/schema-3.storystudio`` was saved by StoryStudio at commit acb540b (schema 3): the example
    laid out with dialogue on panels 1 and 3, then panel 2's caption box edited on the page, panel 4's
    caption edited in the Panel tab, a sound effect added in panel 3's frame and a caption added with
    no frame selected."""
    with zipfile.ZipFile(OLD_FILE) as archive:
        old = json.loads(archive.read("project.json"))
    assert old["schema"] == 3
    printed = [b["text"] for b in old["layout"]["pages"][0]["balloons"]]

    project = load_project(OLD_FILE)
    page = project.layout.pages[0]
    # every balloon still prints what it printed
    assert [b.text for b in page.balloons] == printed
    # and every panel still has its words
    assert [(p.caption, p.dialogue) for p in project.panels] == [(p["caption"], p["dialogue"]) for p in old["panels"]]
    kinds = {b.text: (b.panel, b.source) for b in page.balloons}
    p1, p2, p3, p4 = (p.id for p in project.panels[:4])
    # words that matched their panel's are now the panel's words, shown by the balloon
    assert kinds["Mira had never been this far from the village."] == (p1, "caption")
    assert kinds["Hello?"] == (p1, "dialogue:0") and kinds["Is anyone there?"] == (p1, "dialogue:1")
    assert kinds["Knock knock."] == (p3, "dialogue:0")
    # words that differed stay on the page as the panel's lettering with words of its own
    assert kinds["Two hundred and twelve steps!"] == (p2, "")
    assert kinds["Someone still lived here."] == (p4, "") and project.panels[3].caption == "Somebody still lived here."
    assert kinds["KNOCK!"] == (p3, "") and kinds["Meanwhile…"] == (None, "")

    # saved again: schema 4, and a balloon that shows its panel's words keeps no copy of them
    path = tmp_path / "now.storystudio"
    save_project(project, path)
    with zipfile.ZipFile(path) as archive:
        doc = json.loads(archive.read("project.json"))
    assert doc["schema"] == SCHEMA_VERSION == 4
    saved = doc["layout"]["pages"][0]["balloons"]
    assert [("text" in b) for b in saved] == [b.source == "" for b in page.balloons]
    again = load_project(path)
    assert again.layout == project.layout and again.to_dict() == project.to_dict()
    # a caption edited in the Panel tab shows on the page from now on
    again.panels[0].caption = "Mira had walked since dawn."
    again.resolve_words()
    assert again.layout.pages[0].balloons[0].text == "Mira had walked since dawn."


def test_balloon_of_a_deleted_panel_becomes_free_lettering(project, tmp_path):
    doc = document(project, schema=3)
    balloons = doc["layout"]["pages"][0]["balloons"]
    balloons.append({**balloons[0], "id": "gone-words", "panel": "no-such-panel", "text": "Old words."})
    balloons.append({**balloons[0], "id": "gone-own", "panel": "no-such-panel", "source": "", "text": "BAM"})
    loaded = load_project(write_zip(tmp_path / "v3.storystudio", members_of(project, doc)))
    page = loaded.layout.pages[0]
    assert page.balloon_by_id("gone-words").free and page.balloon_by_id("gone-words").text == "Old words."
    assert page.balloon_by_id("gone-own").free and page.balloon_by_id("gone-own").text == "BAM"


@pytest.mark.parametrize(("source", "panel", "message"), [
    ("dialogue:x", "keep", 'the source of balloon 1 of page 1 should be "caption", "dialogue:N" or nothing, not '
                           '"dialogue:x"'),
    ("caption", None, "takes its words from a panel's caption but names no panel"),
])
def test_balloon_words_that_name_nothing_are_refused_plainly(project, tmp_path, source, panel, message):
    doc = document(project)
    balloon = doc["layout"]["pages"][0]["balloons"][0]
    balloon["source"] = source
    if panel is None:
        balloon["panel"] = None
    path = write_zip(tmp_path / "bad.storystudio", members_of(project, doc))
    with pytest.raises(ProjectFileError, match=re.escape(message)):
        load_project(path)
