"""Downloading catalog models into the Hugging Face cache: progress, resume, cancel, tokens, offline.

Files land in the standard cache layout (``blobs/<etag>``, ``snapshots/<commit>/<file>``
links, ``refs/<revision>``), so what other tools downloaded is reused and what
StoryStudio downloads is theirs to use too.

Why not ``snapshot_download`` as it is: huggingface_hub 2.4 writes each file to a
temporary file unique to the process and deletes it when a download fails, so a
cancelled or broken multi-gigabyte download starts again from zero; its
progress comes in 10 MB steps through tqdm; and it creates a snapshot entry as
soon as each file arrives, so a half download has a ``model_index.json`` that
looks like a model. So StoryStudio fetches each file itself, with its tools
(metadata, headers, HTTP session and error classes): ``Range`` requests append
to ``blobs/<etag>.incomplete`` (the name earlier huggingface_hub versions
resumed from and ``hf cache`` reports), the size and checksum are checked, the
file moves into place, and ``hf_hub_download`` then only has to link it into the
snapshot, ``model_index.json`` last. A model counts as installed when every file
its catalog entry names is in one snapshot (``installed``), and a download never
gets there before every file is complete.

Tokens (for gated repositories) are passed in and sent to the Hub only; no
message, log line or exception here contains one.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import time
from collections import deque
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

from ..errors import ModelError
from .base import COMMIT_ID, hub_cache, repo_storage
from .catalog import CatalogEntry, CatalogError, get_entry

CHUNK_BYTES = 1 << 20  # checksums are computed this many bytes at a time
REPORT_SECONDS = 0.1  # progress reports at most this often (and at every file and stage change)
SPEED_WINDOW_SECONDS = 5.0


@dataclass(frozen=True)
class DownloadProgress:
    """Where a download (or an import) stands; handed to the progress callback.

    ``bytes_done`` counts what is on disk, including what an earlier attempt
    left (``resumed_bytes``), so a resumed bar starts where the last one
    stopped; it only goes down if a server ignores a resume request and the
    file starts over. ``bytes_per_second`` is measured over the last few
    seconds of this attempt's transfer; ``seconds_left`` is ``None`` until
    there is a speed to go by.
    """

    model_id: str
    stage: str  # "checking", "waiting", "downloading", "verifying", "installing", "copying", "converting", "done"
    file: str
    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int
    bytes_per_second: float = 0.0
    seconds_left: float | None = None
    resumed_bytes: int = 0

    @property
    def fraction(self) -> float:
        return min(1.0, self.bytes_done / self.bytes_total) if self.bytes_total else 0.0


ProgressCallback = Callable[[DownloadProgress], None]
CancelCheck = Callable[[], bool]


class DownloadError(ModelError):
    """A download failed; the message says why in plain words. What was already fetched is kept."""


class DownloadCancelled(DownloadError):
    """The user stopped the download; the next download of the same model continues from there."""


class DownloadInterrupted(DownloadError):
    """The connection broke and did not come back; the next attempt continues from where it stopped."""


class OfflineError(DownloadError):
    """Downloads are switched off (``HF_HUB_OFFLINE``) or the model hub cannot be reached."""


class GatedModelError(DownloadError):
    """The repository is gated: it needs an access token of an account that accepted its licence."""


class CorruptDownloadError(DownloadError):
    """A file arrived with the wrong size or checksum; the damaged copy was deleted."""


# ---- where things are ------------------------------------------------------------------------
def hub_endpoint(endpoint: str | None = None) -> str:
    """The model hub's address: the one given, else ``$HF_ENDPOINT`` (read now, not at import), else the Hub."""
    from huggingface_hub import constants

    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _entry(model: str | CatalogEntry) -> CatalogEntry:
    if isinstance(model, CatalogEntry):
        return model
    try:
        return get_entry(model)
    except CatalogError as exc:
        raise DownloadError(str(exc)) from None


def _has_files(snapshot: Path, entry: CatalogEntry) -> bool:
    # is_file() follows the snapshot's links: a link to a missing blob does not count
    return all(any((snapshot / choice).is_file() for choice in entry.file_choices(path)) for path in entry.files)


