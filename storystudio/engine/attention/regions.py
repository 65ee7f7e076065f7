"""Characters kept apart in a shared panel: each character's region reads only that character.

A panel that shows several characters has one box per character (see
:mod:`storystudio.project.regions`). The UNet's tokens at each resolution are
sorted once per story and size into the regions (:func:`token_labels`,
:class:`RegionLayout`), as index tensors on the device; nothing is computed
per step from tensor values.

- **Self-attention (the read)**: the queries inside character A's box attend
  to their own picture's tokens *and* A's bank only; queries outside every box
  attend to their own picture's tokens only. Instead of a (queries x keys)
  mask, each region's queries are gathered (one index per region) and attended
  against that character's bank in one call; the results are put back in token
  order with one gather, next to an empty "no bank" entry (output 0,
  log-sum-exp -inf) for the background, and merged with the own-token
  attention by their log-sum-exps as every read is
  (:func:`~.consistent.merge_attention`: a weight of exactly 0 for the
  background).
- **Cross-attention (regional prompting)**: every query first attends to the
  panel's prompt without the characters' looks (the background text); then
  each region's queries, gathered per picture, attend to that character's
  text (its description with the panel's action), and, where the character
  has a reference photo, to the photo's IP-Adapter tokens. Cross-attention is
  per query, so this is exact: a token sees exactly its region's text.
  A character's photo in a picture of that character alone (its references,
  its solo panels) acts on every token.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .consistent import attend_with_lse, block_scale, split_heads, tokens_in, tokens_out
from .swap import ProcessorSwap

Box = tuple[float, float, float, float]

__all__ = ["CrossSlot", "LevelRegions", "Photo", "RegionLayout", "RegionalCrossAttention", "RegionalCrossAttnProcessor",
           "attend_regions", "level_grid", "token_labels"]


def level_grid(scale: int, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """(rows, columns) of tokens at a UNet level: each downsampling halves a side, rounding up."""
    h, w = latent_hw
    while scale > 1:
        h, w, scale = -(-h // 2), -(-w // 2), scale // 2
    return h, w


def token_labels(boxes: Sequence[Box], grid: tuple[int, int]) -> torch.Tensor:
    """(rows * columns,) long: 0 for a token outside every box, i + 1 for box i (later boxes in front).

    A token belongs to a box when its centre lies inside it; a box too small to
    hold any token centre at this resolution still gets the token under its
    own centre, so every region has at least one token at every level.
    """
    rows, cols = grid
    cy = (torch.arange(rows, dtype=torch.float64) + 0.5) / rows
    cx = (torch.arange(cols, dtype=torch.float64) + 0.5) / cols
    labels = torch.zeros(rows, cols, dtype=torch.long)
    for i, (left, top, right, bottom) in enumerate(boxes):
        inside = ((cy >= top) & (cy < bottom)).unsqueeze(1) & ((cx >= left) & (cx < right)).unsqueeze(0)
        labels[inside] = i + 1
    for i, (left, top, right, bottom) in enumerate(boxes):
        if not (labels == i + 1).any():
            r = min(int((top + bottom) / 2 * rows), rows - 1)
            c = min(int((left + right) / 2 * cols), cols - 1)
            labels[r, c] = i + 1
    return labels.reshape(-1)


@dataclass
class LevelRegions:
    """Index tensors of one resolution for one UNet call's pictures (all on the device)."""

    tokens: int  # tokens of one picture at this level
    # Self-attention, the pictures of a guidance half side by side (n * tokens positions):
    queries: list[torch.Tensor]  # per region (L_r,): the positions inside region r
    inverse: torch.Tensor  # (n * tokens,): where each position's result sits in [empty, region 0, region 1, ...]
    # Cross-attention, per picture (rows of the call, guidance halves included), all regions at once:
    rows: torch.Tensor  # (batch, R * M): region r's tokens of each row at [r * M, (r + 1) * M), padded by repeats
    rows_inverse: torch.Tensor  # (batch, tokens): where each token's result sits in [plain | the R * M]
    width: int  # M, the most tokens a region has in one picture

    def attend(self, q: torch.Tensor, banks: Sequence[tuple[torch.Tensor, torch.Tensor]], scale: float,
               kernel: str) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`attend_regions` at this level."""
        return attend_regions(q, banks, self, scale, kernel)


class RegionLayout:
    """The regions of one UNet call's pictures at every resolution, made once per story and size."""

    def __init__(self, boxes: Sequence[Sequence[Box]], latent_hw: tuple[int, int], scales: Sequence[int],
                 halves: int, device: torch.device | str):
        """``boxes[i][r]``: picture i's box of region r (every picture has the same regions, in cast order)."""
        self.n = len(boxes)
        self.regions = len(boxes[0]) if boxes else 0
        if any(len(b) != self.regions for b in boxes):
            raise ValueError("every picture of one UNet call needs the same number of regions")
        self.latent_hw = tuple(latent_hw)
        self.halves = int(halves)
        self.levels: dict[int, LevelRegions] = {}
        device = torch.device(device)
        for scale in sorted(set(scales)):
            self.levels[scale] = self._level(boxes, level_grid(scale, latent_hw), device)

    def _level(self, boxes, grid, device) -> LevelRegions:
        tokens = grid[0] * grid[1]
        labels = torch.stack([token_labels(b, grid) for b in boxes])  # (n, tokens)
        flat = labels.reshape(-1)
        queries, inverse = [], torch.zeros(flat.shape[0], dtype=torch.long)
        offset = 1  # position 0 is the empty entry the background reads
        for r in range(self.regions):
            where = (flat == r + 1).nonzero().squeeze(1)
            queries.append(where)
            inverse[where] = offset + torch.arange(where.shape[0])
            offset += where.shape[0]
        # Cross-attention: every region of a picture padded to one width, so that all regions of all
        # pictures are one attention call (batch * R rows of M queries).
        per = [[(labels[i] == r + 1).nonzero().squeeze(1) for r in range(self.regions)] for i in range(self.n)]
        width = max((p.shape[0] for row in per for p in row), default=1)
        rows = torch.zeros(self.n, self.regions * width, dtype=torch.long)
        rows_inverse = torch.arange(tokens).repeat(self.n, 1)  # positions 0..tokens-1: the plain result
        for i, row in enumerate(per):
            for r, p in enumerate(row):
                start = r * width
                rows[i, start : start + width] = torch.cat([p, p[-1:].expand(width - p.shape[0])])
                rows_inverse[i, p] = tokens + start + torch.arange(p.shape[0])
        # Every guidance half holds the same pictures in the same order.
        rows, rows_inverse = rows.repeat(self.halves, 1), rows_inverse.repeat(self.halves, 1)
        return LevelRegions(tokens, [q.to(device) for q in queries], inverse.to(device), rows.to(device),
                            rows_inverse.to(device), width)

    def level(self, scale: int) -> LevelRegions:
        return self.levels[scale]


