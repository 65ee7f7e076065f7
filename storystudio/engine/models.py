"""Finding and loading Stable Diffusion models, offline by default.

A model is named by a diffusers folder, a single ``.safetensors`` checkpoint or
a Hugging Face Hub id. Hub ids are looked up in the standard Hugging Face cache
(so models other tools downloaded are reused); nothing is downloaded unless the
caller asks for it. Weights load as safetensors only; remote code is never run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

SUPPORTED_PIPELINES = {"StableDiffusionPipeline": "sd15", "StableDiffusionXLPipeline": "sdxl"}
# Hub repos whose configuration (not weights) a single-file checkpoint of each family needs.
SINGLE_FILE_CONFIGS = {
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd2": "stabilityai/stable-diffusion-2-1",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
}


class ModelError(RuntimeError):
    """A model cannot be found or used; the message says why in plain words."""


@dataclass
class LoadedModel:
    pipe: Any
    arch: str  # "sd15" (also SD2.x: same pipeline class) or "sdxl"
    source: str
    device: torch.device
    dtype: torch.dtype

    @property
    def name(self) -> str:
        return Path(self.source).name if Path(self.source).exists() else self.source


def pick_device(device: str = "auto") -> torch.device:
    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise ModelError(f'Unknown device "{device}"; use auto, cuda, mps or cpu.')
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("No CUDA GPU is available on this computer; use --device cpu (slow) or auto.")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelError("Apple's MPS GPU is not available on this computer; use --device cpu or auto.")
    return torch.device(device)


_DTYPES = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
           "fp32": torch.float32, "float32": torch.float32}


def pick_dtype(device: torch.device, dtype: str = "auto") -> torch.dtype:
    if dtype in (None, "", "auto"):
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ModelError(f'Unknown precision "{dtype}"; use auto, fp16, bf16 or fp32.') from None


def detect_checkpoint_arch(path: str | Path) -> str:
    """SD1.x, SD2.x or SDXL, from the tensor names of a single-file checkpoint."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
    except Exception as exc:
        raise ModelError(f"{path} is not a readable safetensors checkpoint ({exc}).") from exc
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd2"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd15"
    # Checkpoints saved by diffusers' own tools carry diffusers-style names.
    if any(k.startswith("text_encoder_2.") or k.startswith("conditioner.") for k in keys):
        return "sdxl"
    raise ModelError(f"{Path(path).name} does not look like an SD1.5, SD2.x or SDXL checkpoint; StoryStudio cannot use it.")


def _pipeline_class(arch_or_name: str):
    import diffusers

    if arch_or_name in SUPPORTED_PIPELINES:
        return getattr(diffusers, arch_or_name)
    return diffusers.StableDiffusionXLPipeline if arch_or_name == "sdxl" else diffusers.StableDiffusionPipeline


def _class_of(model_index: dict, where: str) -> str:
    name = model_index.get("_class_name", "")
    if name not in SUPPORTED_PIPELINES:
        raise ModelError(
            f"{where} holds a {name or 'unknown'} model; StoryStudio works with Stable Diffusion 1.5/2.x and SDXL models."
        )
    return name


def _dtype_kwargs(dtype: torch.dtype) -> dict[str, torch.dtype]:
    # diffusers 0.42 renamed torch_dtype to dtype and warns about the old name.
    import diffusers
    from packaging.version import Version

    key = "dtype" if Version(diffusers.__version__).release >= (0, 42) else "torch_dtype"
    return {key: dtype}