def snapshot_path(model: str | CatalogEntry, cache_dir: str | Path | None = None) -> Path | None:
    """The snapshot folder that holds every file of a catalog model, or ``None`` (no network).

    The snapshot ``refs/<revision>`` names is tried first, then the others,
    newest first (a ref moved on by another tool that fetched other files must
    not hide a complete older snapshot). For a variant file, the full-precision
    file of the same part counts too.
    """
    entry = _entry(model)
    storage = repo_storage(entry.repo, cache_dir)
    snapshots = storage / "snapshots"
    if not snapshots.is_dir():
        return None
    if COMMIT_ID.fullmatch(entry.revision):
        candidates = [snapshots / entry.revision]
    else:
        candidates = []
        try:
            candidates.append(snapshots / (storage / "refs" / entry.revision).read_text(encoding="utf-8").strip())
        except OSError:
            pass
        others = [p for p in snapshots.iterdir() if p.is_dir() and p not in candidates]
        candidates += sorted(others, key=lambda p: p.stat().st_mtime, reverse=True)
    for snapshot in candidates:
        if snapshot.is_dir() and _has_files(snapshot, entry):
            return snapshot
    return None


def installed(model: str | CatalogEntry, cache_dir: str | Path | None = None) -> bool:
    """Whether every file of a catalog model is in the Hugging Face cache (no network)."""
    return snapshot_path(model, cache_dir) is not None


def installed_size(model: str | CatalogEntry, cache_dir: str | Path | None = None) -> int:
    """Bytes the installed files of a catalog model take (0 when it is not installed)."""
    entry = _entry(model)
    snapshot = snapshot_path(entry, cache_dir)
    if snapshot is None:
        return 0
    total = 0
    for path in entry.files:
        for choice in entry.file_choices(path):
            if (snapshot / choice).is_file():
                total += (snapshot / choice).stat().st_size
                break
    return total


def partial_bytes(model: str | CatalogEntry, cache_dir: str | Path | None = None) -> int:
    """Bytes an unfinished download left in the model's repository: partial files, and finished files not
    yet linked into a snapshot. They are kept so that the next download continues; removing the model
    deletes them."""
    storage = repo_storage(_entry(model).repo, cache_dir)
    try:
        blobs = list((storage / "blobs").iterdir())
    except OSError:
        return 0
    linked = set()
    for link in (storage / "snapshots").rglob("*") if (storage / "snapshots").is_dir() else ():
        if link.is_symlink():
            linked.add(Path(os.readlink(link)).name)
    return sum(p.stat().st_size for p in blobs if p.is_file() and p.name not in linked)


def offline_reason(endpoint: str | None = None, timeout: float = 5.0) -> str | None:
    """Why downloads cannot work right now, in plain words; ``None`` when the model hub answers.

    For the Models dialog to say so before the user starts a download. It
    makes one small request (none when downloads are switched off).
    """
    from huggingface_hub.utils import get_session

    url = hub_endpoint(endpoint)
    if offline_mode():
        return _offline_mode_message()
    import httpx2

    try:
        get_session().head(url + "/api/models", timeout=timeout)
    except httpx2.TransportError:
        return _unreachable_message(url)
    except OSError:  # OfflineModeIsEnabled, raised by the client's own check
        return _offline_mode_message()
    return None


def offline_mode() -> bool:
    """Whether downloads are switched off: ``HF_HUB_OFFLINE`` as huggingface_hub read it at import, or as
    the environment says now (a setting changed while the app runs)."""
    from huggingface_hub import constants

    now = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return constants.is_offline_mode() or now


def _offline_mode_message() -> str:
    return ("Downloads are switched off on this computer (the HF_HUB_OFFLINE setting is on). Switch it off to "
            "download models, or copy them here from a computer that has them.")


def _unreachable_message(endpoint: str) -> str:
    host = urlparse(endpoint).netloc or endpoint
    return (f"The model hub ({host}) cannot be reached: this computer seems to be offline, or a firewall or "
            "proxy is in the way. Connect to the internet and try again; nothing downloaded so far is lost.")


