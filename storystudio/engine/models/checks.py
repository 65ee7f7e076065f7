"""Checking model files before anything loads them, without torch: one plain sentence for each fault.

A diffusers folder is checked part by part: its ``model_index.json`` (a
pipeline StoryStudio draws with, each part named as ``[library, class]``),
each part's configuration (JSON objects), tokenizer files, and the header of
every ``.safetensors`` weights file (readable, every tensor's bytes inside the
file, sizes that match their shapes and types). A single-file checkpoint gets
the same header check and must hold the UNet, the VAE and the text
encoder(s) its family needs. What passes here may still disagree with its own
configuration; ``loading.verify_folder`` compares the shapes too (that needs the
model classes, so torch).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from ...project.limits import quote
from ..errors import ModelError
from .base import OPTIONAL_PARTS, SUPPORTED_PIPELINES

#: Bytes per element of each safetensors dtype.
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
#: The header of a real checkpoint is well under a megabyte per thousand tensors; a header that claims
#: more than this is damage, not a model.
MAX_HEADER_BYTES = 100 * 1024**2
#: Configuration files are small; a "config.json" of more than this is not one.
MAX_CONFIG_BYTES = 4 * 1024**2

#: Tensor names each single-file family needs: the UNet, the VAE, the text encoder(s).
CHECKPOINT_PARTS = {
    "sd15": {"UNet": "model.diffusion_model.", "VAE": "first_stage_model.",
             "text encoder": "cond_stage_model.transformer."},
    "sd2": {"UNet": "model.diffusion_model.", "VAE": "first_stage_model.", "text encoder": "cond_stage_model.model."},
    "sdxl": {"UNet": "model.diffusion_model.", "VAE": "first_stage_model.",
             "first text encoder": "conditioner.embedders.0.", "second text encoder": "conditioner.embedders.1."},
}


def read_json_object(file: Path, what: str) -> dict[str, Any]:
    """A JSON file that must hold one object (a group of named values); ModelError naming ``what`` otherwise."""
    try:
        if file.stat().st_size > MAX_CONFIG_BYTES:
            raise ModelError(f"{what} is far too large to be a configuration file.")
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{what} is missing.") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        raise ModelError(f"{what} is damaged (it is not readable JSON).") from None
    if not isinstance(data, dict):
        raise ModelError(f"{what} is damaged (it does not hold named settings).")
    return data


def safetensors_header(file: Path, what: str | None = None) -> dict[str, dict[str, Any]]:
    """The tensors of a ``.safetensors`` file (name -> dtype, shape, offsets), after checking its structure.

    Only the header is read: every tensor must lie inside the file, its byte
    range must match its shape and type, and the ranges must not overlap.
    """
    what = what or file.name
    try:
        total = file.stat().st_size
        with open(file, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise ModelError(f"{what} is not a safetensors file (it is only {total} bytes long).")
            (length,) = struct.unpack("<Q", head)
            if length < 2 or length > min(MAX_HEADER_BYTES, total - 8):
                raise ModelError(f"{what} is damaged or not a safetensors file (its header is unreadable).")
            raw = handle.read(length)
    except OSError as exc:
        raise ModelError(f"{what} cannot be read ({exc.strerror or exc}).") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ModelError(f"{what} is damaged or not a safetensors file (its header is unreadable).") from None
    if not isinstance(header, dict):
        raise ModelError(f"{what} is damaged (its header lists no tensors).")
    header.pop("__metadata__", None)
    data_bytes = total - 8 - length
    spans = []
    for name, info in header.items():
        if not (isinstance(info, dict) and info.get("dtype") in _DTYPE_BYTES and isinstance(info.get("shape"), list)
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in info["shape"])
                and isinstance(info.get("data_offsets"), list) and len(info["data_offsets"]) == 2
                and all(isinstance(o, int) and not isinstance(o, bool) for o in info["data_offsets"])):
            raise ModelError(f"{what} is damaged: the tensor {quote(name)} is described wrongly.")
        start, end = info["data_offsets"]
        if not 0 <= start <= end <= data_bytes:
            raise ModelError(f"{what} is cut short or damaged: the tensor {quote(name)} lies past its end "
                             "(download or copy it again).")
        if end - start != math.prod(info["shape"]) * _DTYPE_BYTES[info["dtype"]]:
            raise ModelError(f"{what} is damaged: the tensor {quote(name)} has the wrong number of bytes.")
        spans.append((start, end))
    spans.sort()
    if any(b[0] < a[1] for a, b in zip(spans, spans[1:])):
        raise ModelError(f"{what} is damaged: two of its tensors overlap.")
    return header


def checkpoint_arch(file: Path, keys: set[str] | None = None) -> str:
    """SD1.x, SD2.x or SDXL, from the tensor names of a single-file checkpoint (its header is checked)."""
    if keys is None:
        keys = set(safetensors_header(file))
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd2"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd15"
    raise ModelError(f"{file.name} does not look like an SD1.5, SD2.x or SDXL checkpoint; StoryStudio cannot use it.")


def check_checkpoint(file: Path) -> str:
    """A single-file checkpoint's family, once its header is sound and it holds every part its family needs."""
    keys = set(safetensors_header(file))
    arch = checkpoint_arch(file, keys)
    missing = [part for part, prefix in CHECKPOINT_PARTS[arch].items() if not any(k.startswith(prefix) for k in keys)]
    if missing:
        family = {"sd15": "SD1.5", "sd2": "SD2.x", "sdxl": "SDXL"}[arch]
        raise ModelError(f"{file.name} looks like an {family} checkpoint but has no {' and no '.join(missing)}; "
                         "it is not a whole model (a LoRA or a part of one?).")
    return arch


