"""The models on this computer: what is installed where, importing models, removing them.

Three places hold models (``models.model_folders()``):

- the Hugging Face cache: catalog downloads, and whatever other tools fetched;
- StoryStudio's own models folder: single-file checkpoints imported by copying
  them there (pickled ``.ckpt`` files only with explicit consent, and then
  converted to ``.safetensors``), and diffusers folders copied on request;
- folders the user added where they are (``linked-folders.json`` in the models
  folder): StoryStudio reads them, and removing one only forgets it.

Removing deletes StoryStudio's own copy, or a repository (or the catalog
model's files) from the Hugging Face cache through huggingface_hub's cache API,
and never anything the user only pointed StoryStudio at.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from .base import LINKED_FOLDERS_FILE, SUPPORTED_PIPELINES, folder_arch, hub_cache, linked_folders, model_folders, path_size, repo_storage
from .catalog import CatalogEntry, catalog, find_entry
from .downloads import (
    CancelCheck,
    DownloadCancelled,
    DownloadProgress,
    ProgressCallback,
    _Tracker,
    installed_size,
    partial_bytes,
    snapshot_path,
)
from .checks import check_checkpoint
from .loading import check_model_folder, detect_checkpoint_arch, missing_parts, verify_folder

PICKLED_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth")
_ARCH_KINDS = {"sd15": "base-sd15", "sd2": "base-sd15", "sdxl": "base-sdxl"}


@dataclass(frozen=True)
class InstalledModel:
    """One model on this computer, as the Models dialog lists it.

    ``id`` is what ``remove_model`` takes; ``load_id`` what ``load_model``
    takes. ``source``: ``catalog`` (a catalog model in the Hugging Face cache),
    ``hub-cache`` (another repository in that cache), ``imported`` (a copy in
    StoryStudio's models folder) or ``linked`` (a folder the user added where
    it is). ``state`` is ``partial`` for a catalog download that has not
    finished (``size_bytes`` is then what it left on disk). ``owned``: whether
    removing it deletes files (false only for linked folders).
    """

    id: str
    name: str
    kind: str
    arch: str | None
    source: str
    where: Path
    size_bytes: int
    load_id: str
    owned: bool = True
    state: str = "installed"
    catalog_id: str | None = None


def _models_dir() -> Path:
    return model_folders()["StoryStudio models"]


# ---- listing ---------------------------------------------------------------------------------
def installed_models() -> list[InstalledModel]:
    """Every model on this computer: catalog models (and unfinished catalog downloads), other Stable
    Diffusion models in the Hugging Face cache, imported copies and linked folders. No network."""
    found: list[InstalledModel] = []
    listed = set()  # repositories shown as catalog models
    for entry in catalog():
        snapshot = snapshot_path(entry)
        if snapshot is not None:
            listed.add(entry.repo)
            found.append(InstalledModel(entry.id, entry.name, entry.kind, entry.arch, "catalog", snapshot,
                                        installed_size(entry), entry.id, catalog_id=entry.id))
        elif (left := partial_bytes(entry)) > 0:
            found.append(InstalledModel(entry.id, entry.name, entry.kind, entry.arch, "catalog",
                                        repo_storage(entry.repo), left, entry.id, state="partial",
                                        catalog_id=entry.id))
    found += [m for m in _hub_cache_models() if m.id not in listed]
    found += _own_models()
    for folder in linked_folders():
        arch = folder_arch(folder) if folder.is_dir() else None
        if arch and not missing_parts(folder):
            found.append(InstalledModel(str(folder), folder.name, _ARCH_KINDS[arch], arch, "linked", folder,
                                        path_size(folder), str(folder), owned=False))
    return found


def _hub_cache_models() -> list[InstalledModel]:
    """Complete Stable Diffusion pipelines other tools (or earlier versions) put in the Hugging Face cache."""
    info = _cache_info()
    found = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id) if info else []:
        if repo.repo_type != "model":
            continue
        # the revision "main" points to first; a snapshot a download has not finished does not count
        for rev in sorted(repo.revisions, key=lambda r: "main" not in r.refs):
            arch = folder_arch(Path(rev.snapshot_path))
            if arch and not missing_parts(rev.snapshot_path):
                found.append(InstalledModel(repo.repo_id, repo.repo_id, _ARCH_KINDS[arch], arch, "hub-cache",
                                            Path(rev.snapshot_path), repo.size_on_disk, repo.repo_id))
                break
    return found


def _own_models() -> list[InstalledModel]:
    """Checkpoints and folders imported into StoryStudio's models folder."""
    own = _models_dir()
    found = []
    for entry in sorted(own.iterdir()) if own.is_dir() else ():
        arch = None
        if entry.suffix == ".safetensors" and entry.is_file():
            try:
                arch = detect_checkpoint_arch(entry)
            except ModelError:
                arch = None
        elif entry.is_dir() and not missing_parts(entry):
            arch = folder_arch(entry)
        if arch:
            found.append(InstalledModel(str(entry), entry.name, _ARCH_KINDS[arch], arch, "imported", entry,
                                        path_size(entry), str(entry)))
    return found


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