# ---- progress --------------------------------------------------------------------------------
class _Tracker:
    """Counts bytes, measures speed, checks for cancel and reports progress at a calm pace."""

    def __init__(self, model_id: str, callback: ProgressCallback | None, cancelled: CancelCheck | None):
        self.callback = callback
        self.cancelled = cancelled or (lambda: False)
        self.state = DownloadProgress(model_id, "checking", "", 0, 0, 0, 0)
        self.transferred = 0
        self.samples: deque[tuple[float, int]] = deque()
        self.last_report = 0.0

    def check(self) -> None:
        if self.cancelled():
            raise DownloadCancelled("The download was stopped. What was already downloaded is kept: downloading "
                                    "the same model again continues from there.")

    def set(self, force: bool = True, **changes) -> None:
        self.state = replace(self.state, **changes)
        self.report(force)

    def advance(self, n: int) -> None:
        self.transferred += n
        self.state = replace(self.state, bytes_done=self.state.bytes_done + n)
        now = time.monotonic()
        if not self.samples or now - self.samples[-1][0] >= 0.05:
            self.samples.append((now, self.transferred))
        while len(self.samples) > 2 and now - self.samples[1][0] > SPEED_WINDOW_SECONDS:
            self.samples.popleft()
        self.report(force=False)

    def rewind(self, n: int) -> None:
        """A server ignored a resume request: the bytes of the partial file count no more."""
        self.state = replace(self.state, bytes_done=self.state.bytes_done - n,
                             resumed_bytes=max(0, self.state.resumed_bytes - n))

    def report(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self.last_report < REPORT_SECONDS:
            return
        self.last_report = now
        speed, left = 0.0, None
        if len(self.samples) >= 2 and self.samples[-1][0] - self.samples[0][0] >= 0.2:
            (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
            speed = (b1 - b0) / (t1 - t0)
        if speed > 0:
            left = max(0, self.state.bytes_total - self.state.bytes_done) / speed
        self.state = replace(self.state, bytes_per_second=speed, seconds_left=left)
        if self.callback is not None:
            self.callback(self.state)


class _QuietBar:
    """What ``hf_hub_download`` takes as ``tqdm_class``: its bytes go to the tracker, nothing is printed.

    It only downloads (rather than links) if a file changed on the Hub between
    two requests; then this keeps progress and cancel working.
    """

    tracker: _Tracker

    def __init__(self, *args, total=None, initial=0, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def update(self, n=1) -> None:
        self.tracker.check()
        self.tracker.advance(int(n or 0))

    def close(self) -> None:
        pass

    def set_description(self, *args, **kwargs) -> None:
        pass

    set_description_str = set_postfix_str = refresh = set_description


# ---- errors in plain words -------------------------------------------------------------------
def _name(entry: CatalogEntry) -> str:
    return f"{entry.name} ({entry.repo})"


@contextmanager
def _plain_errors(entry: CatalogEntry, endpoint: str, token, file: str | None = None):
    """Turn the Hub client's exceptions into one-sentence ``DownloadError``s (never showing the token)."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    licence_page = f"https://huggingface.co/{entry.repo}"
    if not token:  # the client then sends the stored login or $HF_TOKEN: a refusal is of that token
        from huggingface_hub import get_token

        token = get_token()
    try:
        yield
    except DownloadError:
        raise
    except OfflineModeIsEnabled:
        raise OfflineError(_offline_mode_message()) from None
    except GatedRepoError:
        if token:
            raise GatedModelError(
                f"The access token was refused for {_name(entry)}: accept the model's licence at {licence_page} "
                "with the account the token belongs to, or check that the token is right and can read models."
            ) from None
        raise GatedModelError(
            f"{_name(entry)} is a gated model: accept its licence at {licence_page} while logged in to "
            "Hugging Face, then give StoryStudio an access token of that account."
        ) from None
    except RevisionNotFoundError:
        raise DownloadError(f"{_name(entry)} has no version \"{entry.revision}\" on the model hub; "
                            "the catalog entry needs updating.") from None
    except RemoteEntryNotFoundError:
        raise DownloadError(f"The repository {entry.repo} has no file {file or '(unknown)'}; "
                            f"the catalog entry {entry.id} needs updating.") from None
    except RepositoryNotFoundError:
        if token or entry.gated:
            raise GatedModelError(
                f"{_name(entry)} could not be opened with this access token: check the token, and accept the "
                f"licence at {licence_page} with its account."
            ) from None
        raise DownloadError(f"The repository {entry.repo} was not found on the model hub (it may have been "
                            "removed or made private).") from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 401 and token:
            raise GatedModelError("The model hub did not accept the access token (it may be mistyped, expired or "
                                  "revoked); check it, or leave it out for models that are not gated.") from None
        raise DownloadError(f"The model hub refused the download of {_name(entry)} (HTTP error {status}); "
                            "try again later. What was downloaded so far is kept.") from None
    except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.ProxyError):
        raise OfflineError(_unreachable_message(endpoint)) from None
    except LocalEntryNotFoundError:  # the Hub stopped answering between two requests
        raise DownloadInterrupted(
            f"The model hub stopped answering while {entry.name} was being put in place. Everything downloaded "
            "is kept: try again to finish."
        ) from None
    except httpx2.TransportError:
        raise DownloadInterrupted(
            f"The connection to the model hub broke while downloading {entry.name}. What was downloaded so far "
            "is kept: try again and it continues from there."
        ) from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DownloadError(f"The disk is full: {entry.name} could not be saved in {hub_cache()}. Free some "
                                "space and try again; what was downloaded so far is kept.") from None
        raise


# ---- the download ----------------------------------------------------------------------------
@dataclass
class _File:
    path: str  # in the repository (a variant file, or the full-precision one the catalog falls back to)
    size: int | None
    etag: str | None


def _plan(entry: CatalogEntry, siblings) -> list[_File]:
    remote = {s.rfilename: s for s in siblings or []}
    plan = []
    for path in entry.files:
        for choice in entry.file_choices(path):
            sibling = remote.get(choice)
            if sibling is not None:
                lfs = sibling.lfs
                plan.append(_File(choice, lfs.size if lfs else sibling.size, lfs.sha256 if lfs else sibling.blob_id))
                break
        else:
            raise DownloadError(f"The repository {entry.repo} on the model hub has no file {path}; "
                                f"the catalog entry {entry.id} needs updating.")
    return plan


def _free_space(folder: Path) -> int:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def download(
    model: str | CatalogEntry,
    *,
    token: str | None = None,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
    endpoint: str | None = None,
    retries: int = 3,
) -> Path:
    """Download a catalog model into the Hugging Face cache and return its snapshot folder.

    ``model``: a catalog id (``"sdxl-base"``), a Hub repository the catalog
    names, or a ``CatalogEntry``. Already installed: returns at once, without a
    request. ``token``: an access token for gated repositories (``None`` uses
    the login of the ``hf`` tool, if any). ``progress`` gets a
    ``DownloadProgress`` at most every ``REPORT_SECONDS`` and at every stage;
    ``cancelled`` is called for every piece of data received and between requests, and when it
    returns true the download stops with ``DownloadCancelled``. A broken
    connection is resumed up to ``retries`` times (with short waits), then
    ``DownloadInterrupted``. Every failure is a ``DownloadError`` with a
    plain message; partial files are kept, so calling this again continues
    where it stopped. Runs in the caller's thread (a worker thread in the app).
    """
    entry = _entry(model)
    tracker = _Tracker(entry.id, progress, cancelled)
    found = snapshot_path(entry)
    if found is not None:
        size = installed_size(entry)
        tracker.set(stage="done", bytes_done=size, bytes_total=size, files_done=len(entry.files),
                    files_total=len(entry.files))
        return found

    from huggingface_hub import HfApi

    if offline_mode():
        raise OfflineError(_offline_mode_message())
    endpoint = hub_endpoint(endpoint)
    tracker.set(stage="checking", files_total=len(entry.files))
    tracker.check()
    with _plain_errors(entry, endpoint, token):
        info = HfApi(endpoint=endpoint, token=token).model_info(entry.repo, revision=entry.revision,
                                                               files_metadata=True)
    commit = info.sha
    if not commit:
        raise DownloadError(f"The model hub did not say which version of {entry.repo} to download; try again later.")
    plan = _plan(entry, info.siblings)
    storage = repo_storage(entry.repo)
    blobs = storage / "blobs"
    already = 0
    for f in plan:
        blob = blobs / f.etag if f.etag else None
        if blob is not None and blob.is_file():
            already += blob.stat().st_size
        elif blob is not None and blob.with_name(f.etag + ".incomplete").is_file():
            already += min(blob.with_name(f.etag + ".incomplete").stat().st_size, f.size or 0)
    total = sum(f.size or 0 for f in plan)
    tracker.set(stage="downloading", bytes_total=total, bytes_done=already, resumed_bytes=already,
                files_total=len(plan))
    needed = total - already
    free = _free_space(storage)
    if needed > free:
        raise DownloadError(f"{entry.name} needs {_gb(needed)} of free disk space in {hub_cache()}, but only "
                            f"{_gb(free)} are free. Free some space, or move the Hugging Face cache (HF_HOME) "
                            "to a larger disk.")
    (storage / "snapshots").mkdir(parents=True, exist_ok=True)  # a cache folder without it counts as damaged
    blobs.mkdir(parents=True, exist_ok=True)
    for number, f in enumerate(plan):
        tracker.set(stage="downloading", file=f.path, files_done=number)
        _fetch(entry, commit, f, endpoint, token, tracker, retries)
    tracker.set(stage="installing", file="", files_done=len(plan))
    _install(entry, commit, plan, endpoint, token, tracker)
    found = snapshot_path(entry)
    if found is None:  # pragma: no cover - every file was just linked
        raise DownloadError(f"{entry.name} was downloaded but could not be put in place in {hub_cache()}.")
    tracker.set(stage="done", bytes_done=tracker.state.bytes_total)
    return found


def _lock(entry: CatalogEntry, etag: str, tracker: _Tracker):
    """The lock huggingface_hub itself takes for this file, so two programs never write it at once."""
    from filelock import FileLock, Timeout

    path = hub_cache() / ".locks" / repo_storage(entry.repo).name / f"{etag}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    waited = False
    while True:
        tracker.check()
        try:
            lock.acquire(timeout=0.25)
            return lock
        except Timeout:
            if not waited:
                waited = True
                tracker.set(stage="waiting")  # another program is downloading this file right now


def _fetch(entry: CatalogEntry, commit: str, f: _File, endpoint: str, token, tracker: _Tracker, retries: int) -> None:
    """One file into ``blobs/<etag>``: resumed from its ``.incomplete`` part, checked, then moved into place."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    blobs = repo_storage(entry.repo) / "blobs"
    if f.etag and (blobs / f.etag).is_file():
        return
    url = hub_url = hf_hub_url(entry.repo, f.path, revision=commit, endpoint=endpoint)
    tracker.check()
    with _plain_errors(entry, endpoint, token, f.path):
        meta = get_hf_file_metadata(hub_url, token=token, endpoint=endpoint)
    etag = meta.etag or f.etag
    if not etag:
        raise DownloadError(f"The model hub gave no checksum for {f.path}; it cannot be downloaded safely.")
    if meta.size is not None and meta.size != f.size:
        # the metadata of the file itself wins over the repository listing
        tracker.set(bytes_total=tracker.state.bytes_total + meta.size - (f.size or 0))
        f.size = meta.size
    if etag != f.etag:
        f.etag = etag
        if (blobs / etag).is_file():
            tracker.advance(f.size or 0)
            return
    if meta.location and meta.location != hub_url:
        url = meta.location
    headers = build_hf_headers(token=token)
    if urlparse(url).netloc != urlparse(hub_url).netloc:
        headers.pop("authorization", None)  # a signed address on another host: the token stays with the Hub
    blob = blobs / etag
    part = blobs / f"{etag}.incomplete"
    lock = _lock(entry, etag, tracker)
    try:
        if blob.is_file():  # another program finished it while we waited
            tracker.set(stage="downloading")
            return
        tracker.set(stage="downloading")
        attempt = 0
        while True:
            try:
                with _plain_errors(entry, endpoint, token, f.path):
                    _transfer(url, headers, part, f, tracker)
                break
            except (DownloadInterrupted, _ServerBusy) as exc:
                attempt += 1
                if attempt > retries:
                    if isinstance(exc, _ServerBusy):
                        raise DownloadError(f"The model hub kept failing (HTTP error {exc.status}) while sending "
                                            f"{f.path}; try again later. What was downloaded so far is kept.") from None
                    raise
                _wait(min(0.5 * 2 ** (attempt - 1), 4.0), tracker)
        tracker.set(stage="verifying")
        _verify(part, f, etag, entry, tracker)
        os.replace(part, blob)
        try:
            os.chmod(blob, 0o644 & ~_umask())
        except OSError:
            pass
    finally:
        lock.release()


class _ServerBusy(Exception):
    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _wait(seconds: float, tracker: _Tracker) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        tracker.check()
        time.sleep(min(0.05, max(0.0, end - time.monotonic())))


def _transfer(url: str, headers: dict, part: Path, f: _File, tracker: _Tracker) -> None:
    """Append the rest of the file to ``part`` with a ``Range`` request (a whole GET when nothing is there)."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session, hf_raise_for_status

    have = part.stat().st_size if part.exists() else 0
    if f.size is not None and have > f.size:  # longer than the file: it cannot be a start of it
        part.unlink()
        tracker.rewind(have)
        have = 0
    if f.size is not None and have == f.size:
        return
    request = dict(headers, **{"Accept-Encoding": "identity"})
    if have:
        request["Range"] = f"bytes={have}-"
    timeout = httpx2.Timeout(constants.HF_HUB_DOWNLOAD_TIMEOUT)
    with get_session().stream("GET", url, headers=request, timeout=timeout, follow_redirects=True) as response:
        if response.status_code == 416:  # nothing left to send: the checksum decides whether the part is right
            return
        if response.status_code in (429, 500, 502, 503, 504):
            raise _ServerBusy(response.status_code)
        if response.status_code >= 400:
            response.read()
            hf_raise_for_status(response)
        if have and response.status_code != 206:  # the server ignored the Range header: start over
            tracker.rewind(have)
            have = 0
        tracker.check()
        with open(part, "ab" if have else "wb") as out:
            for chunk in response.iter_bytes():  # as the network delivers it: nothing buffered is lost on a break
                out.write(chunk)
                have += len(chunk)
                tracker.advance(len(chunk))
                if f.size is not None and have > f.size:
                    break  # more than announced: the checks below reject it
                tracker.check()


def _verify(part: Path, f: _File, etag: str, entry: CatalogEntry, tracker: _Tracker) -> None:
    """Size, then checksum: the SHA-256 the Hub gives for large (LFS) files, or the git blob id of small ones."""
    size = part.stat().st_size if part.exists() else 0
    if f.size is not None and size != f.size:
        part.unlink(missing_ok=True)
        raise CorruptDownloadError(
            f"{f.path} of {entry.name} arrived with {size:,} bytes instead of the {f.size:,} the model hub announced; "
            "the damaged copy was deleted. Try the download again."
        )
    if re.fullmatch(r"[0-9a-f]{64}", etag):
        digest = hashlib.sha256()
    elif COMMIT_ID.fullmatch(etag):
        digest = hashlib.sha1(b"blob %d\0" % size)
    else:
        return  # a checksum of a form StoryStudio does not know: the size check has to do
    with open(part, "rb") as src:
        while block := src.read(8 * CHUNK_BYTES):
            digest.update(block)
            tracker.check()
    if digest.hexdigest() != etag:
        part.unlink(missing_ok=True)
        raise CorruptDownloadError(
            f"{f.path} of {entry.name} arrived damaged (its checksum is not the one the model hub gives); "
            "the damaged copy was deleted. Try the download again."
        )


def _install(entry: CatalogEntry, commit: str, plan: list[_File], endpoint: str, token, tracker: _Tracker) -> None:
    """Link every file into the snapshot (``hf_hub_download`` finds each blob and only links it), the model's
    ``model_index.json`` (or other configuration) last, then point ``refs/<revision>`` at the commit."""
    from huggingface_hub import hf_hub_download

    bar = type("_Bar", (_QuietBar,), {"tracker": tracker})
    order = sorted(plan, key=lambda f: (f.path == "model_index.json", f.path.endswith(".json"), f.path))
    for f in order:
        tracker.check()
        with _plain_errors(entry, endpoint, token, f.path):
            hf_hub_download(entry.repo, f.path, revision=commit, cache_dir=str(hub_cache()), endpoint=endpoint,
                            token=token, tqdm_class=bar)
    if not COMMIT_ID.fullmatch(entry.revision):
        ref = repo_storage(entry.repo) / "refs" / entry.revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        tmp = ref.with_name(ref.name + ".storystudio-tmp")
        tmp.write_text(commit, encoding="utf-8")  # no newline, as the Hub client writes it
        os.replace(tmp, ref)