def load_model(
    source: str,
    device: str = "auto",
    dtype: str = "auto",
    allow_download: bool = False,
    config: str | None = None,
    allow_pickle: bool = False,
) -> LoadedModel:
    """Load a pipeline from a folder, a single checkpoint file or a Hub id (cache first)."""
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    path = Path(source).expanduser()
    common = _dtype_kwargs(dt)
    try:
        if path.is_dir():
            index = path / "model_index.json"
            if not index.is_file():
                raise ModelError(f"{path} is not a diffusers model folder (it has no model_index.json).")
            cls_name = _class_of(json.loads(index.read_text()), str(path))
            pipe = _pipeline_class(cls_name).from_pretrained(str(path), local_files_only=True, use_safetensors=True, **common)
        elif path.is_file():
            pipe, cls_name = _load_single_file(path, config, allow_download, allow_pickle, common)
        elif path.suffix in (".safetensors", ".ckpt", ".bin") or source.startswith((".", "/", "~")):
            raise ModelError(f"The model file {source} does not exist.")
        else:
            pipe, cls_name = _load_hub(source, allow_download, common)
    except ModelError:
        raise
    except torch.cuda.OutOfMemoryError as exc:  # pragma: no cover - needs a small GPU
        raise ModelError("The GPU ran out of memory while loading the model; try the lower-memory setting.") from exc
    except (OSError, ValueError, EnvironmentError) as exc:
        raise ModelError(f"The model {source} could not be loaded: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(dev)
    return LoadedModel(pipe=pipe, arch=SUPPORTED_PIPELINES[cls_name], source=str(source), device=dev, dtype=dt)


def _load_single_file(path: Path, config: str | None, allow_download: bool, allow_pickle: bool, common: dict):
    if path.suffix in (".ckpt", ".bin", ".pt", ".pth"):
        if not allow_pickle:
            raise ModelError(
                f"{path.name} is a pickled checkpoint, which can run code when opened. "
                "Use a .safetensors file, or allow pickled checkpoints explicitly."
            )
        raise ModelError(f"Loading pickled checkpoints such as {path.name} is not supported yet; convert it to .safetensors.")
    if path.suffix != ".safetensors":
        raise ModelError(f"{path.name} is not a model file StoryStudio knows (.safetensors or a diffusers folder).")
    arch = detect_checkpoint_arch(path)
    cls = _pipeline_class(arch)
    cfg = config or SINGLE_FILE_CONFIGS[arch]
    try:
        pipe = cls.from_single_file(str(path), config=cfg, local_files_only=not allow_download, **common)
    except (OSError, ValueError) as exc:
        if config is None and not allow_download:
            raise ModelError(
                f"{path.name} is an {arch.upper()} checkpoint and needs that family's configuration files "
                f"({cfg}), which are not on this computer. Download them once (allow downloads) or give a config folder."
            ) from exc
        raise
    return pipe, cls.__name__


def _load_hub(repo_id: str, allow_download: bool, common: dict):
    from diffusers import DiffusionPipeline

    try:
        index = DiffusionPipeline.load_config(repo_id, local_files_only=not allow_download)
    except (OSError, ValueError) as exc:
        if allow_download:
            raise ModelError(f"The model {repo_id} could not be downloaded: {exc}") from exc
        raise ModelError(
            f'The model "{repo_id}" is not on this computer (neither a folder, a file, nor in the Hugging Face cache). '
            "Download it first, or allow downloads."
        ) from exc
    cls_name = _class_of(index, repo_id)
    pipe = _pipeline_class(cls_name).from_pretrained(
        repo_id, local_files_only=not allow_download, use_safetensors=True, **common
    )
    return pipe, cls_name


def device_summary(device: torch.device) -> str:
    """One line about the compute device, for logs and the GUI."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return "CPU"


def quiet_libraries() -> None:
    """Keep diffusers' and transformers' progress bars and advice out of the user's terminal."""
    import warnings

    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="diffusers")
    warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")


def model_folders() -> dict[str, Path]:
    """Where models are looked for: the Hugging Face cache and StoryStudio's own folder."""
    from huggingface_hub import constants
    from platformdirs import user_data_path

    return {
        "Hugging Face cache": Path(constants.HF_HUB_CACHE),
        "StoryStudio models": user_data_path("StoryStudio", appauthor=False) / "models",
    }


def _folder_arch(folder: Path) -> str | None:
    index = folder / "model_index.json"
    try:
        return SUPPORTED_PIPELINES.get(json.loads(index.read_text()).get("_class_name", ""))
    except (OSError, ValueError):
        return None


def _size_gb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 1e9
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e9


def find_local_models() -> list[dict[str, Any]]:
    """Stable Diffusion models already on this computer (no network)."""
    found: list[dict[str, Any]] = []
    folders = model_folders()
    cache = folders["Hugging Face cache"]
    if cache.is_dir():
        from huggingface_hub import scan_cache_dir

        try:
            info = scan_cache_dir(cache)
        except Exception:  # a damaged cache must not stop the listing
            info = None
        for repo in info.repos if info else []:
            if repo.repo_type != "model":
                continue
            for rev in repo.revisions:
                arch = _folder_arch(Path(rev.snapshot_path))
                if arch:
                    found.append({"id": repo.repo_id, "arch": arch, "size_gb": repo.size_on_disk / 1e9,
                                  "where": str(rev.snapshot_path)})
                    break
    own = folders["StoryStudio models"]
    if own.is_dir():
        for entry in sorted(own.iterdir()):
            arch = _folder_arch(entry) if entry.is_dir() else None
            if entry.suffix == ".safetensors":
                try:
                    arch = detect_checkpoint_arch(entry)
                except ModelError:
                    arch = None
            if arch:
                found.append({"id": str(entry), "arch": arch, "size_gb": _size_gb(entry), "where": str(entry)})
    return found