# ---- importing -------------------------------------------------------------------------------
def import_model(
    path: str | Path,
    allow_pickle: bool = False,
    copy: bool = False,
    progress: ProgressCallback | None = None,
    cancelled: CancelCheck | None = None,
) -> InstalledModel:
    """Add a model the user has: a single ``.safetensors`` checkpoint, or a diffusers folder.

    A checkpoint must be a whole SD1.x, SD2.x or SDXL model (found from its
    tensor names: a UNet, a VAE and the family's text encoders; its header is
    checked to the last tensor, so a cut-off copy is refused) and is copied
    into StoryStudio's models folder.
    A pickled checkpoint (``.ckpt``, ``.bin``, ``.pt``) can run code when
    opened, so it is refused unless ``allow_pickle``; then it is read with
    ``torch.load(weights_only=True)`` (which refuses anything but tensors) and
    saved as ``.safetensors``. A diffusers folder is checked (its
    ``model_index.json``, every part it names with its configuration and
    weights headers, and each part built without its weights to compare
    every tensor's shape: ``loading.verify_folder``) and then used where it is,
    unless ``copy``. Copying reports ``DownloadProgress`` (stage ``copying``)
    and stops with ``DownloadCancelled`` when ``cancelled()`` says so, leaving
    nothing behind. Raises ``ModelError`` with a plain message.
    """
    source = Path(path).expanduser()
    if not source.exists():
        raise ModelError(f"{source} does not exist.")
    tracker = _Tracker(source.name, progress, cancelled)
    if source.is_dir():
        return _import_folder(source, copy, tracker)
    suffix = source.suffix.lower()
    if suffix in PICKLED_SUFFIXES:
        if not allow_pickle:
            raise ModelError(
                f"{source.name} is a pickled checkpoint, which can run code when opened. Use a .safetensors file, "
                "or allow pickled checkpoints explicitly (StoryStudio then reads only its weights and converts it)."
            )
        return _import_pickled(source, tracker)
    if suffix != ".safetensors":
        raise ModelError(f"{source.name} is not a model file StoryStudio knows (a .safetensors checkpoint or a "
                         "diffusers folder).")
    arch = check_checkpoint(source)  # refuses a damaged file, or what is not a whole SD1.x, SD2.x or SDXL model
    target = _target_name(source.stem, source)
    if target.exists():  # the same file imported before
        return _imported(target, arch)
    _copy_file(source, target, tracker)
    return _imported(target, arch)


def _imported(target: Path, arch: str) -> InstalledModel:
    return InstalledModel(str(target), target.name, _ARCH_KINDS[arch], arch, "imported", target, path_size(target),
                          str(target))


def _target_name(stem: str, source: Path | None) -> Path:
    """A free name in the models folder; the same name with the same size counts as the same file."""
    folder = _models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_. " else "_" for c in stem).strip() or "model"
    for n in range(1, 1000):
        candidate = folder / (f"{safe}.safetensors" if n == 1 else f"{safe}-{n}.safetensors")
        if not candidate.exists():
            return candidate
        if source is not None and candidate.stat().st_size == source.stat().st_size:
            return candidate
    raise ModelError(f"The models folder {folder} already holds too many models called {safe}.")


