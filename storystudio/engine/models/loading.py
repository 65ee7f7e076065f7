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

from ...project.limits import quote
from ..errors import ModelError, OutOfMemoryError
from . import checks
from .base import (
    MEMORY_MODES,
    OPTIONAL_PARTS,
    SINGLE_FILE_CONFIGS,
    SUPPORTED_PIPELINES,
    hub_snapshot,
)

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
    """SD1.x, SD2.x or SDXL, from the tensor names of a single-file checkpoint (its header is checked first)."""
    return checks.checkpoint_arch(Path(path))


def _pipeline_class(arch_or_name: str):
    import diffusers

    if arch_or_name in SUPPORTED_PIPELINES:
        return getattr(diffusers, arch_or_name)
    return diffusers.StableDiffusionXLPipeline if arch_or_name == "sdxl" else diffusers.StableDiffusionPipeline


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
    memory: str = "full",
) -> LoadedModel:
    """Load a pipeline from a folder, a single checkpoint file or a Hub id (cache first).

    ``memory`` (CUDA only; elsewhere the model simply goes to the device):
    ``full`` keeps the whole pipeline on the GPU; ``model-offload`` keeps each
    part (text encoders, UNet, VAE) in host memory until it runs, so only one
    is on the GPU at a time (a little slower); ``sequential-offload`` moves the
    weights layer by layer (fits very small GPUs, much slower).
    """
    if memory not in MEMORY_MODES:
        raise ModelError(f'Unknown memory mode "{memory}"; use {", ".join(MEMORY_MODES)}.')
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    path = Path(source).expanduser()
    common = _dtype_kwargs(dt)
    try:
        kind, path = _source_kind(source)
        if kind == "folder":
            pipe, cls_name = _load_folder(path, str(path), common)
        elif kind == "file":
            pipe, cls_name = _load_single_file(path, config, allow_download, allow_pickle, common)
        else:
            pipe, cls_name = _load_hub(source, allow_download, common)
    except ModelError:
        raise
    except torch.cuda.OutOfMemoryError as exc:  # pragma: no cover - needs a small GPU
        raise ModelError("The GPU ran out of memory while loading the model; try the lower-memory setting.") from exc
    except MemoryError as exc:
        raise OutOfMemoryError("The computer ran out of memory while loading the model; close other programs "
                               "or use a smaller model.") from exc
    except Exception as exc:  # noqa: BLE001 - diffusers, transformers and safetensors raise many kinds
        # The files were checked before loading; what still fails is told in one sentence, with the start
        # of the library's own words (a kilobyte of them helps nobody).
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"The model {quote(source, 80)} could not be loaded; its files do not fit together "
                         f"({quote(first, 100)}).") from exc
    pipe.set_progress_bar_config(disable=True)
    if dev.type == "cuda" and memory == "model-offload":
        pipe.enable_model_cpu_offload(device=dev)
    elif dev.type == "cuda" and memory == "sequential-offload":
        pipe.enable_sequential_cpu_offload(device=dev)
    else:
        pipe = pipe.to(dev)
    return LoadedModel(pipe=pipe, arch=SUPPORTED_PIPELINES[cls_name], source=str(source), device=dev, dtype=dt)


def _source_kind(source: str) -> tuple[str, Path]:
    """("folder", path), ("file", path) or ("hub", path) for a model source; ModelError for a path that does
    not exist or a catalog model that is not downloaded."""
    path = Path(source).expanduser()
    if not path.exists() and (folder := _catalog_folder(source)) is not None:
        path = folder  # a catalog id such as "sdxl-base", downloaded into the Hugging Face cache
    if path.is_dir():
        return "folder", path
    if path.is_file():
        return "file", path
    if path.suffix in (".safetensors", ".ckpt", ".bin") or source.startswith((".", "/", "~")):
        raise ModelError(f"The model file {source} does not exist.")
    return "hub", path


