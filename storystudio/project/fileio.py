"""The ``.storystudio`` project file, autosaves for crash recovery, and the recent files list.

A project file is a zip archive holding::

    project.json          {"format": "storystudio-project", "schema": 4, ...Project.to_dict()}
    images/<name>.png     every picture the project uses, stored uncompressed

Files are written atomically (a ``.part`` file beside the target, synced,
then renamed over it), so a crash while saving never leaves half a project.
Loading trusts nothing in the file: it is read into memory (never extracted),
every name, size, field and picture is checked, and any problem is reported as
a :class:`ProjectFileError` whose message is a plain sentence for the user.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from . import limits
from .animatic import Animatic, AnimaticError
from .layout import SOURCE_PATTERN, Layout, LayoutError, Words, one_line
from .model import PNG_SIGNATURE, Project, now_iso

FORMAT_NAME = "storystudio-project"
SCHEMA_VERSION = 4
FILE_SUFFIX = ".storystudio"
PROJECT_MEMBER = "project.json"
IMAGE_FOLDER = "images/"

#: Environment variable naming the data folder (autosaves, recent files) instead of the usual one.
DATA_DIR_ENV = "STORYSTUDIO_DATA_DIR"

#: What an image file name in the store may look like: a plain file name, no folders.
_IMAGE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}\.png")


class ProjectFileError(ValueError):
    """A project file could not be read or written; the message is meant for the user."""


class _Damaged(Exception):
    """Internal: what is wrong with a project document, as a phrase without a subject."""


# ---------------------------------------------------------------------------
# migrations


def _migrate_1_to_2(doc: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 called a panel's prompt "text" (with a leading "[NC]" for panels without
    characters) and had no dialogue, duration, variation or character lock."""
    panels = doc.get("panels")
    if isinstance(panels, list):
        for panel in panels:
            if not isinstance(panel, dict):
                continue  # left for validation to report
            if "prompt" not in panel and "text" in panel:
                text = panel.pop("text")
                if isinstance(text, str):
                    text = re.sub(r"^\s*\[\s*NC\s*\]\s*", "", text)
                panel["prompt"] = text
            panel.setdefault("dialogue", "")
            panel.setdefault("duration", None)
            panel.setdefault("variation", 0)
    characters = doc.get("characters")
    if isinstance(characters, list):
        for character in characters:
            if isinstance(character, dict):
                character.setdefault("locked", False)
    doc["schema"] = 2
    return doc


def _migrate_2_to_3(doc: dict[str, Any]) -> dict[str, Any]:
    """Schema 2 kept a "pages" list that nothing filled; schema 3 has a "layout" with
    page size, reading direction, gutters, lettering and its pages."""
    pages = doc.pop("pages", [])
    doc["layout"] = {"pages": pages if isinstance(pages, list) else []}
    doc["schema"] = 3
    return doc


def _migrate_3_to_4(doc: dict[str, Any]) -> dict[str, Any]:
    """Schema 3 kept a copy of a panel's caption or dialogue line in each balloon made from it, and the
    copies drifted apart (words edited on the page or in the Panel tab). Schema 4 keeps the words once,
    with the panel: a balloon that shows them names them (``source``) and has no text.

    Nothing that either place showed is lost: a balloon whose words still match its panel's becomes
    one that shows them; one whose words differ keeps them as words of its own (still the panel's
    lettering, so it moves with it; the Pages tab offers to make them the panel's words or to show
    the panel's words instead). Lettering of a panel that no longer exists becomes free lettering.
    """
    panels = {p.get("id"): p for p in doc.get("panels", []) if isinstance(p, dict)}
    layout = doc.get("layout")
    pages = layout.get("pages") if isinstance(layout, dict) else None
    for page in pages if isinstance(pages, list) else []:
        balloons = page.get("balloons") if isinstance(page, dict) else None
        for balloon in balloons if isinstance(balloons, list) else []:
            if not isinstance(balloon, dict):
                continue  # left for validation to report
            panel = panels.get(balloon.get("panel"))
            if balloon.get("panel") is not None and panel is None:
                balloon["panel"], balloon["source"] = None, ""
                continue
            source = balloon.get("source") or ""
            if not source:
                continue
            words = Words.of(_PanelText(panel)) if panel is not None else None
            shown = words.get(source) if words is not None and SOURCE_PATTERN.fullmatch(str(source)) else None
            text = balloon.get("text", "")
            if shown is not None and isinstance(text, str) and one_line(text) == one_line(shown):
                balloon.pop("text", None)
            else:
                balloon["source"] = ""
    doc["schema"] = 4
    return doc