def part_spec(index: dict[str, Any], name: str) -> tuple[str, str] | None:
    """The ``[library, class]`` a model_index.json gives for a part (None for a part set to null, or for an
    entry that is a setting of the pipeline rather than a part)."""
    spec = index[name]
    if not isinstance(spec, list):
        return None  # a setting of the pipeline (requires_safety_checker: false), not a part
    if len(spec) == 2 and spec[0] is None and spec[1] is None:
        return None
    if not (isinstance(spec, list) and len(spec) == 2 and all(isinstance(s, str) and s for s in spec)):
        raise ModelError(f"model_index.json names its part {quote(name)} wrongly (it should be [library, class]).")
    return spec[0], spec[1]


def pipeline_index(folder: Path, where: str) -> tuple[dict[str, Any], str]:
    """A folder's ``model_index.json`` and pipeline class, checked."""
    if not (folder / "model_index.json").is_file():
        raise ModelError(f"{where} is not a diffusers model folder (it has no model_index.json).")
    index = read_json_object(folder / "model_index.json", f"The model_index.json of {where}")
    name = index.get("_class_name")
    if not isinstance(name, str) or name not in SUPPORTED_PIPELINES:
        what = "a " + quote(name).strip('"') if isinstance(name, str) and name else "an unknown"
        raise ModelError(
            f"{where} holds {what} model; StoryStudio works with Stable Diffusion 1.5/2.x and SDXL models."
        )
    return index, name


def folder_problems(folder: Path, index: dict[str, Any], deep: bool = True) -> tuple[list[str], str | None]:
    """(the parts missing from a pipeline folder, the first damage found in the others, as a sentence).

    Parts StoryStudio does without (safety checker, feature extractor, image encoder) are not counted
    when missing. ``deep`` also reads every configuration and weights header.
    """
    missing: list[str] = []
    damage: str | None = None
    for name in index:
        if name.startswith("_"):
            continue
        try:
            spec = part_spec(index, name)
        except ModelError as exc:
            damage = damage or str(exc)
            continue
        if spec is None:
            continue
        part = folder / name
        if name in OPTIONAL_PARTS and not part.is_dir():
            continue
        problem = _part_problem(part, name, deep)
        if problem == "missing":
            missing.append(name)
        elif problem:
            damage = damage or problem
    return missing, damage


def _part_problem(part: Path, name: str, deep: bool) -> str | None:
    """"missing", a sentence about damage, or None for a part that looks whole."""
    if not part.is_dir():
        return "missing"
    if name.startswith("tokenizer"):
        files = [f for f in ("tokenizer_config.json", "vocab.json", "tokenizer.json") if (part / f).is_file()]
        if not files:
            return "missing"
        if deep:
            try:
                for f in files:
                    read_json_object(part / f, f"The {name}'s {f}")
            except ModelError as exc:
                return str(exc)
            if (part / "vocab.json").is_file() and not (part / "merges.txt").is_file() \
                    and not (part / "tokenizer.json").is_file():
                return f"The {name} has a vocab.json but no merges.txt."
        return None
    if name.startswith("scheduler"):
        if not (part / "scheduler_config.json").is_file():
            return "missing"
        if deep:
            try:
                read_json_object(part / "scheduler_config.json", f"The {name}'s scheduler_config.json")
            except ModelError as exc:
                return str(exc)
        return None
    weights = sorted(p for p in part.iterdir() if p.name.endswith(".safetensors") and p.is_file())
    if not (part / "config.json").is_file() or not weights:
        return "missing"
    if deep:
        try:
            read_json_object(part / "config.json", f"The {name}'s config.json")
            for file in weights:
                safetensors_header(file, f"The {name}'s weights file {file.name}")
        except ModelError as exc:
            return str(exc)
    return None


def model_family(source: str) -> str | None:
    """sd15, sd2 or sdxl for a model source, found without loading it (None when it cannot be told).

    Used to check a picture size against the family's limit before a model is loaded.
    """
    from .base import folder_arch, hub_snapshot

    path = Path(source).expanduser()
    try:
        if path.is_dir():
            return _folder_family(path, folder_arch(path))
        if path.is_file():
            return checkpoint_arch(path) if path.suffix == ".safetensors" else None
        if "/" not in source and not source.startswith((".", "~")):
            from .catalog import find_entry

            entry = find_entry(source)
            return entry.arch if entry is not None and entry.id == source else None
        snapshot = hub_snapshot(source)
        return _folder_family(snapshot, folder_arch(snapshot)) if snapshot is not None else None
    except (ModelError, OSError, ValueError):
        return None  # loading it will say what is wrong


def _folder_family(folder: Path, arch: str | None) -> str | None:
    if arch != "sd15":
        return arch
    try:  # SD2.x uses the same pipeline class; its UNet reads the 1024-wide OpenCLIP text features
        config = read_json_object(folder / "unet" / "config.json", "config.json")
    except ModelError:
        return arch
    return "sd2" if config.get("cross_attention_dim") == 1024 else "sd15"