def check_model_source(source: str, allow_download: bool = False, allow_pickle: bool = False) -> None:
    """ModelError in one sentence for what can be told about a model without loading it (what load_model
    would say after a while): a path that does not exist, a folder or file that is no model or is damaged, a
    Hub id that is not on this computer when downloads are not allowed. Reads files' headers only."""
    kind, path = _source_kind(source)
    if kind == "folder":
        check_model_folder(path, str(path))
    elif kind == "file":
        _single_file_arch(path, allow_pickle)
    elif not allow_download:
        snapshot = hub_snapshot(source)
        if snapshot is not None and (snapshot / "model_index.json").is_file():
            missing = missing_parts(snapshot)
            if missing:
                raise ModelError(_partly_here(source, missing))
            check_model_folder(snapshot, f'The model "{source}" in the Hugging Face cache')
            return
        from diffusers import DiffusionPipeline

        try:
            DiffusionPipeline.load_config(source, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelError(_not_here(source)) from exc


def _not_here(repo_id: str) -> str:
    return (f'The model "{repo_id}" is not on this computer (neither a folder, a file, nor in the Hugging Face '
            "cache). Download it first, or allow downloads.")


def _partly_here(repo_id: str, missing: list[str]) -> str:
    return (f'The model "{repo_id}" is only partly on this computer ({", ".join(missing)} missing: its download '
            "did not finish). Download it again to finish it.")


def _catalog_folder(source: str) -> Path | None:
    """The snapshot folder of the catalog's base model with this id; ``None`` when ``source`` is no catalog id."""
    if "/" in source or "\\" in source or source.startswith((".", "~")):
        return None
    from .catalog import find_entry
    from .downloads import snapshot_path

    entry = find_entry(source)
    if entry is None or entry.id != source:
        return None
    if not entry.is_base:
        raise ModelError(f"{entry.name} ({source}) is a part of the animatic's video stage, not a picture model.")
    folder = snapshot_path(entry)
    if folder is None:
        raise ModelError(f"{entry.name} is not downloaded yet; download it first (storystudio models download {source}).")
    return folder


def check_model_folder(path: Path, where: str, remedy: str = "Download or copy the model again.") -> tuple[dict, str]:
    """A diffusers pipeline folder's ``model_index.json`` and pipeline class, once every part it names is there
    and sound (configurations readable, weights headers whole: ``checks.folder_problems``).

    A folder that is no model, a damaged index, a pipeline StoryStudio cannot
    use, a missing part (a half copy) or a damaged file gets one plain
    ``ModelError``; ``remedy`` ends the message about missing parts.
    """
    index, cls_name = checks.pipeline_index(path, where)
    missing, damage = checks.folder_problems(path, index)
    if missing:
        raise ModelError(f"{where} is incomplete: it has no usable {', '.join(missing)}. {remedy}")
    if damage:
        raise ModelError(f"{where} cannot be used: {damage[0].lower()}{damage[1:]}")
    return index, cls_name


def verify_folder(path: Path, index: dict, where: str) -> None:
    """Build each part of a checked pipeline folder without its weights (on the meta device) and compare its
    tensors' shapes with the weights files' headers; build the tokenizers and schedulers. ModelError naming the
    part that does not fit. Reads configurations and headers only, so it is quick even for SDXL."""
    import accelerate
    import diffusers
    import transformers

    libraries = {"diffusers": diffusers, "transformers": transformers}
    for name in index:
        if name.startswith("_") or (spec := checks.part_spec(index, name)) is None:
            continue
        part = path / name
        if name in OPTIONAL_PARTS and not part.is_dir():
            continue
        library, class_name = spec
        cls = getattr(libraries.get(library), class_name, None) if library in libraries else None
        if not isinstance(cls, type):
            raise ModelError(f"{where} cannot be used: its {name} is a {quote(class_name)} from {quote(library)}, "
                             "which StoryStudio does not know.")
        try:
            if name.startswith("tokenizer") or name.startswith("scheduler"):
                if name.startswith("tokenizer"):
                    cls.from_pretrained(str(part), local_files_only=True)
                else:
                    cls.from_config(cls.load_config(str(part)))
                continue
            with accelerate.init_empty_weights():
                if library == "diffusers":
                    model = cls.from_config(cls.load_config(str(part)))
                else:
                    model = cls(cls.config_class.from_pretrained(str(part)))
        except Exception as exc:  # noqa: BLE001 - the libraries raise many kinds for a bad configuration
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{where} cannot be used: its {name} cannot be built from its configuration "
                             f"({quote(first, 100)}).") from None
        expected = {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}
        found: dict[str, tuple[int, ...]] = {}
        for file in sorted(part.glob("*.safetensors")):
            found.update((key, tuple(info["shape"])) for key, info in checks.safetensors_header(file).items())
        shared = expected.keys() & found.keys()
        if not shared:
            raise ModelError(f"{where} cannot be used: the {name}'s weights belong to another kind of model.")
        wrong = sorted(key for key in shared if expected[key] != found[key])
        if wrong:
            key = wrong[0]
            raise ModelError(f"{where} cannot be used: the {name}'s weights do not fit its configuration "
                             f"({quote(key, 60)} is {'x'.join(map(str, found[key])) or 'a scalar'} in the weights, "
                             f"{'x'.join(map(str, expected[key])) or 'a scalar'} in config.json).")


