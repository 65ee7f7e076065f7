"""What every part of model handling shares, without torch: families, memory modes, where models live.

The catalog, downloads, the library, the loader and the GUI's dialogs import
this module; it imports neither torch nor diffusers, so the GUI thread can use
it while the window opens.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import ModelError

__all__ = [
    "COMMIT_ID", "LINKED_FOLDERS_FILE", "MEMORY_MODES", "MODELS_DIR_ENV", "ModelError", "OPTIONAL_PARTS", "SINGLE_FILE_CONFIGS",
    "SUPPORTED_PIPELINES", "folder_arch", "has_file", "hub_cache", "hub_snapshot", "is_path", "linked_folders",
    "model_folders", "path_size", "repo_storage",
]

SUPPORTED_PIPELINES = {"StableDiffusionPipeline": "sd15", "StableDiffusionXLPipeline": "sdxl"}
# Parts a pipeline's model_index.json may name that StoryStudio does without: a folder that lacks
# them (a download that skipped the safety checker, say) loads with them set to None.
OPTIONAL_PARTS = ("safety_checker", "feature_extractor", "image_encoder")
MODELS_DIR_ENV = "STORYSTUDIO_MODELS_DIR"
LINKED_FOLDERS_FILE = "linked-folders.json"
# Hub repos whose configuration (not weights) a single-file checkpoint of each family needs.
SINGLE_FILE_CONFIGS = {
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd2": "stabilityai/stable-diffusion-2-1",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
}

#: How ``load_model(memory=...)`` places a pipeline on an NVIDIA GPU, in the user's words.
MEMORY_MODES = {
    "full": "Everything on the GPU (fastest)",
    "model-offload": "Model CPU offload (less GPU memory, a little slower)",
    "sequential-offload": "Sequential offload (smallest GPUs, much slower)",
}

COMMIT_ID = re.compile(r"[0-9a-f]{40}")  # a git commit, as the Hub names revisions


def model_folders() -> dict[str, Path]:
    """Where models are looked for: the Hugging Face cache and StoryStudio's own folder."""
    from huggingface_hub import constants
    from platformdirs import user_data_path

    own = os.environ.get(MODELS_DIR_ENV)
    return {
        "Hugging Face cache": Path(constants.HF_HUB_CACHE),
        "StoryStudio models": Path(own).expanduser() if own else user_data_path("StoryStudio", appauthor=False) / "models",
    }


def hub_cache() -> Path:
    """The Hugging Face cache folder (``$HF_HUB_CACHE``, read when called)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).expanduser().resolve()


def repo_storage(repo_id: str, cache_dir: str | Path | None = None) -> Path:
    """The cache folder of one repository (``models--owner--name``)."""
    root = Path(cache_dir).expanduser().resolve() if cache_dir else hub_cache()
    return root / ("models--" + repo_id.replace("/", "--"))


def hub_snapshot(repo_id: str, revision: str = "main", cache_dir: str | Path | None = None) -> Path | None:
    """The snapshot folder of a Hub repository in the Hugging Face cache, without network.

    The commit that ``refs/<revision>`` names; without that ref (a cache copied
    by hand), the newest snapshot. ``None`` when the repository is not cached.
    """
    storage = repo_storage(repo_id, cache_dir)
    snapshots = storage / "snapshots"
    if not snapshots.is_dir():
        return None
    if COMMIT_ID.fullmatch(revision):
        commit = revision
    else:
        try:
            commit = (storage / "refs" / revision).read_text(encoding="utf-8").strip()
        except OSError:
            commit = ""
    if commit and (snapshots / commit).is_dir():
        return snapshots / commit
    folders = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    return folders[0] if folders and not commit else None


def linked_folders() -> list[Path]:
    """Diffusers folders the user added where they are (not copied); StoryStudio never deletes them."""
    registry = model_folders()["StoryStudio models"] / LINKED_FOLDERS_FILE
    try:
        data = json.loads(registry.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    folders = data.get("folders", []) if isinstance(data, dict) else []
    return [Path(item["path"]) for item in folders if isinstance(item, dict) and isinstance(item.get("path"), str)]


def folder_arch(folder: Path) -> str | None:
    """``sd15`` or ``sdxl`` for a diffusers folder of a pipeline StoryStudio draws with, else ``None``."""
    try:
        index = json.loads((Path(folder) / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = index.get("_class_name") if isinstance(index, dict) else None
    return SUPPORTED_PIPELINES.get(name) if isinstance(name, str) else None


def path_size(path: Path) -> int:
    """Bytes a file, or every file under a folder, takes."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def is_path(source: str) -> bool:
    """A folder or file name rather than a Hub id ("owner/name")."""
    path = Path(source).expanduser()
    return path.exists() or path.is_absolute() or source.startswith((".", "~")) or "\\" in source


def has_file(source: str, filename: str) -> bool:
    """Whether ``filename`` of a folder or of a Hub repository in the Hugging Face cache is on this computer."""
    if is_path(source):
        return (Path(source).expanduser() / filename).is_file()
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(source, filename), str)
    except Exception:  # not a valid repository id: not on this computer either
        return False
