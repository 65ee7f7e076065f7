"""A stand-in for the Hugging Face Hub on 127.0.0.1, for download tests without network.

``FakeHub`` serves model repositories (a folder written by ``create_tiny_model``,
or a dict of files) the way the Hub answers the ``huggingface_hub`` client
(2.x), so that with ``HF_ENDPOINT`` pointing at it the real client and
StoryStudio's downloader fetch from it:

- ``GET /api/models/{repo}[/revision/{rev}]``: the repository's commit (``sha``)
  and its files (``siblings``, with ``size``, ``blobId`` and, for LFS files,
  ``lfs.sha256``), as ``HfApi.model_info(files_metadata=True)`` reads them;
- ``GET /api/models/{repo}/tree/{rev}``: the file listing ``snapshot_download`` reads;
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: the file, with ``X-Repo-Commit``,
  ``ETag`` (the git blob id) or, for LFS files (weights), ``X-Linked-Etag``
  (the content's SHA-256) and ``X-Linked-Size``; ``Content-Length``,
  ``Accept-Ranges`` and ``Range`` requests (206 / 416) for resuming.

It never sends ``X-Xet-Hash``, so the client never takes the hf_xet path.

Faults for the tests: ``throttle`` (bytes per second), ``drop_after[path] = n``
(the next GET of that file closes the connection after n bytes of body),
``corrupt`` (serve different bytes of the announced size: a checksum
mismatch), ``announce_size[path] = n`` (the metadata gives a wrong size),
``fail[path] = status`` (answer GETs of the file with that status), and gated
repositories that need ``Authorization: Bearer TOKEN``. Every request is logged
(``log``; tokens are not kept) and ``body_bytes()`` counts what was served.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

LFS_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx", ".gguf")


def git_blob_id(data: bytes) -> str:
    """The id git gives a file's content: what the Hub sends as a small file's ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubFile:
    path: str
    data: bytes

    @property
    def lfs(self) -> bool:
        return self.path.endswith(LFS_SUFFIXES)

    @property
    def blob_id(self) -> str:
        return git_blob_id(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_id


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile]
    commit: str
    revision: str = "main"
    token: str | None = None  # a gated repository: files need this token

    @property
    def size(self) -> int:
        return sum(len(f.data) for f in self.files.values())


@dataclass
class Request:
    method: str
    path: str
    status: int
    range_start: int = 0
    body_bytes: int = 0
    authorized: bool = False


@dataclass
class FakeHub:
    host: str = "127.0.0.1"
    repos: dict[str, HubRepo] = field(default_factory=dict)
    throttle: float | None = None
    drop_after: dict[str, int] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)
    announce_size: dict[str, int] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)
    log: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- content
    def add_repo(self, repo_id: str, folder: str | Path | None = None, files: dict[str, bytes] | None = None,
                 token: str | None = None, revision: str = "main") -> HubRepo:
        """Serve a folder (every file under it) or a dict of files as ``repo_id``; returns the repository."""
        content: dict[str, bytes] = dict(files or {})
        if folder is not None:
            root = Path(folder)
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    content[path.relative_to(root).as_posix()] = path.read_bytes()
        hub_files = {p: HubFile(p, d) for p, d in sorted(content.items())}
        commit = hashlib.sha1(repr(sorted((p, f.etag) for p, f in hub_files.items())).encode()).hexdigest()
        repo = HubRepo(repo_id, hub_files, commit, revision, token)
        self.repos[repo_id] = repo
        return repo

    # ---- server
    @property
    def url(self) -> str:
        assert self._server is not None, "start the hub first"
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- what happened
    def record(self, request: Request) -> None:
        with self._lock:
            self.log.append(request)

    def requests(self, method: str | None = None, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.log if (method is None or r.method == method)
                    and (path is None or r.path.endswith("/" + path))]

    def body_bytes(self, path: str | None = None) -> int:
        """Bytes of file content served by GETs (of one file, or of all)."""
        return sum(r.body_bytes for r in self.requests("GET", path) if "/resolve/" in r.path)

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()