class _PanelText:
    """A panel document's words, as Words.of reads them."""

    def __init__(self, panel: dict[str, Any]) -> None:
        caption, dialogue = panel.get("caption", ""), panel.get("dialogue", "")
        self.caption = caption if isinstance(caption, str) else ""
        self.dialogue = dialogue if isinstance(dialogue, str) else ""


#: Upgrades a project document from schema N (the key) to N + 1.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
    3: _migrate_3_to_4,
}


# ---------------------------------------------------------------------------
# checking a project document

_KIND_WORDS = {
    str: "text",
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a group of named values",
}

_SETTINGS_FIELDS: dict[str, tuple[type, bool]] = {  # name -> (kind, may be null)
    "model": (str, False),
    "style": (str, True),
    "width": (int, False),
    "height": (int, False),
    "steps": (int, False),
    "guidance": (float, False),
    "seed": (int, False),
    "rate": (float, False),
    "id_length": (int, False),
    "scheduler": (str, False),
    "freeu": (bool, False),
    "negative_prompt": (str, False),
    "device": (str, False),
    "dtype": (str, False),
}


def _is_kind(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, kind)


def _show(value: Any) -> str:
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value[:40]}..."' if len(value) > 40 else f'"{value}"'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a group of named values"
    return str(value)


def _get(data: dict[str, Any], key: str, kind: type, owner: str, nullable: bool = False) -> Any:
    """``data[key]`` when it has the right kind; _Damaged saying what is wrong otherwise."""
    label = key.replace("_", " ")
    if key not in data:
        raise _Damaged(f"{owner} has no {label}")
    value = data[key]
    if value is None and nullable:
        return None
    if not _is_kind(value, kind):
        expected = _KIND_WORDS[kind] + (" or empty" if nullable else "")
        raise _Damaged(f"the {label} of {owner} should be {expected}, not {_show(value)}")
    return value


def _get_id(data: dict[str, Any], owner: str, seen: set[str]) -> str:
    value = _get(data, "id", str, owner)
    if not value.strip():
        raise _Damaged(f"the id of {owner} is empty")
    if value in seen:
        raise _Damaged(f"{owner} has the same id as another one ({value})")
    seen.add(value)
    return value


def _image_users(doc: dict[str, Any]) -> dict[str, str]:
    """Image name -> who uses it first ("panel 2", "Mira's photo"); the document is already checked."""
    users: dict[str, str] = {}
    for number, character in enumerate(doc["characters"], 1):
        who = character["name"].strip() or f"character {number}"
        if character["photo"] is not None:
            users.setdefault(character["photo"], f"{who}'s photo")
        for index, version in enumerate(character["references"], 1):
            users.setdefault(version["image"], f"{who}'s reference {index}")
    for number, panel in enumerate(doc["panels"], 1):
        for version in panel["versions"]:
            users.setdefault(version["image"], f"panel {number}")
    for cut in doc.get("animatic", {}).get("cuts", {}).values():
        for name in cut.get("clip", []):
            users.setdefault(name, "a transition clip")
    return users


def _check_image_name(name: str, owner: str) -> None:
    if not _IMAGE_NAME.fullmatch(name):
        raise _Damaged(f'{owner} uses an image with an unusable name ("{name[:60]}")')


def _check_versions(versions: list[Any], owner: str, what: str) -> None:
    for index, version in enumerate(versions, 1):
        where = f"{what} {index} of {owner}"
        if not isinstance(version, dict):
            raise _Damaged(f"{where} is not a group of named values")
        _check_image_name(_get(version, "image", str, where), where)
        _get(version, "parameters", dict, where)
        _get(version, "created", str, where)


