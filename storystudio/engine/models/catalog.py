"""The model catalog: the models StoryStudio offers to download, as data.

``resources/models.json`` names every file each model needs (so a download is
either complete or not installed), its Hub repository, licence, size and what
it is good for. A second catalog file named by ``$STORYSTUDIO_MODEL_CATALOG``
adds entries or replaces entries of the same id: for private mirrors, and for
tests that serve a tiny model from a local server.

Nothing here touches the network or imports torch at import time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ...project.limits import quote
from ...resources_path import resource

CATALOG_ENV = "STORYSTUDIO_MODEL_CATALOG"
FORMAT = "storystudio-models/1"
KINDS = ("base-sdxl", "base-sd15", "ip-adapter", "image-encoder", "motion-adapter", "sparsectrl", "controlnet-sdxl",
         "controlnet-sd15")
BASE_KINDS = {"base-sdxl": "sdxl", "base-sd15": "sd15"}
# ControlNets guide the picture models of one architecture; ``control`` says what their guide picture is.
CONTROLNET_KINDS = {"controlnet-sdxl": "sdxl", "controlnet-sd15": "sd15"}
CONTROLS = ("pose", "depth", "lineart")
# What a model is good for, in the words the Models dialog shows.
PURPOSES = ("general", "comic", "anime", "realistic", "low-memory", "cpu", "video", "poses", "depth", "line art")
_GLOB = set("*?[")


class CatalogError(ValueError):
    """The catalog file is malformed, or an id is not in it; the message says which in plain words."""


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    name: str
    kind: str
    repo: str
    files: tuple[str, ...]
    size_bytes: int
    licence: str
    revision: str = "main"
    variant: str | None = None
    size_approximate: bool = True
    licence_url: str = ""
    gated: bool = False
    gpu_memory_gb: float = 0.0
    good_for: tuple[str, ...] = ()
    description: str = ""
    control: str | None = None  # ControlNets: what the guide picture is (one of CONTROLS)

    @property
    def control_arch(self) -> str | None:
        """ControlNets: ``sd15`` or ``sdxl``, the picture models it guides; ``None`` for other entries."""
        return CONTROLNET_KINDS.get(self.kind)

    @property
    def arch(self) -> str | None:
        """``sd15`` or ``sdxl`` for base models, ``None`` for the video stage's parts."""
        return BASE_KINDS.get(self.kind)

    @property
    def is_base(self) -> bool:
        return self.kind in BASE_KINDS

    def file_choices(self, path: str) -> tuple[str, ...]:
        """The repository files that satisfy one catalog file: itself, then (for a variant file such as
        ``unet/diffusion_pytorch_model.fp16.safetensors``) the full-precision file of the same part."""
        if self.variant:
            marker = f".{self.variant}."
            folder, _, name = path.rpartition("/")
            if marker in name:
                plain = name.replace(marker, ".", 1)
                return path, f"{folder}/{plain}" if folder else plain
        return (path,)

    @classmethod
    def from_dict(cls, data: dict, where: str = "the model catalog") -> CatalogEntry:
        try:
            entry = cls(
                id=str(data["id"]), name=str(data["name"]), kind=str(data["kind"]), repo=str(data["repo"]),
                files=tuple(str(f) for f in data["files"]), size_bytes=int(data["size_bytes"]),
                licence=str(data["licence"]), revision=str(data.get("revision") or "main"),
                variant=data.get("variant") or None, size_approximate=bool(data.get("size_approximate", True)),
                licence_url=str(data.get("licence_url", "")), gated=bool(data.get("gated", False)),
                gpu_memory_gb=float(data.get("gpu_memory_gb", 0)), good_for=tuple(data.get("good_for", ())),
                description=str(data.get("description", "")),
                control=None if data.get("control") is None else str(data["control"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            name = data.get("id", "an entry") if isinstance(data, dict) else "an entry"
            raise CatalogError(f"{name} in {where} is incomplete or malformed ({exc}).") from None
        entry.check(where)
        return entry

    def check(self, where: str = "the model catalog") -> None:
        if not self.id or any(c.isspace() or c == "/" for c in self.id):
            raise CatalogError(f'"{self.id}" in {where} is not a usable id (no spaces or slashes).')
        if self.kind not in KINDS:
            raise CatalogError(f"{self.id} in {where} has the unknown kind {self.kind!r}; use one of {', '.join(KINDS)}.")
        if self.repo.count("/") != 1:
            raise CatalogError(f"{self.id} in {where} names the repository {self.repo!r}; write it as owner/name.")
        if not self.files:
            raise CatalogError(f"{self.id} in {where} names no files.")
        for path in self.files:
            # Every file is named, never a pattern: "installed" must mean every file is there.
            if _GLOB & set(path) or path.startswith("/") or ".." in path.split("/"):
                raise CatalogError(f"{self.id} in {where} names {path!r}; name each file exactly, without patterns.")
        if (self.kind in CONTROLNET_KINDS) != (self.control is not None) or (
                self.control is not None and self.control not in CONTROLS):
            raise CatalogError(f"{self.id} in {where}: a ControlNet names what it is guided by (control: "
                               f"{', '.join(CONTROLS)}), and nothing else does.")
        unknown = set(self.good_for) - set(PURPOSES)
        if unknown:
            raise CatalogError(f"{self.id} in {where} is good for {', '.join(sorted(unknown))}, which StoryStudio "
                               f"does not know; use {', '.join(PURPOSES)}.")


def _read(path: Path) -> list[CatalogEntry]:
    where = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"The model catalog {where} cannot be read ({exc.strerror or exc}).") from None
    except ValueError as exc:
        raise CatalogError(f"The model catalog {where} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("models"), list):
        raise CatalogError(f"{where} is not a StoryStudio model catalog (format {FORMAT}).")
    return [CatalogEntry.from_dict(item, where) for item in data["models"]]


@lru_cache(maxsize=8)
def _load(bundled: str, extra: str | None, extra_mtime: float | None) -> tuple[CatalogEntry, ...]:
    entries: dict[str, CatalogEntry] = {}
    for path in (bundled, extra):
        if not path:
            continue
        seen = set()
        for entry in _read(Path(path)):
            if entry.id in seen:
                raise CatalogError(f"The model catalog {path} names {entry.id} twice.")
            seen.add(entry.id)
            entries.pop(entry.id, None)  # an entry replaced by the extra catalog moves to the end
            entries[entry.id] = entry
    return tuple(entries.values())


def catalog() -> list[CatalogEntry]:
    """Every catalog entry, bundled first (in the order the Models dialog lists them)."""
    extra = os.environ.get(CATALOG_ENV) or None
    mtime = None
    if extra:
        try:
            mtime = Path(extra).stat().st_mtime
        except OSError:
            raise CatalogError(f"The model catalog {extra} named by {CATALOG_ENV} does not exist.") from None
    return list(_load(str(resource("models.json")), extra, mtime))


def get_entry(model_id: str) -> CatalogEntry:
    """The entry with this id, or the entry for this Hub repository (the first, where several share one)."""
    entries = catalog()
    for entry in entries:
        if entry.id == model_id:
            return entry
    for entry in entries:
        if entry.repo == model_id:
            return entry
    # the picture models by name (the whole catalog, with its ControlNets and adapters, would be a paragraph)
    named = [e.id for e in entries if e.is_base] or [e.id for e in entries]
    more = " or another id that storystudio models list shows" if len(named) < len(entries) else ""
    raise CatalogError(f'{quote(model_id)} is not in the model catalog; choose one of: {", ".join(named)}{more}.')


def find_entry(model_id: str) -> CatalogEntry | None:
    try:
        return get_entry(model_id)
    except CatalogError:
        return None


def base_models() -> list[CatalogEntry]:
    return [e for e in catalog() if e.is_base]


def recommend(gpu_memory_gb: float | None, purpose: str | None = None) -> CatalogEntry:
    """The base model to offer first on this computer.

    ``gpu_memory_gb``: the GPU's memory (see ``detect_gpu_memory_gb``), or
    ``None`` for a computer without a usable GPU. Among the base models whose
    recommended memory fits, the first in catalog order is chosen, or the
    first that is good for ``purpose`` (``comic``, ``anime``, ``realistic``...)
    when one fits. Without a GPU, or when nothing fits, a model that runs on
    the CPU or in little memory.
    """
    bases = base_models()
    if not bases:
        raise CatalogError("The model catalog has no base models.")
    if purpose is not None and purpose not in PURPOSES:
        raise CatalogError(f'"{purpose}" is not a purpose StoryStudio knows; use one of {", ".join(PURPOSES)}.')
    if gpu_memory_gb is None:
        fits = [e for e in bases if "cpu" in e.good_for]
    else:
        fits = [e for e in bases if e.gpu_memory_gb <= gpu_memory_gb]
    if not fits:
        small = [e for e in bases if "low-memory" in e.good_for or "cpu" in e.good_for]
        fits = small or sorted(bases, key=lambda e: e.gpu_memory_gb)[:1]
    if purpose:
        for entry in fits:
            if purpose in entry.good_for:
                return entry
    return fits[0]


def detect_gpu_memory_gb() -> float | None:
    """Memory of the GPU the engine would use, in GiB; ``None`` without one (CPU only).

    Apple GPUs share the computer's memory; two thirds of it is what a model can count on.
    """
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory / 2**30
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return None
        return total / 2**30 * 2 / 3
    return None