_API = re.compile(r"^/api/models/([^/]+/[^/]+)(?:/(revision|tree)/([^/]+)(?:/(.*))?)?$")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeHub

    def log_message(self, format, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    # ---- helpers
    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.entry.status = status  # logged before the answer leaves: a test reading the log never runs ahead
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data, headers: dict | None = None) -> None:
        self._send(200, json.dumps(data).encode(), dict({"Content-Type": "application/json"}, **(headers or {})))

    def _error(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(status, body, dict({"X-Error-Code": code, "X-Error-Message": message,
                                       "Content-Type": "application/json"}, **(headers or {})))

    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "").startswith("Bearer ")

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[len("Bearer "):] if auth.startswith("Bearer ") else None

    def _route(self, method: str) -> None:
        path = unquote(urlparse(self.path).path)
        self.entry = Request(method, urlparse(self.path).path, 0, authorized=self._authorized())
        self.fake.record(self.entry)
        if (m := _API.match(path)) and method == "GET":
            return self._api(m.group(1), m.group(2) or "revision", m.group(3) or "main", m.group(4) or "")
        if m := _RESOLVE.match(path):
            return self._resolve(method, m.group(1), m.group(2), m.group(3))
        self._error(404, "EntryNotFound", "Not found")

    def _repo(self, repo_id: str, revision: str) -> HubRepo | None:
        repo = self.fake.repos.get(repo_id)
        if repo is None:
            # The Hub answers 401 for a repository that does not exist or that this user may not see.
            self._error(401, "RepoNotFound", "Repository not found")
            return None
        if revision not in (repo.revision, repo.commit):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return repo

    # ---- /api/models/...
    def _api(self, repo_id: str, what: str, revision: str, sub: str) -> None:
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        if what == "tree":
            entries, folders = [], set()
            for f in repo.files.values():
                if sub and not f.path.startswith(sub.rstrip("/") + "/"):
                    continue
                parts = f.path.split("/")
                for i in range(1, len(parts)):
                    folders.add("/".join(parts[:i]))
                item = {"type": "file", "oid": f.blob_id, "size": self._size(f), "path": f.path}
                if f.lfs:
                    item["lfs"] = {"oid": f.sha256, "size": self._size(f), "pointerSize": 134}
                entries.append(item)
            entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": p} for p in sorted(folders)]
            return self._json(entries)
        siblings = []
        for f in repo.files.values():
            item = {"rfilename": f.path, "size": self._size(f), "blobId": f.blob_id}
            if f.lfs:
                item["lfs"] = {"sha256": f.sha256, "size": self._size(f), "pointerSize": 134}
            siblings.append(item)
        self._json({"_id": repo.commit[:24], "id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.commit,
                    "private": False, "gated": "manual" if repo.token else False, "disabled": False,
                    "library_name": "diffusers", "tags": ["diffusers"], "siblings": siblings,
                    "lastModified": "2024-01-01T00:00:00.000Z"})

    def _size(self, f: HubFile) -> int:
        return self.fake.announce_size.get(f.path, len(f.data))

    # ---- /{repo}/resolve/{rev}/{path}
    def _resolve(self, method: str, repo_id: str, revision: str, path: str) -> None:
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        if repo.token is not None:
            token = self._token()
            if token is None:
                return self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access "
                                   "to it and be authenticated to access it. Please log in.")
            if token != repo.token:
                return self._error(403, "GatedRepo", f"Access to model {repo_id} is restricted and you are not in "
                                   "the authorized list.")
        f = repo.files.get(path)
        commit = {"X-Repo-Commit": repo.commit}
        if f is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist on {revision}", commit)
        size = self._size(f)
        headers = dict(commit, **{"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"})
        if f.lfs:
            headers.update({"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": size, "ETag": f'"{f.sha256}"'})
        else:
            headers["ETag"] = f'"{f.blob_id}"'
        if method == "HEAD":
            self.entry.status = 200
            self.send_response(200)
            for key, value in headers.items():
                self.send_header(key, str(value))
            self.send_header("Content-Length", str(size))
            self.end_headers()
            return
        if path in self.fake.fail:
            return self._error(self.fake.fail[path], "ServerError", "The server is having a bad day")
        data = f.data
        if path in self.fake.corrupt:
            data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        start, status = 0, 200
        requested = self.headers.get("Range")
        if requested and (m := re.fullmatch(r"bytes=(\d+)-(\d*)", requested.strip())):
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else len(data) - 1
            self.entry.range_start = start
            if start >= len(data):
                self.entry.status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = data[start:end + 1]
            status = 206
            headers["Content-Range"] = f"bytes {start}-{start + len(data) - 1}/{len(f.data)}"
        self.entry.status = status
        self.send_response(status)
        for key, value in headers.items():
            if key != "X-Linked-Size":
                self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        drop = self.fake.drop_after.pop(path, None)
        sent = self._stream(data, drop)
        if drop is not None and sent < len(data):
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _stream(self, data: bytes, drop: int | None) -> int:
        sent, chunk = 0, 16 * 1024
        limit = len(data) if drop is None else min(drop, len(data))
        started = time.monotonic()
        while sent < limit:
            piece = data[sent:min(sent + chunk, limit)]
            with self.fake._lock:  # counted before it is sent, so the count never lags behind the client
                self.entry.body_bytes += len(piece)
            try:
                self.wfile.write(piece)
                self.wfile.flush()
            except OSError:  # the client went away (a cancelled download)
                self.close_connection = True
                return sent
            sent += len(piece)
            if self.fake.throttle:
                ahead = sent / self.fake.throttle - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        return sent


# ---- pointing StoryStudio and huggingface_hub at a FakeHub, in a test --------------------------
def use_hub(monkeypatch, home: Path, hub: FakeHub | None = None) -> Path:
    """Isolate the Hugging Face cache, token, StoryStudio's models folder and catalog under ``home``, switch
    offline mode and hf_xet off and point ``HF_ENDPOINT`` at ``hub``. Returns the Hugging Face cache folder.

    huggingface_hub reads its environment once, at import: the constants it uses later are patched too.
    """
    from huggingface_hub import constants

    cache = home / "hf-cache"
    hf_home = home / "hf-home"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
    monkeypatch.setenv("STORYSTUDIO_MODELS_DIR", str(home / "storystudio-models"))
    monkeypatch.delenv("STORYSTUDIO_MODEL_CATALOG", raising=False)
    if hub is not None:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
    return cache


def catalog_item(repo: HubRepo, entry_id: str, files: list[str] | None = None, kind: str = "base-sd15",
                 **extra) -> dict:
    """A model catalog entry (as JSON data) for a repository of the hub: every file, or the ones given."""
    return dict(dict(id=entry_id, name=f"Tiny {entry_id}", kind=kind, repo=repo.repo_id,
                     files=list(files if files is not None else repo.files), size_bytes=repo.size,
                     size_approximate=False, licence="test licence", gated=repo.token is not None,
                     gpu_memory_gb=1, good_for=["general"]), **extra)


def write_catalog(monkeypatch, path: Path, *items: dict) -> Path:
    """An extra model catalog with these entries, named by ``$STORYSTUDIO_MODEL_CATALOG``."""
    path.write_text(json.dumps({"format": "storystudio-models/1", "models": list(items)}), encoding="utf-8")
    monkeypatch.setenv("STORYSTUDIO_MODEL_CATALOG", str(path))
    return path