def _copy_bytes(source: Path, dest: Path, tracker: _Tracker) -> None:
    """Copy one file in 8 MiB blocks, reporting each and stopping (DownloadCancelled) when asked."""
    with open(source, "rb") as src, open(dest, "wb") as dst:
        while block := src.read(8 << 20):
            dst.write(block)
            tracker.advance(len(block))
            tracker.check()


def _copy_file(source: Path, target: Path, tracker: _Tracker) -> None:
    """Copy with progress and cancel, to a temporary name first: a stopped copy leaves nothing."""
    total = source.stat().st_size
    tmp = target.with_name(target.name + ".part")
    tracker.set(stage="copying", file=source.name, bytes_total=total, files_total=1)
    try:
        _copy_bytes(source, tmp, tracker)
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, DownloadCancelled):
            raise ModelError(f"{source.name} could not be copied into {target.parent} ({exc.strerror or exc}).") from None
        raise
    tracker.set(stage="done", files_done=1)


def _import_folder(source: Path, copy: bool, tracker: _Tracker) -> InstalledModel:
    index, cls_name = check_model_folder(source, str(source),
                                         "StoryStudio needs .safetensors weights for every part.")
    verify_folder(source, index, str(source))  # every part builds from its configuration and fits its weights
    arch = SUPPORTED_PIPELINES[cls_name]
    kind = _ARCH_KINDS[arch]
    if not copy:
        _link(source.resolve())
        where = source.resolve()
        return InstalledModel(str(where), where.name, kind, arch, "linked", where, path_size(where), str(where),
                              owned=False)
    folder = _models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    n = 1
    while target.exists():
        n += 1
        target = folder / f"{source.name}-{n}"
    files = [p for p in source.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    tmp = target.with_name(target.name + ".part")
    tracker.set(stage="copying", bytes_total=total, files_total=len(files))
    try:
        for number, file in enumerate(files):
            tracker.set(file=file.relative_to(source).as_posix(), files_done=number)
            dest = tmp / file.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            _copy_bytes(file, dest, tracker)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tracker.set(stage="done", files_done=len(files))
    return InstalledModel(str(target), target.name, kind, arch, "imported", target, total, str(target))


def _registry() -> Path:
    return _models_dir() / LINKED_FOLDERS_FILE


def _write_links(paths: list[Path]) -> None:
    registry = _registry()
    registry.parent.mkdir(parents=True, exist_ok=True)
    tmp = registry.with_name(registry.name + ".part")
    data = {"format": "storystudio-linked-folders/1", "folders": [{"path": str(p)} for p in paths]}
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, registry)


def _link(folder: Path) -> None:
    paths = linked_folders()
    if folder not in paths:
        _write_links(paths + [folder])


