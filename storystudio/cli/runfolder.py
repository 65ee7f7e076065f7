"""The ``--out`` folder of one render: one whole run in it at a time, never a mix of two.

A run is written into a staging folder (hidden, beside or inside ``--out``)
and moved into place only when it ends: the run's files, then
``manifest.json`` last, listing every file of the run (``files``). A run
already in the folder is replaced as a whole (its files, as its manifest lists
them, are removed); files that are not a run's are never touched. A render
that is refused, fails or is killed before it ends leaves ``--out`` as it was:
its staging folder is removed, and one left by a killed render is removed by
the next render into the same place.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from .base import UserError, interrupts

MANIFEST = "manifest.json"
#: Names a render gives its files; a folder holding one of them holds a run.
RUN_NAMES = re.compile(r"panel-\d{3,}\.png|sheet-.+\.png|reference-.+\.png")
STAGING = re.compile(r"\.(?:.+\.)?storystudio-render-(\d+)\.part")


class RunFolder:
    def __init__(self, out: Path) -> None:
        self.out = out
        self._staging: Path | None = None

    # ---- checks ---------------------------------------------------------------------------------------
    def check(self) -> None:
        """Refuse an output folder that cannot be made or written, before spending minutes on the model."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise UserError(f"{out} is a file, not a folder; choose another --out.")
        parent = self.nearest_existing()
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise UserError(f"cannot write into {parent}; choose another --out.")

    def nearest_existing(self) -> Path:
        parent = self.out.absolute()
        while not parent.exists():
            parent = parent.parent
        return parent

    def previous_files(self) -> list[str]:
        """The files of the run already in the folder (relative names), or [] when it holds none."""
        out = self.out
        if not out.is_dir():
            return []
        names: set[str] = set()
        manifest = out / MANIFEST
        if manifest.is_file():
            names.add(MANIFEST)
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError, RecursionError):
                data = {}
            if isinstance(data, dict):
                listed = data.get("files")
                if not isinstance(listed, list):  # manifests of earlier versions name each picture instead
                    listed = [entry.get("file") for key in ("panels", "reference_sheets")
                              for entry in data.get(key, []) if isinstance(entry, dict)]
                names.update(name for name in listed if isinstance(name, str) and self._ours(name))
        for entry in out.iterdir():
            if RUN_NAMES.fullmatch(entry.name):
                names.add(entry.name)
        if (out / "banks").is_dir() and names:
            names.update(f"banks/{p.name}" for p in (out / "banks").glob("*.safetensors"))
        return sorted(name for name in names if (out / name).is_file() and not (out / name).is_symlink())

    def _ours(self, name: str) -> bool:
        """A plain file name of the folder (or of its banks/), nothing that could lie outside it."""
        parts = name.split("/")
        return bool(name) and "\\" not in name and all(p not in ("", ".", "..") for p in parts) and (
            len(parts) == 1 or (len(parts) == 2 and parts[0] == "banks"))

    # ---- staging ----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh staging folder for the run; whatever is still in it when the block ends is removed."""
        home = self.out if self.out.is_dir() else self.nearest_existing()
        prefix = "" if home == self.out else f"{self.out.name}."
        self._remove_stale(home)
        folder = home / f".{prefix}storystudio-render-{os.getpid()}.part"
        try:
            # inside the try: a Ctrl+C landing just after the folder is made (it waits until then) removes it
            with interrupts.held():
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                self._staging = folder
            yield folder
        finally:
            with interrupts.held():
                shutil.rmtree(folder, ignore_errors=True)
            self._staging = None

    @staticmethod
    def _remove_stale(home: Path) -> None:
        """Staging folders left by renders that were killed (their process is gone)."""
        for entry in home.iterdir():
            match = STAGING.fullmatch(entry.name)
            if match and entry.is_dir() and not _alive(int(match.group(1))):
                shutil.rmtree(entry, ignore_errors=True)

    def commit(self, files: list[str], manifest: dict) -> None:
        """Move the run's ``files`` from the staging folder into ``--out`` and write its manifest, replacing
        the run that was there. Ctrl+C waits until this is done."""
        from .render import manifest_text

        staging = self._staging
        assert staging is not None, "commit() belongs inside staging()"
        with interrupts.held():
            (staging / MANIFEST).write_text(manifest_text(manifest), encoding="utf-8")
            if not self.out.exists():
                self.out.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging, self.out)  # the whole run appears at once
                return
            previous = self.previous_files()
            # first the old manifest goes: while files move, the folder claims no run at all
            (self.out / MANIFEST).unlink(missing_ok=True)
            for name in files:
                target = self.out / name
                target.parent.mkdir(exist_ok=True)
                os.replace(staging / name, target)
            for name in set(previous) - set(files) - {MANIFEST}:
                (self.out / name).unlink(missing_ok=True)
            banks = self.out / "banks"
            if banks.is_dir() and not any(banks.iterdir()):
                banks.rmdir()
            os.replace(staging / MANIFEST, self.out / MANIFEST)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # no cheap check: a folder of a live render must never go
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
