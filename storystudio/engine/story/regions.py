"""The story's side of regions and photos: which pictures get them, their texts, their tensors.

- A panel showing two or more characters is drawn with regions (unless the
  settings switch them off): one box per character (the panel's own, or side
  by side in tag order). Its main prompt is the **background** text: the
  panel's line with each ``[Name]`` replaced by the bare name, so the picture
  as a whole gets the action and the place but nobody's looks. Region *r*'s
  text is the same line with that character's tag expanded to its
  description (the others' tags again bare names).
- A character's photo acts in every picture of that character: on the whole
  picture of its references and solo panels, inside its region in a shared
  panel.

:func:`prepare_identity` turns a group's plan into the tensors one UNet call of
the group uses, once per run. Torch is imported only there: the app's
GUI thread uses the rules above (``ui/recipes.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...project.regions import Box, panel_regions
from ...project.story import TAG_PATTERN, Panel, Story

if TYPE_CHECKING:  # torch only where tensors are made (the GUI thread imports the rules of this module)
    import torch

__all__ = ["GroupIdentity", "RegionPlan", "background_prompt", "panel_boxes", "photo_hash", "photo_parameters",
           "plan_regions", "region_prompt", "uses_regions"]


def uses_regions(panel: Panel, enabled: bool = True) -> bool:
    """Whether the panel is drawn with one region per character."""
    return enabled and len(panel.characters) >= 2


def _expand_only(story: Story, panel: Panel, keep: str | None) -> str:
    def swap(match):
        name = match.group(1).strip()
        character = story.character(name)  # an unknown tag fails with its name, as Story.expand does
        return character.description if name == keep else character.name

    return TAG_PATTERN.sub(swap, panel.prompt)


def background_prompt(story: Story, panel: Panel) -> str:
    """The panel's line with every character's tag as the bare name: the action, nobody's looks."""
    return _expand_only(story, panel, None)


def region_prompt(story: Story, panel: Panel, name: str) -> str:
    """The panel's line with ``name``'s tag expanded to its description and the other tags bare names."""
    return _expand_only(story, panel, name)


def panel_boxes(panel: Panel, cast: Sequence[str]) -> list[Box]:
    """The panel's box of each character of ``cast``, in cast order."""
    by_name = {r.character: r.box for r in panel_regions(panel.characters, panel.regions)}
    return [by_name[name] for name in cast]


@dataclass
class RegionPlan:
    """The regions of a batch of panels: per picture, per character of the cast, its box and text."""

    cast: list[str]
    boxes: list[list[Box]]  # [picture][character]
    texts: list[list[str]]  # [picture][character], styled like the main prompt

    def parameters(self, picture: int) -> list[dict[str, Any]]:
        """What a picture's PNG parameters record of its regions."""
        return [{"character": name, "box": [round(v, 4) for v in box], "prompt": text}
                for name, box, text in zip(self.cast, self.boxes[picture], self.texts[picture])]


def plan_regions(story: Story, panels: Sequence[Panel], cast: Sequence[str], style: Any,
                 negative: str) -> RegionPlan:
    """The regions of a batch of shared panels showing ``cast`` (in cast order), texts styled by ``style``."""
    return RegionPlan(list(cast), [panel_boxes(p, cast) for p in panels],
                      [[style.apply(region_prompt(story, p, c), negative)[0] for c in cast] for p in panels])


def photo_hash(data: bytes) -> str:
    """The sha256 of a photo's bytes, as recorded in a picture's parameters."""
    return hashlib.sha256(data).hexdigest()