def _load_folder(path: Path, where: str, common: dict):
    """A diffusers pipeline folder: checked for missing parts first, so a half copy gets a plain message."""
    index, cls_name = check_model_folder(path, where)
    kwargs = folder_load_kwargs(path, index)
    pipe = _pipeline_class(cls_name).from_pretrained(str(path), local_files_only=True, use_safetensors=True,
                                                     **kwargs, **common)
    return pipe, cls_name


def _single_file_arch(path: Path, allow_pickle: bool) -> str:
    """The family of a single-file checkpoint, its header checked; ModelError for a file that is not one."""
    if path.suffix in (".ckpt", ".bin", ".pt", ".pth"):
        if not allow_pickle:
            raise ModelError(
                f"{path.name} is a pickled checkpoint, which can run code when opened. "
                "Use a .safetensors file, or allow pickled checkpoints explicitly."
            )
        raise ModelError(f"Loading pickled checkpoints such as {path.name} is not supported yet; convert it to .safetensors.")
    if path.suffix != ".safetensors":
        raise ModelError(f"{path.name} is not a model file StoryStudio knows (.safetensors or a diffusers folder).")
    return checks.check_checkpoint(path)


def _load_single_file(path: Path, config: str | None, allow_download: bool, allow_pickle: bool, common: dict):
    arch = _single_file_arch(path, allow_pickle)
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

    snapshot = hub_snapshot(repo_id)
    if snapshot is not None and (snapshot / "model_index.json").is_file():
        # Loaded from the snapshot folder, as any folder is: its variant (fp16 files only) and the parts a
        # download left out (the safety checker) are taken into account.
        missing = missing_parts(snapshot)
        if missing and not allow_download:
            raise ModelError(_partly_here(repo_id, missing))
        if not missing:
            return _load_folder(snapshot, f'The model "{repo_id}" in the Hugging Face cache', common)
    try:
        index = DiffusionPipeline.load_config(repo_id, local_files_only=not allow_download)
    except (OSError, ValueError) as exc:
        if allow_download:
            raise ModelError(f"The model {repo_id} could not be downloaded: {exc}") from exc
        raise ModelError(_not_here(repo_id)) from exc
    name = index.get("_class_name") if isinstance(index, dict) else None
    if not isinstance(name, str) or name not in SUPPORTED_PIPELINES:
        what = "a " + quote(name).strip('"') if isinstance(name, str) and name else "an unknown"
        raise ModelError(f"{repo_id} holds {what} model; "
                         "StoryStudio works with Stable Diffusion 1.5/2.x and SDXL models.")
    cls_name = name
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


def _weight_variant(name: str) -> str | None:
    """"fp16" for diffusion_pytorch_model.fp16.safetensors or model.fp16-00001-of-00002.safetensors."""
    parts = name.split(".")
    if len(parts) >= 3 and parts[-1] == "safetensors":
        return parts[-2].split("-")[0]
    return None


def weights_variant(folder: str | Path) -> str | None:
    """The variant (``fp16``) a diffusers pipeline folder's weights are stored as, when some part has
    no full-precision file: diffusers loads such a folder only when told the variant."""
    folder = Path(folder)
    variants: set[str] = set()
    for part in folder.iterdir() if folder.is_dir() else ():
        if not part.is_dir():
            continue
        names = [p.name for p in part.iterdir() if p.name.endswith(".safetensors") and p.is_file()]
        plain = [n for n in names if _weight_variant(n) is None]
        tagged = {v for n in names if (v := _weight_variant(n))}
        if names and not plain and tagged:
            variants |= tagged
    return sorted(variants)[0] if variants else None


def missing_parts(folder: str | Path) -> list[str]:
    """The parts a pipeline folder's model_index.json names but the folder lacks (files or weights).

    Parts StoryStudio does without (safety checker, feature extractor, image
    encoder) are not counted: such a folder loads with them left out.
    """
    folder = Path(folder)
    try:
        index = checks.read_json_object(folder / "model_index.json", "model_index.json")
    except ModelError:
        return ["model_index.json"]
    return checks.folder_problems(folder, index, deep=False)[0]


def folder_load_kwargs(folder: str | Path, index: dict | None = None) -> dict[str, Any]:
    """What ``from_pretrained`` needs besides the folder: the weights' variant, and ``None`` for the
    optional parts the folder does not have."""
    folder = Path(folder)
    if index is None:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    kwargs: dict[str, Any] = {}
    variant = weights_variant(folder)
    if variant:
        kwargs["variant"] = variant
    for name in OPTIONAL_PARTS:
        spec = index.get(name)
        if isinstance(spec, list) and spec and spec[0] is not None and not (folder / name).is_dir():
            kwargs[name] = None
    if "safety_checker" in kwargs:
        kwargs["requires_safety_checker"] = False
    return kwargs
