"""Consistent self-attention (StoryDiffusion) as diffusers attention processors.

The self-attention (``attn1``) of the chosen UNet layers is replaced by
:class:`ConsistentAttnProcessor`. All state lives in one
:class:`ConsistentAttention` object per UNet: the phase (plain, write, read),
the denoising step, the token samples of the step and the banks.

- **write**: the images of one batch are one character's reference images.
  Each attends to its own tokens plus a random sample of the tokens of the
  other references; the samples are stored in the character's bank.
- **read**: every image of the batch shows the same set of characters and
  attends to its own tokens plus the banked tokens of those characters.

Both are one ``scaled_dot_product_attention`` call per layer with no mask:
the extra keys and values are gathered and concatenated in front of the call.
The conditional and unconditional halves of a classifier-free-guidance batch
only ever see tokens of their own half.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

import torch
import torch.nn.functional as F

from .bank import BankFeed, BankWriter, CharacterBank
from .config import ConsistencyConfig, Phase


def _seed_of(*parts: object) -> int:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def block_scale(unet: torch.nn.Module, module_name: str) -> int:
    """How many times the UNet has downsampled the latent where this module runs."""
    levels = len(unet.config.block_out_channels)
    parts = module_name.split(".")
    if parts[0] == "down_blocks":
        return 2 ** int(parts[1])
    if parts[0] == "up_blocks":
        return 2 ** (levels - 1 - int(parts[1]))
    return 2 ** (levels - 1)  # mid_block


@dataclass
class LayerInfo:
    name: str
    index: int
    rate: float


@dataclass
class _StepDraw:
    """Random choices of one step: which layers act, which tokens are sampled."""

    gates: torch.Tensor  # bool per layer
    samples: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)


class ConsistentAttention:
    """Consistent self-attention on one UNet: installs processors and holds their state.

    Use as a context manager (or :meth:`install` / :meth:`uninstall`); the UNet's
    original processors are put back on exit. Between the two, run pipeline calls
    inside :meth:`plain`, :meth:`write` or :meth:`read`.
    """

    def __init__(self, unet: torch.nn.Module, config: ConsistencyConfig | None = None, seed: int = 0):
        self.unet = unet
        self.config = config or ConsistencyConfig()
        self.seed = int(seed)
        self.phase = Phase.PLAIN
        self.step = -1
        self.n_images = 1
        self.layers: dict[str, LayerInfo] = {}
        self._saved: dict[str, Any] | None = None
        self._hook: Any = None
        self._draw: _StepDraw | None = None
        self._writer: BankWriter | None = None
        self._write_seed = 0
        self._feed: BankFeed | None = None
        self._read_flats: list[torch.Tensor] = []
        self._read_banks: list[CharacterBank] = []
        self._others: dict[tuple[int, str], torch.Tensor] = {}
        self.calls = {"consistent": 0, "plain": 0}  # processor calls by path, for tests and reports

    # ---- installing -------------------------------------------------------------
    def _chosen_layers(self) -> list[str]:
        names = []
        for proc_name in self.unet.attn_processors:
            module_name = proc_name.removesuffix(".processor")
            if module_name.endswith("attn1") and module_name.startswith(self.config.layers):
                names.append(module_name)
        return names

    def install(self) -> ConsistentAttention:
        if self._saved is not None:
            return self
        chosen = self._chosen_layers()
        if not chosen:
            raise ValueError(f"this UNet has no self-attention layers under {', '.join(self.config.layers)}")
        scales = {n: block_scale(self.unet, n) for n in chosen}
        coarsest = max(scales.values())
        for i, n in enumerate(chosen):
            rate = self.config.rate_coarse if scales[n] == coarsest else self.config.rate_fine
            self.layers[n] = LayerInfo(n, i, rate)
        self._saved = dict(self.unet.attn_processors)
        procs = {}
        for proc_name, proc in self._saved.items():
            module_name = proc_name.removesuffix(".processor")
            procs[proc_name] = ConsistentAttnProcessor(self, self.layers[module_name]) if module_name in self.layers else proc
        self.unet.set_attn_processor(procs)
        self._hook = self.unet.register_forward_pre_hook(self._on_unet_call)
        return self

    def uninstall(self) -> None:
        if self._saved is None:
            return
        self.unet.set_attn_processor(self._saved)
        self._hook.remove()
        self._saved = None
        self._hook = None
        self.layers.clear()

    def __enter__(self) -> ConsistentAttention:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    # ---- phases -----------------------------------------------------------------
    def _begin(self, phase: Phase, n_images: int) -> None:
        if self._saved is None:
            raise RuntimeError("consistent attention is not installed on the UNet")
        self.phase = phase
        self.n_images = int(n_images)
        self.step = -1
        self._draw = None

    def _end(self) -> None:
        self.phase = Phase.PLAIN
        self.step = -1
        self._draw = None
        self._writer = None
        if self._feed is not None:
            self._feed.close()
        self._feed = None
        self._read_flats = []
        self._read_banks = []

    @contextlib.contextmanager
    def plain(self, n_images: int = 1) -> Iterator[None]:
        """Plain self-attention for every image (panels without characters)."""
        self._begin(Phase.PLAIN, n_images)
        try:
            yield
        finally:
            self._end()

    @contextlib.contextmanager
    def write(
        self, character: str, n_images: int, sample_seed: int, keep_on: str = "host", steps: int = 50
    ) -> Iterator[dict]:
        """Generate one character's reference images together and record its bank.

        The yielded dict receives the finished bank under ``"bank"`` when the
        block ends without error.
        """
        self._begin(Phase.WRITE, n_images)
        self._writer = BankWriter(character, keep_on=keep_on, expected_steps=steps)
        self._write_seed = int(sample_seed)
        out: dict[str, Any] = {}
        try:
            yield out
            out["bank"] = self._writer.finish({"sample_seed": self._write_seed, "n_images": n_images})
        finally:
            self._end()

    @contextlib.contextmanager
    def read(self, banks: list[CharacterBank], n_images: int, device: torch.device | str) -> Iterator[None]:
        """Generate panels that show the characters of ``banks`` (all images of the batch alike)."""
        if not banks:
            with self.plain(n_images):
                yield
            return
        for bank in banks:
            missing = set(self.layers) - set(bank.slots)
            if missing:
                raise ValueError(
                    f"the bank of {bank.character} was made with other consistency layers; generate its references again"
                )
        self._begin(Phase.READ, n_images)
        self._read_banks = list(banks)
        self._feed = BankFeed(self._read_banks, torch.device(device))
        try:
            yield
        finally:
            self._end()

    # ---- per step -----------------------------------------------------------------
    def _on_unet_call(self, module: torch.nn.Module, args: tuple) -> None:
        if self.phase is Phase.WRITE and self.step >= 0:
            self._writer.end_step()
        self.step += 1
        self._draw = None
        if self.phase is Phase.READ:
            have = min(b.num_steps for b in self._read_banks)
            if self.step >= have:
                raise ValueError(
                    f"the character references were made with {have} steps; this panel needs more. "
                    "Use the same number of steps or generate the references again."
                )
            self._read_flats = self._feed.get(self.step)

    def _step_draw(self) -> _StepDraw:
        if self._draw is None:
            g = torch.Generator().manual_seed(_seed_of("gate", self.seed, self.step))
            probs = torch.rand(len(self.layers), generator=g)
            self._draw = _StepDraw(gates=probs < self.config.probability(self.step))
        return self._draw

    def gate(self, layer: LayerInfo) -> bool:
        return bool(self._step_draw().gates[layer.index])

    def sample(self, tokens: int, k: int, device: torch.device) -> torch.Tensor:
        """Token indices (n_images, k) sampled for this step; shared by layers of one resolution."""
        draw = self._step_draw()
        key = (tokens, k)
        if key not in draw.samples:
            g = torch.Generator().manual_seed(_seed_of("tokens", self._write_seed, self.step, tokens))
            order = torch.rand(self.n_images, tokens, generator=g).argsort(dim=1)
            draw.samples[key] = order[:, :k].to(device)
        return draw.samples[key]

    def others_index(self, n: int, device: torch.device) -> torch.Tensor:
        """(n, n-1): for image i, the indices of the other images of its half."""
        key = (n, str(device))
        if key not in self._others:
            rows = [[j for j in range(n) if j != i] for i in range(n)]
            self._others[key] = torch.tensor(rows, dtype=torch.long, device=device)
        return self._others[key]

    def bank_tokens(self, layer: LayerInfo, halves: int) -> torch.Tensor:
        """The banked tokens of the panel's characters for this layer and step: (halves, N, C)."""
        parts = []
        for bank, flat in zip(self._read_banks, self._read_flats):
            t = bank.layer(flat, layer.name)
            if t.shape[0] != halves:
                # A bank written with guidance read without it (or the other way round):
                # the conditional half is the last one.
                t = t[-1:].expand(halves, -1, -1)
            parts.append(t)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def put_bank(self, layer: LayerInfo, tokens: torch.Tensor) -> None:
        self._writer.put(layer.name, tokens)