def photo_parameters(story: Story, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """What a picture's parameters record of the photos that acted on it: each one's sha256 and strength."""
    out = {}
    for name in names:
        character = story.character(name)
        if character.photo and character.photo_strength > 0:
            out[name] = {"sha256": photo_hash(character.photo), "strength": float(character.photo_strength)}
    return out


@dataclass
class GroupIdentity:
    """What one group's UNet calls need for regions and photos (tensors on the device, made once per run)."""

    layout: Any = None  # attention.regions.RegionLayout, or None without regions
    texts: torch.Tensor | None = None  # (batch * R, L, C): row b's region r at b * R + r
    photos: Any = None  # attention.regions.Photo of the regions (None: no region has a photo)
    photo: Any = None  # attention.regions.Photo acting on the whole picture
    kept: dict = field(default_factory=dict)  # the cross-attention layers' keys and values of these inputs

    @property
    def empty(self) -> bool:
        return self.layout is None and self.photo is None


def _region_texts(encoded: list[list[Any]], guided: bool, empty: Any, pad) -> torch.Tensor:
    """(halves * n * R, L, C) from ``encoded[i][r]`` (picture i, region r), padded to one length with empty
    chunks as a batch's shorter prompts are; negatives first, then row b's regions one after another."""
    import torch

    longest = max(e.chunks for row in encoded for e in row)
    rows = [[pad(e, empty, longest) if e.chunks != longest else e for e in row] for row in encoded]
    cond = torch.cat([e.cond for row in rows for e in row])
    return torch.cat([torch.cat([e.uncond for row in rows for e in row]), cond]) if guided else cond


def photo_for(tokens: Any, strength: float, n: int, guided: bool, device: torch.device, dtype: torch.dtype):
    """An attention.regions.Photo on the whole picture for a call of ``n`` pictures (a blank image's tokens
    for the negatives, as diffusers does)."""
    import torch

    from ..attention.regions import Photo

    cond = tokens.cond.expand(n, -1, -1)
    rows = torch.cat([tokens.uncond.expand(n, -1, -1), cond]) if guided else cond
    return Photo(rows.to(device, dtype), float(strength))


def region_photos(cast: Sequence[str], photos: dict[str, tuple[Any, float]], n: int, guided: bool,
                  device: torch.device, dtype: torch.dtype):
    """The regions' Photo (rows b * R + r; zeros and strength 0 where a character has none), or None."""
    import torch

    from ..attention.regions import Photo

    if not any(name in photos for name in cast):
        return None
    shape = next(iter(photos.values()))[0].cond.shape[1:]
    halves = []
    for part in (("uncond", "cond") if guided else ("cond",)):
        per = [getattr(photos[name][0], part)[0] if name in photos else torch.zeros(shape) for name in cast]
        halves.append(torch.stack([p.to(device, dtype) for p in per]).repeat(n, 1, 1))
    strength = torch.tensor([photos[name][1] if name in photos else 0.0 for name in cast]).repeat(n * len(halves))
    return Photo(torch.cat(halves), strength.view(-1, 1, 1).to(device, dtype))


def prepare_identity(plan: RegionPlan | None, characters: Sequence[str], photos: dict[str, tuple[Any, float]],
                     encode, empty: Any, pad, n: int, guided: bool, latent_hw: tuple[int, int], scales: set[int],
                     device: torch.device, dtype: torch.dtype, negatives: Sequence[str]) -> GroupIdentity | None:
    """The tensors of one group: its region layout and texts, and its photos (``photos``: name -> (tokens,
    strength) of the characters with a photo). ``encode(prompt, negative)`` is the pipeline's prompt encoder."""
    from ..attention.regions import RegionLayout

    halves = 2 if guided else 1
    ident = GroupIdentity()
    if plan is not None:
        ident.layout = RegionLayout(plan.boxes, latent_hw, sorted(scales), halves, device)
        encoded = [[encode(plan.texts[i][r], negatives[i] if guided else None) for r in range(len(plan.cast))]
                   for i in range(n)]
        ident.texts = _region_texts(encoded, guided, empty, pad).to(device, dtype)
        ident.photos = region_photos(plan.cast, photos, n, guided, device, dtype)
    elif len(characters) == 1 and characters[0] in photos:
        ident.photo = photo_for(*photos[characters[0]], n, guided, device, dtype)
    return None if ident.empty else ident


def check_story(story: Story) -> None:
    """InputError in plain words for a photo or a region that cannot be drawn, before any work."""
    from ...project.regions import box_problem
    from ..errors import InputError
    from .photos import open_photo, strength_problem

    shown = {name for p in story.panels for name in p.characters}
    for character in story.characters:
        if character.name not in shown or not character.photo:
            continue
        problem = strength_problem(character.photo_strength)
        if problem:
            raise InputError(f"[{character.name}]: {problem}, not {character.photo_strength!r}.")
        open_photo(character.photo, character.name)
    for number, panel in enumerate(story.panels, 1):
        for region in panel.regions or ():
            problem = box_problem(region.box)
            if problem:
                raise InputError(f"Panel {number}: the box of [{region.character}] is wrong: {problem}.")