def _check_document(doc: Any) -> None:
    """Raise _Damaged for the first thing wrong with a (current schema) project document."""
    if not isinstance(doc, dict):
        raise _Damaged("its project description is not a group of named values")
    owner = "the project"
    project_id = _get(doc, "id", str, owner)
    if not project_id.strip():
        raise _Damaged("the id of the project is empty")
    for key in ("title", "created", "modified"):
        _get(doc, key, str, owner)

    settings = _get(doc, "settings", dict, owner)
    for key, (kind, nullable) in _SETTINGS_FIELDS.items():
        _get(settings, key, kind, "the settings", nullable)
    for key in ("width", "height", "steps", "id_length"):
        if settings[key] < 1:
            raise _Damaged(f"the {key.replace('_', ' ')} setting is {settings[key]}, but it must be at least 1")
    if not 0.0 <= settings["rate"] <= 1.0:
        raise _Damaged(f"the rate setting is {settings['rate']}, but it must be between 0 and 1")

    seen: set[str] = set()
    for number, character in enumerate(_get(doc, "characters", list, owner), 1):
        where = f"character {number}"
        if not isinstance(character, dict):
            raise _Damaged(f"{where} is not a group of named values")
        _get_id(character, where, seen)
        _get(character, "name", str, where)
        _get(character, "description", str, where)
        photo = _get(character, "photo", str, where, nullable=True)
        if photo is not None:
            _check_image_name(photo, f"the photo of {where}")
        _get(character, "locked", bool, where)
        references = _get(character, "references", list, where)
        _check_versions(references, where, "reference")
        chosen = _get(character, "chosen_references", list, where)
        for index in chosen:
            if not _is_kind(index, int) or not 0 <= index < len(references):
                raise _Damaged(f"{where} picks a reference that does not exist ({_show(index)})")

    seen = set()
    for number, panel in enumerate(_get(doc, "panels", list, owner), 1):
        where = f"panel {number}"
        if not isinstance(panel, dict):
            raise _Damaged(f"{where} is not a group of named values")
        _get_id(panel, where, seen)
        for key in ("prompt", "caption", "dialogue"):
            _get(panel, key, str, where)
        if _get(panel, "variation", int, where) < 0:
            raise _Damaged(f"the variation of {where} is negative")
        versions = _get(panel, "versions", list, where)
        _check_versions(versions, where, "version")
        chosen = _get(panel, "chosen", int, where, nullable=True)
        if chosen is not None and not 0 <= chosen < len(versions):
            raise _Damaged(f"{where} picks picture version {chosen + 1}, but it has {len(versions)}")
        duration = _get(panel, "duration", float, where, nullable=True)
        if duration is not None and duration <= 0:
            raise _Damaged(f"the duration of {where} is {duration} seconds, but it must be more than 0")
        size = panel.get("size")  # files from before panels had their own size have no such key
        if size is not None:
            if not isinstance(size, list) or len(size) != 2 or not all(_is_kind(v, int) for v in size):
                shown = json.dumps(size)[:40] if isinstance(size, list) else _show(size)
                raise _Damaged(f"the size of {where} should be a width and a height in whole pixels, not {shown}")
            if min(size) < 64:
                raise _Damaged(f"the size of {where} is {size[0]}x{size[1]} pixels, but it must be at least 64x64")

    try:  # a frame naming a deleted panel is not damage: it shows as an empty frame
        Layout.from_dict(_get(doc, "layout", dict, owner))
    except LayoutError as exc:
        raise _Damaged(str(exc)) from None
    try:
        animatic = Animatic.from_dict(_get(doc, "animatic", dict, owner))
    except AnimaticError as exc:
        raise _Damaged(str(exc)) from None
    for cut in animatic.cuts.values():
        for name in cut.clip:
            _check_image_name(name, "a transition clip")