def _import_pickled(source: Path, tracker: _Tracker) -> InstalledModel:
    import pickle

    import torch
    from safetensors.torch import save_file

    tracker.set(stage="converting", file=source.name, files_total=1)
    try:
        try:
            data = torch.load(str(source), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # an old (not zip) pickle cannot be memory-mapped
            if "mmap" not in str(exc):
                raise
            data = torch.load(str(source), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelError(f"{source.name} holds more than weights (objects or code), so StoryStudio does not open "
                         "it. Ask its author for a .safetensors version.") from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise ModelError(f"{source.name} is not a readable checkpoint ({exc}).") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelError(f"{source.name} does not hold a checkpoint's weights.")
    tensors, seen = {}, set()
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            continue  # training state (epoch, step counters) is not part of the model
        storage = (value.untyped_storage().data_ptr(), value.storage_offset())
        # safetensors refuses tensors that share memory: a shared one is written as a copy of its own
        value = value.contiguous()
        if storage in seen:
            value = value.clone()
        seen.add(storage)
        tensors[key] = value
    target = _target_name(source.stem, None)
    tmp = target.with_name(target.name + ".part")
    try:
        save_file(tensors, str(tmp), metadata={"format": "pt", "converted_from": source.name})
        arch = check_checkpoint(tmp)
        os.replace(tmp, target)
    except ModelError as exc:
        tmp.unlink(missing_ok=True)
        raise ModelError(str(exc).replace(tmp.name, source.name)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tracker.set(stage="done", files_done=1, bytes_done=path_size(target), bytes_total=path_size(target))
    return _imported(target, arch)


# ---- removing --------------------------------------------------------------------------------
def remove_model(model_id: str) -> int:
    """Remove a model and return the bytes freed.

    ``model_id``: an ``InstalledModel.id`` (a catalog id, a Hub repository in
    the cache, or a path in StoryStudio's models folder or a linked folder; a
    file name in the models folder works too). A catalog model's files are
    deleted from the Hugging Face cache (with the whole repository, unless
    another installed catalog model uses the same one), unfinished downloads
    included; an imported copy is deleted; a linked folder is only forgotten
    (0 bytes freed: its files stay where they are).
    """
    entry = find_entry(model_id)
    if entry is not None and entry.id == model_id:
        return _remove_catalog(entry)
    own = _models_dir()
    for folder in linked_folders():
        if model_id in (str(folder), folder.name) and not _inside(folder, own):
            _write_links([p for p in linked_folders() if p != folder])
            return 0
    candidate = Path(model_id).expanduser()
    if not candidate.is_absolute():
        candidate = own / model_id
    if candidate.exists() and _inside(candidate, own) and candidate.resolve() != own.resolve():
        freed = path_size(candidate)
        if candidate.is_dir():
            shutil.rmtree(candidate)
        else:
            candidate.unlink()
        return freed
    if "/" in model_id and not Path(model_id).is_absolute():
        if entry is not None:  # a repository the catalog names
            return _remove_catalog(entry)
        freed = _remove_repo(model_id)
        if freed is not None:
            return freed
    raise ModelError(f'"{model_id}" is not a model StoryStudio can remove; "storystudio models list" shows them.')


def _cache_info():
    from huggingface_hub import scan_cache_dir

    cache = hub_cache()
    if not cache.is_dir():
        return None
    try:
        return scan_cache_dir(cache)
    except Exception:  # a damaged cache must not stop the listing  # noqa: BLE001
        return None


def _remove_repo(repo_id: str) -> int | None:
    """Delete a repository from the Hugging Face cache; ``None`` when it is not there."""
    storage = repo_storage(repo_id)
    if not storage.is_dir():
        return None
    # what is really on disk: the snapshot links point at blobs, which are counted once
    freed = sum(p.stat().st_size for p in storage.rglob("*") if p.is_file() and not p.is_symlink())
    info = _cache_info()
    repo = next((r for r in info.repos if r.repo_id == repo_id and r.repo_type == "model"), None) if info else None
    if repo is not None and repo.revisions:
        info.delete_revisions(*(rev.commit_hash for rev in repo.revisions)).execute()
    # what the cache API leaves behind: unfinished downloads, or a repository it found damaged
    shutil.rmtree(storage, ignore_errors=True)
    return freed


def _remove_catalog(entry: CatalogEntry) -> int:
    sharing = [e for e in catalog() if e.repo == entry.repo and e.id != entry.id and snapshot_path(e) is not None]
    if not sharing:
        freed = _remove_repo(entry.repo)
        if freed is None:
            raise ModelError(f"{entry.name} is not on this computer.")
        return freed
    # Another catalog model lives in the same repository (the IP-Adapter and its image encoder): only
    # this model's files go, and blobs the other one still uses stay.
    info = _cache_info()
    keep = {path for other in sharing for f in other.files for path in other.file_choices(f)}
    mine = {path for f in entry.files for path in entry.file_choices(f)} - keep
    files = [file for repo in (info.repos if info else []) if repo.repo_id == entry.repo
             for rev in repo.revisions for file in rev.files
             if file.file_path.relative_to(rev.snapshot_path).as_posix() in mine]
    if not files:
        raise ModelError(f"{entry.name} is not on this computer.")
    strategy = info.delete_files(*files)
    strategy.execute()
    return strategy.expected_freed_size


__all__ = ["DownloadProgress", "InstalledModel", "import_model", "installed_models", "remove_model"]
