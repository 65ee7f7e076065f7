"""ControlNet guides in the story's step loop: a pose (OpenPose), a depth map or line art per panel.

A ControlNet is a copy of the UNet's encoder that reads a control picture and returns one residual
per skip connection of the UNet and one for its middle block; the UNet adds them to its own. Here the
residuals are computed inside the story's step loop (:mod:`.sampler`), for the pictures of a UNet call
that have a guide only, and handed to that call as ``down_block_additional_residuals`` and
``mid_block_additional_residual``: rows of pictures without a guide get zeros, which leaves their
sums unchanged, and a call with no guided picture gets no residuals at all (exactly today's call).
Consistent attention lives in the UNet's self-attention processors and is untouched: a guided
reference still writes its bank, a guided panel still reads its characters' banks.

With classifier-free guidance the call's batch is ``[uncond x n, cond x n]``; picture ``i``'s rows are
``i`` and ``n + i``, and the ControlNet sees the same control picture in both, with each half's own
text, as diffusers' ControlNet pipelines do (no "guess mode").

``strength`` scales the residuals (diffusers' ``controlnet_conditioning_scale``); ``start`` and
``end`` (fractions of the steps) choose the steps it acts on, with diffusers' rule for
``control_guidance_start``/``end``: step ``i`` of ``N`` is guided when ``i / N >= start`` and
``(i + 1) / N <= end``. Outside that range the ControlNet does not run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..errors import ModelError
from ..models.base import hub_snapshot
from ..models.catalog import CatalogEntry, catalog, find_entry

#: What a guide can be, and the words a message uses for it.
CONTROL_WORDS = {"pose": "pose", "depth": "depth map", "lineart": "line art"}
CONTROL_KINDS = tuple(CONTROL_WORDS)
ARCH_WORDS = {"sd15": "SD1.5", "sdxl": "SDXL"}


def acts_at(step: int, steps: int, start: float, end: float) -> bool:
    """Whether the guides act at step ``step`` (0-based) of ``steps`` (diffusers' rule)."""
    return step / steps >= start and (step + 1) / steps <= end


def default_entry(kind: str, arch: str) -> CatalogEntry | None:
    """The catalog's first ControlNet of this kind for this architecture."""
    for entry in catalog():
        if entry.control_arch == arch and entry.control == kind:
            return entry
    return None


def find_controlnet(kind: str, arch: str, source: str | None = None) -> tuple[Path, str]:
    """The folder of the ControlNet to guide ``kind`` with, and the name it is recorded under.

    ``source``: a folder, a catalog id or a Hub repository in the Hugging Face cache; ``None`` or ``""``
    takes the catalog's default for the model's architecture. A ControlNet that is not on this
    computer is a :class:`ModelError` (the app then offers the Models dialog) in one sentence.
    """
    words = CONTROL_WORDS[kind]
    family = ARCH_WORDS.get(arch, arch)
    if not source:
        entry = default_entry(kind, arch)
        if entry is None:
            raise ModelError(f"The model catalog names no {words} ControlNet for {family} models, so panels with a "
                             f"{words} cannot be drawn; give one with its folder.")
        source = entry.id
    path = Path(source).expanduser()
    if path.is_dir():
        return path, str(source)
    if path.exists() or source.startswith((".", "/", "~")) or "\\" in source:
        raise ModelError(f"The {words} ControlNet {source} is not a model folder.")
    entry = find_entry(source)
    if entry is not None and entry.id == source:
        from ..models.downloads import snapshot_path

        if entry.control is None:
            raise ModelError(f"{entry.name} ({source}) is not a ControlNet; choose a {words} ControlNet.")
        folder = snapshot_path(entry)
        if folder is None:
            raise ModelError(f"Panels with a {words} need {entry.name}, which is not on this computer; download it "
                             f"in the Models dialog (or: storystudio models download {entry.id}).")
        return folder, entry.id
    if source.count("/") == 1:
        folder = hub_snapshot(source)
        if folder is not None and (folder / "config.json").is_file():
            return folder, source
        raise ModelError(f"Panels with a {words} need the ControlNet {source}, which is not in the Hugging Face "
                         "cache; download it first.")
    raise ModelError(f'"{source}" names no {words} ControlNet: give a folder, a catalog id or a Hub repository.')


def _check_fits(net: Any, unet: Any, vae_scale_factor: int, words: str, where: str, family: str) -> None:
    mine, theirs = net.config, unet.config
    same = (mine.cross_attention_dim == theirs.cross_attention_dim
            and tuple(mine.block_out_channels) == tuple(theirs.block_out_channels)
            and mine.addition_embed_type == theirs.addition_embed_type
            and 2 ** (len(mine.conditioning_embedding_out_channels) - 1) == vae_scale_factor)
    if not same:
        raise ModelError(f"The {words} ControlNet {where} is made for another kind of model than this {family} "
                         "model; choose one made for it.")


def load_controlnet(kind: str, pipe: Any, arch: str, source: str | None, device: torch.device,
                    dtype: torch.dtype) -> tuple[Any, str]:
    """A diffusers ``ControlNetModel`` for ``kind`` that fits ``pipe``'s UNet, on ``device``, and its name.

    Weights load as safetensors only; remote code is never run.
    """
    from diffusers import ControlNetModel

    folder, name = find_controlnet(kind, arch, source)
    words = CONTROL_WORDS[kind]
    config = folder / "config.json"
    if not config.is_file():
        raise ModelError(f"The {words} ControlNet {name} has no config.json, so it is no diffusers ControlNet.")
    if (folder / "diffusion_pytorch_model.safetensors").is_file():
        variant = None
    elif (folder / "diffusion_pytorch_model.fp16.safetensors").is_file():
        variant = "fp16"  # the catalog fetches the half-precision file where the repository has one
    else:
        raise ModelError(f"The {words} ControlNet {name} has no safetensors weights; StoryStudio loads no "
                         "pickled weights.")
    from ..models.loading import _dtype_kwargs

    try:
        net = ControlNetModel.from_pretrained(str(folder), use_safetensors=True, local_files_only=True,
                                              variant=variant, **_dtype_kwargs(dtype))
    except (OSError, ValueError) as exc:
        raise ModelError(f"The {words} ControlNet {name} could not be loaded: {exc}") from exc
    _check_fits(net, pipe.unet, pipe.vae_scale_factor, words, name, ARCH_WORDS.get(arch, arch))
    net.requires_grad_(False)
    return net.to(device).eval(), name


def control_tensor(images: list[Image.Image], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Control pictures as the ControlNet reads them: ``(n, 3, H, W)``, RGB in 0..1 (not normalised)."""
    import numpy as np

    arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(device, dtype)


@dataclass
class GroupGuides:
    """One UNet call's guides, ready: for each kind, the batch rows it acts on and their control pictures."""

    rows: dict[str, torch.Tensor]  # kind -> row indices in the call's batch
    images: dict[str, torch.Tensor]  # kind -> (len(rows), 3, H, W)
    batch: int  # rows of the call (pictures x halves)


class StoryControls:
    """The ControlNets of one run (one per kind of guide) with its strength and step range."""

    def __init__(self, nets: dict[str, Any], sources: dict[str, str], strength: float = 1.0, start: float = 0.0,
                 end: float = 1.0):
        self.nets = nets
        self.sources = sources
        self.strength = float(strength)
        self.start = float(start)
        self.end = float(end)
        self.calls = 0  # ControlNet forward passes run (for the benchmark and the tests)

    @classmethod
    def load(cls, kinds: set[str], pipe: Any, arch: str, models: dict[str, str], device: torch.device,
             dtype: torch.dtype, strength: float, start: float, end: float,
             loaded: dict[tuple[str, str | None], tuple[Any, str]] | None = None) -> StoryControls:
        """The ControlNets for ``kinds``; ``loaded`` keeps them between runs (by kind and source)."""
        cache = loaded if loaded is not None else {}
        nets, sources = {}, {}
        for kind in sorted(kinds):
            key = (kind, models.get(kind) or None)
            if key not in cache:
                cache[key] = load_controlnet(kind, pipe, arch, key[1], device, dtype)
            nets[kind], sources[kind] = cache[key]
        return cls(nets, sources, strength, start, end)

    def acts_at(self, step: int, steps: int) -> bool:
        return acts_at(step, steps, self.start, self.end)

    def prepare(self, pictures: list[dict[str, Image.Image]], halves: int, device: torch.device,
                dtype: torch.dtype) -> GroupGuides | None:
        """The guides of one group (``pictures[i]``: picture i's control pictures by kind); ``None`` when none."""
        n = len(pictures)
        rows: dict[str, torch.Tensor] = {}
        images: dict[str, torch.Tensor] = {}
        for kind in sorted({k for p in pictures for k in p}):
            which = [i for i, p in enumerate(pictures) if kind in p]
            pics = [pictures[i][kind] for i in which]
            index = [h * n + i for h in range(halves) for i in which]  # both halves of guidance, in batch order
            rows[kind] = torch.tensor(index, dtype=torch.long, device=device)
            images[kind] = control_tensor(pics * halves, device, dtype)
        return GroupGuides(rows, images, n * halves) if rows else None

    def residuals(self, guides: GroupGuides, step: int, steps: int, sample: torch.Tensor, timestep: Any,
                  embeds: torch.Tensor, added: dict[str, torch.Tensor] | None) -> dict[str, Any]:
        """The UNet call's extra arguments at this step: the summed residuals of every kind (or none)."""
        if not self.acts_at(step, steps):
            return {}
        down_sum: list[torch.Tensor] | None = None
        mid_sum: torch.Tensor | None = None
        for kind, rows in guides.rows.items():
            whole = len(rows) == guides.batch  # every row is guided (rows are then in batch order)
            pick = (lambda t: t) if whole else (lambda t: t.index_select(0, rows))  # noqa: E731
            extra = None if added is None else {k: pick(v) for k, v in added.items()}
            down, mid = self.nets[kind](pick(sample), timestep, encoder_hidden_states=pick(embeds),
                                        controlnet_cond=guides.images[kind], conditioning_scale=self.strength,
                                        added_cond_kwargs=extra, return_dict=False)
            self.calls += 1
            if not whole:
                down = [_scatter(r, rows, guides.batch) for r in down]
                mid = _scatter(mid, rows, guides.batch)
            down_sum = list(down) if down_sum is None else [a + b for a, b in zip(down_sum, down)]
            mid_sum = mid if mid_sum is None else mid_sum + mid
        return {"down_block_additional_residuals": down_sum, "mid_block_additional_residual": mid_sum}


def _scatter(part: torch.Tensor, rows: torch.Tensor, batch: int) -> torch.Tensor:
    """``part`` (one tensor per guided row) placed at ``rows`` of a zero batch."""
    full = part.new_zeros((batch, *part.shape[1:]))
    return full.index_copy(0, rows, part)