# ---------------------------------------------------------------------------
# saving


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX only; Windows cannot open folders)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _open_part(part: Path) -> BinaryIO:
    """``part`` opened for writing and locked (POSIX), so that tidying up never takes a file being written."""
    fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o666)
    try:
        if os.name == "posix":
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # OSError: another process writes this very file
        os.ftruncate(fd, 0)
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``<path>.part`` + fsync + rename; on failure the old file stays as it was.

    The ``.part`` file is locked while it is written (POSIX), so that a ``.part`` nobody holds is known
    to be left over from a crash."""
    part = path.with_name(path.name + ".part")
    handle = _open_part(part)  # an OSError here (another process writes it) leaves that process's file alone
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
            if os.name == "posix":
                os.replace(part, path)  # still holding the lock: nobody tidies the file away meanwhile
        if os.name != "posix":
            os.replace(part, path)  # Windows renames no open file
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    _fsync_dir(path.parent)


def _write_project_file(project: Project, path: Path, modified: str, comment: bytes = b"") -> None:
    doc = {"format": FORMAT_NAME, "schema": SCHEMA_VERSION, **project.to_dict(), "modified": modified}
    try:
        _check_document(doc)
    except _Damaged as exc:
        raise ProjectFileError(f"The project cannot be saved: {exc}.") from None
    users = _image_users(doc)
    for name in sorted(users):
        data = project.images.get(name)
        if data is None:
            raise ProjectFileError(f"The project cannot be saved: the image {name} that {users[name]} uses is missing.")
        if not data.startswith(PNG_SIGNATURE):
            raise ProjectFileError(
                f"The project cannot be saved: the image {name} that {users[name]} uses is not a PNG picture."
            )
    try:
        text = json.dumps(doc, ensure_ascii=False, indent=1, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ProjectFileError(
            f"The project cannot be saved: some of its data is not plain text or numbers ({exc})."
        ) from None

    def write(handle: BinaryIO) -> None:
        with zipfile.ZipFile(handle, "w") as archive:
            archive.comment = comment
            archive.writestr(PROJECT_MEMBER, text.encode("utf-8"), compress_type=zipfile.ZIP_DEFLATED)
            for name in sorted(users):
                # PNG data is already compressed: storing it is as small and much faster
                archive.writestr(IMAGE_FOLDER + name, project.images[name], compress_type=zipfile.ZIP_STORED)

    try:
        _atomic_write(path, write)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ProjectFileError(f'"{path.name}" could not be saved ({reason}).') from exc


def save_project(project: Project, path: str | os.PathLike[str]) -> None:
    """Save ``project`` to ``path`` atomically, with only the images it uses; sets ``project.modified``."""
    path = Path(path)
    stamp = now_iso()
    _write_project_file(project, path, stamp)
    project.modified = stamp


# ---------------------------------------------------------------------------
# loading


def _member_problem(name: str) -> str | None:
    """Why an archive member name is refused, or None when it is acceptable."""
    if name.startswith("/") or re.match(r"[A-Za-z]:", name) or "\\" in name:
        return "unsafe"
    parts = name.split("/")
    if any(part in ("..", ".") for part in parts) or "\x00" in name:
        return "unsafe"
    if name in (PROJECT_MEMBER, IMAGE_FOLDER):
        return None
    if len(parts) == 2 and parts[0] + "/" == IMAGE_FOLDER and parts[1]:
        return None
    return "unexpected"


def _megabytes(size: int) -> str:
    return f"{size / 1024**2:,.0f} MB"


class _Reader:
    """Reads one project archive entirely in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = f'"{path.name}"'

    def error(self, message: str) -> ProjectFileError:
        return ProjectFileError(f"{self.label} {message}")

    def damaged(self, problem: str) -> ProjectFileError:
        return self.error(f"is damaged: {problem}.")

    def open(self) -> zipfile.ZipFile:
        try:
            return zipfile.ZipFile(self.path)
        except FileNotFoundError:
            raise self.error("does not exist.") from None
        except IsADirectoryError:
            raise self.error("is a folder, not a StoryStudio project file.") from None
        except PermissionError:
            raise self.error("cannot be opened: you do not have permission to read it.") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError):
            raise self.error("is not a StoryStudio project (it is not a zip archive).") from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise self.error(f"could not be read ({reason}).") from None

    def check_members(self, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
        members: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in archive.infolist():
            name = info.filename
            problem = _member_problem(name)
            if problem == "unsafe":
                raise self.error(
                    f'was refused: it contains a file with an unsafe name ("{name[:80]}") that could '
                    "end up outside its folder. Nothing was extracted from it."
                )
            if problem == "unexpected":
                raise self.error(f'is not a StoryStudio project: it contains an unexpected file "{name[:80]}".')
            if name in members:
                raise self.damaged(f"it contains the file {name} twice")
            if info.file_size > limits.MAX_MEMBER_BYTES:
                raise self.error(
                    f"was refused: the file {name} inside it would unpack to {_megabytes(info.file_size)}, "
                    f"more than the {_megabytes(limits.MAX_MEMBER_BYTES)} limit."
                )
            total += info.file_size
            if total > limits.MAX_TOTAL_BYTES:
                raise self.error(
                    f"was refused: its contents would unpack to more than {_megabytes(limits.MAX_TOTAL_BYTES)}."
                )
            members[name] = info
        return members

    def read(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
        if info.flag_bits & 0x1:
            raise self.error(f"cannot be opened: the file {info.filename} inside it is password-protected.")
        try:
            with archive.open(info) as handle:
                data = handle.read(limits.MAX_MEMBER_BYTES + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError):
            raise self.damaged(f"the file {info.filename} inside it cannot be read") from None
        if len(data) > limits.MAX_MEMBER_BYTES:
            raise self.error(f"was refused: the file {info.filename} inside it is larger than it claims.")
        return data

    def document(self, archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]) -> dict[str, Any]:
        info = members.get(PROJECT_MEMBER)
        if info is None:
            raise self.error(f"is not a StoryStudio project (it has no {PROJECT_MEMBER}).")
        raw = self.read(archive, info)
        try:
            doc = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError):
            raise self.damaged(f"its {PROJECT_MEMBER} is not readable JSON text") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
            raise self.error(f"is not a StoryStudio project (its {PROJECT_MEMBER} describes something else).")
        if "schema" not in doc:
            raise self.damaged("it does not say which project format it uses")
        schema = doc["schema"]
        if not _is_kind(schema, int) or schema < 1:
            raise self.damaged(f"its project format number ({_show(schema)}) is not valid")
        if schema > SCHEMA_VERSION:
            raise self.error(
                f"was made by a newer StoryStudio (project format {schema}); this version reads up to "
                f"format {SCHEMA_VERSION}. Update StoryStudio to open it."
            )
        for version in range(schema, SCHEMA_VERSION):
            try:
                doc = MIGRATIONS[version](doc)
            except Exception:
                raise self.damaged(f"it could not be upgraded from project format {version}") from None
            doc["schema"] = version + 1
        try:
            _check_document(doc)
        except _Damaged as exc:
            raise self.damaged(str(exc)) from None
        return doc

    def images(
        self, archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], doc: dict[str, Any]
    ) -> dict[str, bytes]:
        images: dict[str, bytes] = {}
        for name, user in _image_users(doc).items():
            member = IMAGE_FOLDER + name
            info = members.get(member)
            if info is None:
                raise self.damaged(f"the image {member} that {user} uses is missing")
            data = self.read(archive, info)
            if not data.startswith(PNG_SIGNATURE):
                raise self.damaged(f"the image {member} that {user} uses is not a PNG picture")
            try:
                with Image.open(io.BytesIO(data)) as image:
                    if image.format != "PNG":
                        raise ValueError(image.format)
                    image.verify()
            except Exception:  # PIL raises many kinds for broken data, including decompression bombs
                raise self.damaged(f"the image {member} that {user} uses is not a readable PNG picture") from None
            images[name] = data
        return images

    def load(self) -> Project:
        with self.open() as archive:
            members = self.check_members(archive)
            doc = self.document(archive, members)
            images = self.images(archive, members, doc)
        try:
            return Project.from_dict(doc, images)
        except Exception:  # the document was checked; this is only a safety net
            raise self.damaged("its project description could not be understood") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def load_project(path: str | os.PathLike[str]) -> Project:
    """Read a ``.storystudio`` file; ProjectFileError with a plain message for anything wrong with it.

    Nothing is extracted or written: the archive is read into memory only.
    """
    return _Reader(Path(path)).load()