class ConsistentAttnProcessor:
    """Self-attention processor for one layer; its behaviour follows the shared state."""

    def __init__(self, state: ConsistentAttention, layer: LayerInfo):
        self.state = state
        self.layer = layer

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        spatial = hidden_states.ndim == 4
        if spatial:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        x = hidden_states
        batch, tokens, _ = x.shape
        state = self.state
        phase = state.phase
        context = x
        if encoder_hidden_states is not None:
            phase = Phase.PLAIN  # cross-attention: nothing to make consistent
            context = encoder_hidden_states
            if attn.norm_cross:
                context = attn.norm_encoder_hidden_states(context)
        if attention_mask is not None:
            phase = Phase.PLAIN  # a caller's mask does not cover the borrowed tokens
            attention_mask = attn.prepare_attention_mask(attention_mask, context.shape[1], batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        query = attn.to_q(x)
        key = attn.to_k(context)
        value = attn.to_v(context)

        if phase is not Phase.PLAIN:
            n = state.n_images
            if batch % n:
                raise RuntimeError(f"batch of {batch} is not a multiple of {n} images")
            halves = batch // n
            if phase is Phase.WRITE:
                key, value = self._write(attn, x, key, value, halves, n, tokens)
            elif state.gate(self.layer):
                bank = state.bank_tokens(self.layer, halves).to(x.dtype)
                key, value = self._extend(attn, key, value, bank, halves, n, tokens)

        out = self._attend(attn, query, key, value, batch, attention_mask)
        if spatial:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def _write(self, attn, x, key, value, halves, n, tokens):
        state = self.state
        k = int(tokens * self.layer.rate)
        channels = x.shape[-1]
        idx = state.sample(tokens, k, x.device)  # (n, k)
        gather = idx.view(1, n, k, 1)
        sampled_x = x.view(halves, n, tokens, channels).gather(2, gather.expand(halves, n, k, channels))
        state.put_bank(self.layer, sampled_x.reshape(halves, n * k, channels))
        if n < 2 or k == 0 or not state.gate(self.layer):
            return key, value
        d = key.shape[-1]
        # Image i borrows the sampled tokens of every other image j != i of its half.
        others = state.others_index(n, x.device)
        out = []
        for t in (key, value):
            th = t.view(halves, n, tokens, d)
            sampled = th.gather(2, gather.expand(halves, n, k, d))
            borrowed = sampled[:, others].reshape(halves, n, (n - 1) * k, d)
            out.append(torch.cat([th, borrowed], dim=2).reshape(halves * n, tokens + (n - 1) * k, d))
        state.calls["consistent"] += 1
        return out[0], out[1]

    def _extend(self, attn, key, value, bank, halves, n, tokens):
        d = key.shape[-1]
        extra = bank.shape[1]
        out = []
        for t, proj in ((key, attn.to_k), (value, attn.to_v)):
            banked = proj(bank).view(halves, 1, extra, d).expand(halves, n, extra, d)
            out.append(torch.cat([t.view(halves, n, tokens, d), banked], dim=2).reshape(halves * n, tokens + extra, d))
        self.state.calls["consistent"] += 1
        return out[0], out[1]

    def _attend(self, attn, query, key, value, batch, mask=None):
        if key.shape[1] == query.shape[1]:
            self.state.calls["plain"] += 1
        heads = attn.heads
        head_dim = key.shape[-1] // heads
        q = query.view(batch, -1, heads, head_dim).transpose(1, 2)
        k = key.view(batch, -1, heads, head_dim).transpose(1, 2)
        v = value.view(batch, -1, heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False, scale=attn.scale)
        out = out.transpose(1, 2).reshape(batch, -1, heads * head_dim).to(query.dtype)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)