def attend_regions(q: torch.Tensor, banks: Sequence[tuple[torch.Tensor, torch.Tensor]], level: LevelRegions,
                   scale: float, kernel: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Each region's queries against its own bank; (out, lse) in the queries' order, background (0, -inf).

    ``q``: (halves, heads, n * tokens, d), the pictures of a half side by side; ``banks[r]``: (halves, heads,
    N_r, d) keys and values of region r's character.
    """
    halves, heads, _, d = q.shape
    outs = [q.new_zeros(halves, heads, 1, d)]
    lses = [q.new_full((halves, heads, 1), float("-inf"), dtype=torch.float32)]
    for index, (k, v) in zip(level.queries, banks):
        out, lse = attend_with_lse(q.index_select(2, index), k, v, scale, kernel)
        outs.append(out)
        lses.append(lse.float())
    return torch.cat(outs, 2).index_select(2, level.inverse), torch.cat(lses, 2).index_select(2, level.inverse)


# ---- cross-attention: regional prompts and reference photos -----------------------------------------------

@dataclass
class Photo:
    """Reference photos' IP-Adapter tokens for one UNet call, and their strengths.

    Acting on the whole picture: ``tokens`` (batch, T, C), ``strength`` a float.
    Acting in regions: ``tokens`` (batch * R, T, C), row b * R + r for region r
    of row b (zeros for a region without a photo), ``strength`` (batch * R, 1, 1).
    """

    tokens: torch.Tensor
    strength: float | torch.Tensor


@dataclass
class CrossSlot:
    """What one cross-attention processor reads in one UNet call (set by :class:`RegionalCrossAttention`)."""

    level: LevelRegions | None = None  # None: no regions in this call
    texts: torch.Tensor | None = None  # (batch * R, L, C): region r's text for row b at b * R + r
    photos: Photo | None = None  # the regions' photos
    photo: Photo | None = None  # a photo acting on every token (a picture of its character alone)
    # This layer's keys and values of the call's fixed inputs (texts, photos), kept for the whole run: they
    # do not change from step to step. A dict owned by the group being drawn.
    kept: dict | None = None

    @property
    def active(self) -> bool:
        return self.level is not None or self.photo is not None


class RegionalCrossAttention(ProcessorSwap):
    """Regional prompts and reference photos on one UNet's cross-attention (``attn2``) layers.

    Installed for a run (context manager); the original processors are put back
    on exit. Outside :meth:`call` every processor hands its work to the
    original processor unchanged. ``photo_layers`` maps a cross-attention
    module's name to its IP-Adapter key and value projections (from
    :mod:`..story.photos`); layers without them ignore photos.
    """

    def __init__(self, unet: torch.nn.Module, photo_layers: dict[str, tuple[Any, Any]] | None = None):
        self.unet = unet
        self.photo_layers = dict(photo_layers or {})
        self.slots: dict[str, CrossSlot] = {}
        self.scales: dict[str, int] = {}

    def install(self) -> RegionalCrossAttention:
        if self.installed:
            return self

        def ours(module_name: str, proc: Any) -> RegionalCrossAttnProcessor | None:
            if not module_name.endswith("attn2"):
                return None
            slot = self.slots.setdefault(module_name, CrossSlot())
            self.scales[module_name] = block_scale(self.unet, module_name)
            return RegionalCrossAttnProcessor(proc, slot, self.photo_layers.get(module_name))

        self._swap(ours)
        return self

    def uninstall(self) -> None:
        if self._restore():
            self.slots.clear()

    @property
    def levels_needed(self) -> set[int]:
        return set(self.scales.values())

    @contextlib.contextmanager
    def call(self, layout: RegionLayout | None = None, texts: torch.Tensor | None = None,
             photos: Photo | None = None, photo: Photo | None = None, kept: dict | None = None) -> Iterator[None]:
        """One UNet call with regions (``layout``, the regions' ``texts`` and ``photos``, see :class:`CrossSlot`)
        and/or a whole-picture ``photo``. ``kept`` (one dict per group of pictures, the same at every step)
        lets each layer keep the keys and values of these inputs instead of projecting them at every step."""
        if layout is not None and texts is None:
            raise ValueError("regions need their texts")
        kept = {} if kept is None else kept
        for name, slot in self.slots.items():
            slot.level = layout.level(self.scales[name]) if layout is not None else None
            slot.texts, slot.photos, slot.photo = texts, photos, photo
            slot.kept = kept.setdefault(name, {})
        try:
            yield
        finally:
            for slot in self.slots.values():
                slot.level = slot.texts = slot.photos = slot.photo = slot.kept = None


class RegionalCrossAttnProcessor:
    """Cross-attention for one layer: the original processor, or regional text and photos (see module doc)."""

    def __init__(self, base: Any, slot: CrossSlot, photo_kv: tuple[Any, Any] | None):
        self.base = base
        self.slot = slot
        self.photo_kv = photo_kv

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args: Any,
                 **kwargs: Any) -> torch.Tensor:
        slot = self.slot
        if not slot.active or attention_mask is not None or encoder_hidden_states is None \
                or isinstance(encoder_hidden_states, tuple):
            return self.base(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        residual = hidden_states
        hidden_states, shape = tokens_in(attn, hidden_states, temb)

        query = attn.to_q(hidden_states)
        batch, _, inner = query.shape
        context = encoder_hidden_states
        if attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        out = self._sdpa(attn, query, attn.to_k(context), attn.to_v(context))
        if slot.photo is not None:
            out = out + slot.photo.strength * self._sdpa(attn, query, *self._kept_photo(slot.photo, "photo"),
                                                          norm_k=False)
        if slot.level is not None:
            level = slot.level
            regions = level.rows.shape[1] // level.width
            # All regions of all rows in one call: row b's region r is row b * R + r of M gathered queries.
            q = query.gather(1, level.rows.unsqueeze(-1).expand(-1, -1, inner))
            q = q.view(batch * regions, level.width, inner)
            part = self._sdpa(attn, q, *self._kept_text(attn, slot.texts))
            if slot.photos is not None:
                part = part + slot.photos.strength * self._sdpa(attn, q, *self._kept_photo(slot.photos, "photos"),
                                                                norm_k=False)
            out = torch.cat([out, part.view(batch, regions * level.width, inner)], 1)
            out = out.gather(1, level.rows_inverse.unsqueeze(-1).expand(-1, -1, inner))
        return tokens_out(attn, out, residual, shape)

    def _sdpa(self, attn: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              norm_k: bool = True) -> torch.Tensor:
        q = split_heads(attn, query, attn.norm_q)
        k = split_heads(attn, key, attn.norm_k if norm_k else None)
        v = split_heads(attn, value)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False, scale=attn.scale)
        batch, heads, length, d = out.shape
        return out.transpose(1, 2).reshape(batch, length, heads * d).to(query.dtype)

    def _kept_text(self, attn: Any, texts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept = self.slot.kept
        if "text" not in kept:
            context = attn.norm_encoder_hidden_states(texts) if attn.norm_cross else texts
            kept["text"] = (attn.to_k(context), attn.to_v(context))
        return kept["text"]

    def _kept_photo(self, photo: Photo, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        kept = self.slot.kept
        if key not in kept:
            if self.photo_kv is None:
                raise RuntimeError("a photo reached a cross-attention layer without IP-Adapter weights")
            to_k, to_v = self.photo_kv
            # As diffusers' IP-Adapter attention: the photo's tokens through the adapter's own projections.
            kept[key] = (to_k(photo.tokens), to_v(photo.tokens))
        return kept[key]