# ---------------------------------------------------------------------------
# the data folder: autosaves and recent files


def data_dir() -> Path:
    """StoryStudio's data folder (``$STORYSTUDIO_DATA_DIR`` when set); it may not exist yet."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs  # only needed when the environment does not say

    return platformdirs.user_data_path("StoryStudio", appauthor=False)


def autosave_dir() -> Path:
    """Where autosaves are written; it may not exist yet."""
    return data_dir() / "autosave"


@dataclass(frozen=True)
class AutosaveInfo:
    """An autosave left behind, e.g. by a crash: what to offer to recover."""

    path: Path  # the autosaved .storystudio file
    source_path: str | None  # the file the project was opened from or saved to; None if never saved
    title: str
    saved_at: str  # ISO time


#: Says that a project file's zip comment is an autosave's note (who it belongs to, when it was saved).
AUTOSAVE_NOTE = "storystudio-autosave/1"


def _autosave_key(project: Project, source_path: str | None) -> str:
    if source_path:
        identity = "file:" + os.path.normcase(os.path.abspath(os.path.expanduser(source_path)))
    else:
        identity = "project:" + project.id
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]


def write_autosave(project: Project, source_path: str | os.PathLike[str] | None) -> Path:
    """Save a recovery copy of ``project`` in the autosave folder and return its path.

    A project keeps one autosave, ``<key>.storystudio``: the key names the file the project belongs to,
    or the project's id while it has never been saved. The note the recovery offer shows (the source,
    the title, the time) is the archive's zip comment, so the autosave is one file, replaced atomically:
    a crash at any moment leaves the previous autosave or the new one, never half of one or two.
    ``project.modified`` is left as it is.
    """
    source = os.fspath(source_path) if source_path is not None else None
    folder = autosave_dir()
    folder.mkdir(parents=True, exist_ok=True)
    key = _autosave_key(project, source)
    archive = folder / f"{key}{FILE_SUFFIX}"
    note = {"note": AUTOSAVE_NOTE, "source_path": source, "title": project.title[:200], "saved_at": now_iso(),
            "project_id": project.id}
    _write_project_file(project, archive, project.modified, comment=json.dumps(note, ensure_ascii=False).encode())
    for old in folder.glob(f"*-{key}{FILE_SUFFIX}"):  # named after the title by earlier versions
        discard_autosave(old)
    return archive


def _note(archive: Path) -> dict[str, Any] | None:
    """An autosave's note: its zip comment, or the ``.json`` beside it that earlier versions wrote."""
    try:
        with zipfile.ZipFile(archive) as handle:
            comment = handle.comment
        info = json.loads(comment.decode("utf-8")) if comment else None
        if info is None and archive.with_suffix(".json").is_file():
            info = json.loads(archive.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(info, dict):
        return None
    source, title, saved_at = info.get("source_path"), info.get("title"), info.get("saved_at")
    if not (source is None or isinstance(source, str)) or not isinstance(title, str) or not isinstance(saved_at, str):
        return None
    return info


def _autosave_key_of(path: Path) -> str:
    """The key in an autosave's name (``<key>.storystudio``, or ``<title>-<key>.storystudio`` of old)."""
    return path.name.split(".")[0].rsplit("-", 1)[-1]


def pending_autosaves() -> list[AutosaveInfo]:
    """Autosaves still on disk (the app discards them after a save or a clean exit), newest first, one per
    project. What a crash left unfinished is removed first (see :func:`tidy_autosaves`)."""
    folder = autosave_dir()
    if not folder.is_dir():
        return []
    tidy_autosaves()
    found: dict[str, tuple[int, AutosaveInfo]] = {}
    for archive in folder.glob(f"*{FILE_SUFFIX}"):
        info = _note(archive)
        try:
            stamp = archive.stat().st_mtime_ns
        except OSError:
            continue
        if info is None:
            continue
        entry = AutosaveInfo(path=archive, source_path=info.get("source_path"), title=info["title"],
                             saved_at=info["saved_at"])
        key = _autosave_key_of(archive)
        if key in found and found[key][0] >= stamp:
            discard_autosave(archive)  # an older copy of the same project
            continue
        if key in found:
            discard_autosave(found[key][1].path)
        found[key] = (stamp, entry)
    return [entry for _, entry in sorted(found.values(), key=lambda item: item[0], reverse=True)]


def tidy_autosaves() -> None:
    """Remove what a crash can leave in the autosave folder: ``.part`` files no StoryStudio is writing any
    more, archives without their note and notes without their archive (from earlier versions)."""
    folder = autosave_dir()
    if not folder.is_dir():
        return
    for part in folder.glob("*.part"):
        if _abandoned(part):
            with contextlib.suppress(OSError):
                part.unlink()
    for archive in folder.glob(f"*{FILE_SUFFIX}"):
        if _note(archive) is None:
            discard_autosave(archive)
    for sidecar in folder.glob("*.json"):
        if not sidecar.with_suffix(FILE_SUFFIX).exists():
            with contextlib.suppress(OSError):
                sidecar.unlink()


def _abandoned(part: Path) -> bool:
    """Whether no process is writing ``part`` (writers hold a lock on it while they write)."""
    if os.name != "posix":
        return True  # Windows does not let an open file be removed: the unlink fails while it is written
    import fcntl

    try:
        fd = os.open(part, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # another StoryStudio is writing it right now
    finally:
        os.close(fd)  # also lets go of the lock
    return True


def discard_autosave(path: str | os.PathLike[str]) -> None:
    """Remove an autosave (its ``.storystudio`` file, any leftover ``.part``, and an old-style ``.json`` note)."""
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (FILE_SUFFIX, ".json") else path
    for suffix in (FILE_SUFFIX, ".json", FILE_SUFFIX + ".part", ".json.part"):
        with contextlib.suppress(FileNotFoundError):
            base.with_name(base.name + suffix).unlink()


class RecentFiles:
    """The most recently opened or saved projects, newest first, kept in ``recent.json``."""

    def __init__(self, path: str | os.PathLike[str] | None = None, limit: int = 10) -> None:
        if limit < 1:
            raise ValueError(f"The recent files list must hold at least 1 file, not {limit}.")
        self.path = Path(path) if path is not None else data_dir() / "recent.json"
        self.limit = limit

    def _stored(self) -> list[str]:
        try:
            items = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        if not isinstance(items, list):
            return []
        return [item for item in items if isinstance(item, str) and item]

    def _store(self, items: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(items, ensure_ascii=False, indent=1).encode("utf-8")
        _atomic_write(self.path, lambda handle: handle.write(payload))

    @staticmethod
    def _normal(path: str | os.PathLike[str]) -> str:
        return os.path.abspath(os.path.expanduser(os.fspath(path)))

    def add(self, path: str | os.PathLike[str]) -> None:
        """Put ``path`` first (moving it up if it was already listed) and drop the oldest beyond the limit."""
        entry = self._normal(path)
        same = os.path.normcase(entry)
        items = [item for item in self._stored() if os.path.normcase(item) != same]
        self._store([entry, *items][: self.limit])

    def remove(self, path: str | os.PathLike[str]) -> None:
        """Take ``path`` off the list."""
        same = os.path.normcase(self._normal(path))
        self._store([item for item in self._stored() if os.path.normcase(item) != same])

    def items(self) -> list[Path]:
        """The listed files that still exist, newest first."""
        return [Path(item) for item in self._stored() if os.path.isfile(item)]

    def clear(self) -> None:
        self._store([])
