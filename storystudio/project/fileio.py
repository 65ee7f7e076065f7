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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from . import limits
from .layout import SOURCE_PATTERN, Words, one_line
from .model import PNG_SIGNATURE, Project, now_iso

FORMAT_NAME = "storystudio-project"
SCHEMA_VERSION = 4
FILE_SUFFIX = ".storystudio"
PROJECT_MEMBER = "project.json"
IMAGE_FOLDER = "images/"

#: Environment variable naming the data folder (autosaves, recent files) instead of the usual one.
DATA_DIR_ENV = "STORYSTUDIO_DATA_DIR"


class ProjectFileError(ValueError):
    """A project file could not be read or written; the message is meant for the user."""


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
# checking a project document (the rules are the schema's: schema.py)


def _depth_problem(doc: Any) -> str | None:
    """Nesting past ``limits.MAX_JSON_DEPTH``, or a number that is not finite, found without recursion."""
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(doc, 1, ())]
    while stack:
        value, depth, loc = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > limits.MAX_JSON_DEPTH:
                return f"its {PROJECT_MEMBER} nests lists and groups more than {limits.MAX_JSON_DEPTH} deep"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((item, depth + 1, (*loc, key)) for key, item in items)
        elif isinstance(value, float) and not math.isfinite(value):
            from .schema import where

            return f"{where(loc)} should be a finite number, not {value}"
    return None


def _normalise(doc: dict[str, Any]) -> None:
    """Bring derived values made by earlier versions within the limits, losing nothing: a panel's size
    comes from its frame's shape, and earlier versions could make it larger than a model may draw."""
    most, multiple = limits.MAX_PICTURE_SIDE, limits.PICTURE_MULTIPLE
    for panel in doc.get("panels", []) if isinstance(doc.get("panels"), list) else []:
        size = panel.get("size") if isinstance(panel, dict) else None
        if (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                              and 0 < v < 10**6 for v in size) and max(size) > most):
            scale = most / max(size)
            panel["size"] = [max(multiple, int(v * scale) // multiple * multiple) for v in size]


def _check(doc: Any) -> tuple[Any, str | None]:
    """A (current schema) project document checked against the schema (a ``schema.ProjectDocument``), or what
    is wrong with it as a phrase. The schema is imported here, when a file is first read or written: building
    its validators takes a few tenths of a second that the window's start should not wait for."""
    from pydantic import ValidationError

    from . import schema

    found = _depth_problem(doc)
    if found:
        return None, found
    try:
        return schema.validated(doc), None
    except ValidationError as exc:
        return None, schema.problem(exc)
    except (TypeError, ValueError, RecursionError) as exc:  # only in memory: a value of a kind JSON has not
        return None, f"some of its data is not plain text or numbers ({type(exc).__name__})"


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
    checked, found = _check(doc)
    if checked is None:
        raise ProjectFileError(f"The project cannot be saved: {found}.")
    users = checked.images()
    for name in sorted(users):
        data = project.images.get(name)
        if data is None:
            raise ProjectFileError(f"The project cannot be saved: the image {name} that {users[name]} uses is missing.")
        if not data.startswith(PNG_SIGNATURE):
            raise ProjectFileError(
                f"The project cannot be saved: the image {name} that {users[name]} uses is not a PNG picture."
            )
    text = json.dumps(doc, ensure_ascii=False, indent=1, allow_nan=False)

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
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise self.error(f"could not be read ({reason}).") from None
        except Exception:  # zipfile meets a damaged directory with many kinds of error (struct, unicode, ...)
            raise self.error("is not a StoryStudio project (it is not a zip archive).") from None

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
        except Exception:  # a lying header, a bad checksum, an unknown compression: zipfile and zlib say it many ways
            raise self.damaged(f"the file {limits.quote(info.filename, 80)} inside it cannot be read") from None
        if len(data) > limits.MAX_MEMBER_BYTES:
            raise self.error(f"was refused: the file {info.filename} inside it is larger than it claims.")
        return data

    def document(self, archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]) -> tuple[dict[str, Any], Any]:
        info = members.get(PROJECT_MEMBER)
        if info is None:
            raise self.error(f"is not a StoryStudio project (it has no {PROJECT_MEMBER}).")
        if info.file_size > limits.MAX_DOCUMENT_BYTES:
            raise self.error(f"was refused: its {PROJECT_MEMBER} would unpack to {_megabytes(info.file_size)}, more "
                             f"than the {_megabytes(limits.MAX_DOCUMENT_BYTES)} a project description may have.")
        raw = self.read(archive, info)
        if len(raw) > limits.MAX_DOCUMENT_BYTES:
            raise self.error(f"was refused: its {PROJECT_MEMBER} is larger than it claims.")
        try:
            doc = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise self.damaged(f"its {PROJECT_MEMBER} is not readable JSON text") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
            raise self.error(f"is not a StoryStudio project (its {PROJECT_MEMBER} describes something else).")
        if "schema" not in doc:
            raise self.damaged("it does not say which project format it uses")
        number = doc["schema"]
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise self.damaged(f"its project format number ({limits.quote(number)}) is not valid")
        if number > SCHEMA_VERSION:
            raise self.error(
                f"was made by a newer StoryStudio (project format {limits.quote(number)}); this version reads up "
                f"to format {SCHEMA_VERSION}. Update StoryStudio to open it."
            )
        found = _depth_problem(doc)
        if found:
            raise self.damaged(found)
        for version in range(number, SCHEMA_VERSION):
            try:
                doc = MIGRATIONS[version](doc)
            except Exception:  # a damaged old file trips a migration in many ways; the schema says what after
                raise self.damaged(f"it could not be upgraded from project format {version}") from None
            doc["schema"] = version + 1
        _normalise(doc)
        checked, found = _check(doc)
        if checked is None:
            raise self.damaged(str(found))
        return doc, checked

    def images(self, archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], checked: Any) -> dict[str, bytes]:
        """Every picture the project uses, each a sound PNG of at most ``limits.MAX_IMAGE_SIDE`` a side; the
        pictures that are shown (chosen versions and references, photos, clips) are decoded through."""
        images: dict[str, bytes] = {}
        shown = checked.shown_images()
        for name, user in checked.images().items():
            member = IMAGE_FOLDER + name
            info = members.get(member)
            if info is None:
                raise self.damaged(f"the image {member} that {user} uses is missing")
            data = self.read(archive, info)
            if not data.startswith(PNG_SIGNATURE):
                raise self.damaged(f"the image {member} that {user} uses is not a PNG picture")
            try:
                with Image.open(io.BytesIO(data)) as image:
                    width, height = image.size
                    if image.format != "PNG":
                        raise ValueError(image.format)
                    if max(width, height) > limits.MAX_IMAGE_SIDE:
                        raise self.damaged(f"the image {member} that {user} uses is {width}x{height} pixels; a "
                                           f"picture may be at most {limits.MAX_IMAGE_SIDE} pixels a side")
                    image.verify()
                if name in shown:
                    with Image.open(io.BytesIO(data)) as image:
                        image.load()
            except ProjectFileError:
                raise
            except Exception:  # PIL raises many kinds for broken data, including decompression bombs
                raise self.damaged(f"the image {member} that {user} uses is not a readable PNG picture") from None
            images[name] = data
        return images

    def load(self) -> Project:
        with self.open() as archive:
            members = self.check_members(archive)
            doc, checked = self.document(archive, members)
            images = self.images(archive, members, checked)
        try:
            return Project.from_dict(doc, images)
        except Exception:  # the schema let it through, so this is a bug; the user still gets one sentence
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
