"""Consistent self-attention (StoryDiffusion) as diffusers attention processors.

The self-attention (``attn1``) of the chosen UNet layers is replaced by
:class:`ConsistentAttnProcessor`. All state lives in one
:class:`ConsistentAttention` object per UNet; the processors only read it.

- **write**: the images of one UNet call are one character's reference
  images. Each attends to its own tokens plus a random sample of the tokens of
  the other references of its guidance half. The sampled keys and values are
  the character's bank for this step and this layer.
- **read**: every image of the call shows the same characters and attends to
  its own tokens plus the banked keys and values of those characters.

A story runs references and panels in one step loop (:mod:`..story.sampler`):
at step *s* the references deposit their sampled keys and values, the panels
read them at step *s*, and the step's bank is dropped. Nothing is kept across
steps unless a :class:`~.bank.BankWriter` asks for it.

**Launch-free and compile-friendly.** Every random choice of a run is drawn up
front or once per step, from seeded generators, as tensors: the gates of every
layer and step (:meth:`ConsistentAttention.start`), the token samples of a
step (:meth:`ConsistentAttention.write`). The per-layer path branches only on
Python values that are fixed for a phase (which phase, whether the step's
schedule is above zero); whether a layer's consistent attention acts is a
0/1 tensor that weighs the borrowed tokens' share of attention, so the same
kernels run whatever the draw. Own and borrowed tokens are attended by two
attention calls whose log-sum-exps merge them exactly into the softmax over
both: no mask, flash attention for both. Each processor reads only its own
:class:`LayerSlot` (tensors set by the state), never a table indexed by its
name, so ``torch.compile`` of the repeated blocks shares one graph among
layers of one shape.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .config import ConsistencyConfig, Phase
from .swap import ProcessorSwap

__all__ = ["ConsistencyConfig", "ConsistentAttention", "ConsistentAttnProcessor", "LayerInfo", "Phase",
           "attend_with_lse", "attention_kernel", "block_scale", "level_tokens"]


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


def level_tokens(scale: int, latent_hw: tuple[int, int]) -> int:
    """Tokens of one image at a UNet level: each downsampling halves a side, rounding up."""
    h, w = latent_hw
    while scale > 1:
        h, w, scale = -(-h // 2), -(-w // 2), scale // 2
    return h * w


def attention_kernel(device: torch.device, dtype: torch.dtype) -> str:
    """Which attention kernel gives a log-sum-exp on this device (decided once per run, not per call)."""
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        # flash attention 2 in torch needs an Ampere or newer GPU and half precision
        return "flash" if major >= 8 and dtype in (torch.float16, torch.bfloat16) else "efficient"
    return "cpu-flash" if device.type == "cpu" else "math"


def tokens_in(attn: Any, hidden_states: torch.Tensor, temb: torch.Tensor | None) -> tuple[torch.Tensor, Any]:
    """An attention layer's input as (batch, tokens, channels), normed as diffusers' processors norm it, and
    the feature map's shape to put the output back into (None when the input was tokens already)."""
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    shape = None
    if hidden_states.ndim == 4:
        shape = hidden_states.shape
        b, c, h, w = shape
        hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    return hidden_states, shape


def tokens_out(attn: Any, out: torch.Tensor, residual: torch.Tensor, shape: Any) -> torch.Tensor:
    """The attended tokens through the output projection, back into the input's shape, with the residual."""
    out = attn.to_out[1](attn.to_out[0](out))
    if shape is not None:
        out = out.transpose(-1, -2).reshape(shape)
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor


def split_heads(attn: Any, t: torch.Tensor, norm: Any = None) -> torch.Tensor:
    """(batch, tokens, heads x dim) -> (batch, heads, tokens, dim), with the layer's q/k norm if it has one."""
    batch, length, inner = t.shape
    t = t.view(batch, length, attn.heads, inner // attn.heads).transpose(1, 2)
    return norm(t) if norm is not None else t


def attend_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                    kernel: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output (B, H, L, d) and its log-sum-exp (B, H, L) in float32, by ``kernel``."""
    if kernel == "flash" and q.shape[-1] <= 256:
        out = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, False, False, scale=scale)
        return out[0], out[1]
    if kernel in ("flash", "efficient"):
        out = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True, 0.0, False, scale=scale)
        return out[0], out[1][..., : q.shape[-2]]
    if kernel == "cpu-flash":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, scale=scale)
        return out, lse.float()
    scores = (q.float() @ k.float().transpose(-1, -2)) * scale
    lse = torch.logsumexp(scores, dim=-1)
    out = torch.softmax(scores, dim=-1) @ v.float()
    return out.to(q.dtype), lse


def merge_attention(own: torch.Tensor, own_lse: torch.Tensor, extra: torch.Tensor, extra_lse: torch.Tensor,
                    log_gate: torch.Tensor) -> torch.Tensor:
    """Attention over own and extra keys together, from the two; ``log_gate`` -inf keeps ``own`` exactly.

    softmax over both = lerp(own, extra, w), w = e^lse_extra / (e^lse_own + e^lse_extra) = sigmoid(lse_e - lse_o);
    with the gate's log added, an "off" gate (-inf) makes w exactly 0. Tensors (B, H, L, d) and (B, H, L).
    """
    w = torch.sigmoid(extra_lse - own_lse + log_gate).unsqueeze(-1).to(own.dtype)
    return torch.lerp(own, extra, w)


@dataclass
class LayerInfo:
    name: str
    index: int
    rate: float
    scale: int  # how often the latent is downsampled where the layer runs


@dataclass
class LayerSlot:
    """What one processor reads and leaves in one UNet call (set by :class:`ConsistentAttention`)."""

    log_gate: torch.Tensor | None = None  # 0-d: 0.0 when consistent attention acts here at this step, else -inf
    samples: torch.Tensor | None = None  # write: (n, k) token indices per image
    others: torch.Tensor | None = None  # write: (n, n - 1) the other images of each image's half
    bank_k: torch.Tensor | None = None  # read: (halves, N, C) keys of the characters' references
    bank_v: torch.Tensor | None = None
    out_k: torch.Tensor | None = None  # write: (halves, n, k, C) this step's sampled keys, left by the processor
    out_v: torch.Tensor | None = None
    # read with regions (see .regions): each region's queries read only its own character's bank
    regions: Any = None  # .regions.LevelRegions of this layer's resolution
    region_banks: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per region (halves, N_r, C) keys, values


@dataclass
class StepBank:
    """One character's bank for one step: per layer, the sampled keys and values of its references."""

    keys: list[torch.Tensor]  # per layer (halves, n, k, C)
    values: list[torch.Tensor]
    chosen: list[int] | None = None  # the reference images whose tokens panels read (None: all)

    def layer(self, index: int, halves: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(halves, tokens, C) keys and values of one layer, for a reader with ``halves`` guidance halves."""
        k, v = self.keys[index], self.values[index]
        if self.chosen is not None:
            k, v = k[:, self.chosen], v[:, self.chosen]
        h, n, t, c = k.shape
        k, v = k.reshape(h, n * t, c), v.reshape(h, n * t, c)
        if h != halves:
            # Written with guidance, read without (or the other way round): the conditional half is the last.
            k, v = k[-1:].expand(halves, -1, -1), v[-1:].expand(halves, -1, -1)
        return k, v


class ConsistentAttention(ProcessorSwap):
    """Consistent self-attention on one UNet: installs processors and holds their state.

    Use as a context manager (or :meth:`install` / :meth:`uninstall`); the
    UNet's original processors are put back on exit. A run of ``steps``
    denoising steps starts with :meth:`start`; each step with
    :meth:`begin_step`; each UNet call happens inside :meth:`plain`,
    :meth:`write` or :meth:`read`.
    """

    def __init__(self, unet: torch.nn.Module, config: ConsistencyConfig | None = None, seed: int = 0):
        self.unet = unet
        self.config = config or ConsistencyConfig()
        self.seed = int(seed)
        self.phase = Phase.PLAIN
        self.active = False  # whether any layer may act at this step (the schedule's probability is above 0)
        self.step = -1
        self.n_images = 1
        self.layers: dict[str, LayerInfo] = {}
        self.slots: list[LayerSlot] = []
        self._gate_table: torch.Tensor | None = None  # (steps, layers) log-gates, 0 or -inf, drawn at start
        self._pin = False  # host tensors bound for the device are pinned (CUDA), so copies never wait
        self._gates: torch.Tensor | None = None  # (layers,) on the device: this step's row
        self._steps = 0
        self.kernel = "math"  # attention_kernel() of the run's device and dtype
        self.banks: dict[str, StepBank] = {}  # this step's bank of each character written so far

    # ---- installing -------------------------------------------------------------
    def _chosen_layers(self) -> list[str]:
        names = []
        for proc_name in self.unet.attn_processors:
            module_name = proc_name.removesuffix(".processor")
            if module_name.endswith("attn1") and module_name.startswith(self.config.layers):
                names.append(module_name)
        return names

    def install(self) -> ConsistentAttention:
        if self.installed:
            return self
        chosen = self._chosen_layers()
        if not chosen:
            raise ValueError(f"this UNet has no self-attention layers under {', '.join(self.config.layers)}")
        scales = {n: block_scale(self.unet, n) for n in chosen}
        coarsest = max(scales.values())
        for i, n in enumerate(chosen):
            rate = self.config.rate_coarse if scales[n] == coarsest else self.config.rate_fine
            self.layers[n] = LayerInfo(n, i, rate, scales[n])
        self.slots = [LayerSlot() for _ in chosen]

        def ours(module_name: str, proc: Any) -> ConsistentAttnProcessor | None:
            info = self.layers.get(module_name)
            return None if info is None else ConsistentAttnProcessor(self, info.rate, self.slots[info.index])

        self._swap(ours)
        return self

    def uninstall(self) -> None:
        if not self._restore():
            return
        self.layers.clear()
        self.slots = []
        self.banks = {}

    # ---- a run ----------------------------------------------------------------------
    def gate_table(self, steps: int) -> torch.Tensor:
        """(steps, layers): True where a layer uses consistent attention at a step (seeded by the story seed)."""
        rows = []
        for step in range(steps):
            g = torch.Generator().manual_seed(_seed_of("gate", self.seed, step))
            rows.append(torch.rand(len(self.layers), generator=g) < self.config.probability(step))
        return torch.stack(rows) if rows else torch.zeros(0, len(self.layers), dtype=torch.bool)

    def start(self, steps: int, device: torch.device | str, dtype: torch.dtype = torch.float32) -> None:
        """Draw the gates of every step of a run; each processor gets its own view of the step's row."""
        if not self.installed:
            raise RuntimeError("consistent attention is not installed on the UNet")
        device = torch.device(device)
        self.kernel = attention_kernel(device, dtype)
        self._steps = int(steps)
        self._pin = device.type == "cuda"
        on = self.gate_table(self._steps)
        table = torch.zeros(on.shape).masked_fill_(~on, float("-inf"))
        self._gate_table = table.pin_memory() if self._pin else table
        self._gates = torch.zeros(len(self.layers), device=device)
        for slot, gate in zip(self.slots, self._gates.unbind(0)):
            slot.log_gate = gate
        self.step = -1

    def begin_step(self, step: int) -> None:
        """Make ``step`` the current step: its gates go to the device, the last step's banks are dropped."""
        if self._gates is None or not 0 <= step < self._steps:
            raise RuntimeError(f"step {step} is outside the run that was started ({self._steps} steps)")
        self.step = int(step)
        self.active = self.config.probability(step) > 0
        self._gates.copy_(self._gate_table[step], non_blocking=True)
        self.banks = {}

    # ---- phases -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _phase(self, phase: Phase, n_images: int) -> Iterator[None]:
        if self._gates is None or self.step < 0:
            raise RuntimeError("begin a step of a started run before calling the UNet")
        self.phase, self.n_images = phase, int(n_images)
        try:
            yield
        finally:
            self.phase = Phase.PLAIN
            for slot in self.slots:
                slot.samples = slot.others = slot.bank_k = slot.bank_v = slot.out_k = slot.out_v = None
                slot.regions = slot.region_banks = None

    @contextlib.contextmanager
    def plain(self, n_images: int = 1) -> Iterator[None]:
        """Plain self-attention for every image (panels without characters)."""
        with self._phase(Phase.PLAIN, n_images):
            yield

    def samples(self, sample_seed: int, n_images: int, tokens: int, k: int) -> torch.Tensor:
        """(n_images, k) distinct token indices per image for this step (CPU; seeded by the writer and step)."""
        g = torch.Generator().manual_seed(_seed_of("tokens", int(sample_seed), self.step, tokens))
        idx = torch.rand(n_images, tokens, generator=g).argsort(dim=1)[:, :k]
        return idx.pin_memory() if self._pin else idx

    @contextlib.contextmanager
    def write(self, character: str, n_images: int, sample_seed: int, latent_hw: tuple[int, int],
              device: torch.device | str, chosen: Sequence[int] | None = None) -> Iterator[StepBank]:
        """One UNet call drawing ``character``'s reference images together; yields the step's bank.

        The bank (filled when the call returns) is also kept in :attr:`banks` for
        the panels read later in this step. ``chosen`` names the references whose
        tokens the panels read (all by default); the write itself always sees all.
        """
        device = torch.device(device)
        drawn: dict[int, torch.Tensor] = {}
        n = int(n_images)
        others = torch.tensor([[j for j in range(n) if j != i] for i in range(n)], dtype=torch.long)
        others = others.reshape(n, max(n - 1, 0))
        others = (others.pin_memory() if self._pin else others).to(device, non_blocking=True)
        for info, slot in zip(self.layers.values(), self.slots):
            tokens = level_tokens(info.scale, latent_hw)
            if info.scale not in drawn:
                idx = self.samples(sample_seed, n, tokens, int(tokens * info.rate))
                drawn[info.scale] = idx.to(device, non_blocking=True)
            slot.samples, slot.others = drawn[info.scale], others
        bank = StepBank([], [], list(chosen) if chosen is not None else None)
        with self._phase(Phase.WRITE, n):
            yield bank
            bank.keys = [slot.out_k for slot in self.slots]
            bank.values = [slot.out_v for slot in self.slots]
            if any(k is None for k in bank.keys):
                raise RuntimeError("a consistent-attention layer did not run in the write call")
        self.banks[character] = bank

    @contextlib.contextmanager
    def read(self, banks: Sequence[StepBank], n_images: int, halves: int, regions: Any = None) -> Iterator[None]:
        """One UNet call drawing panels that show the characters of ``banks`` (this step's banks).

        With ``regions`` (a :class:`.regions.RegionLayout` whose region r belongs to ``banks[r]``'s character),
        each region's queries read only that bank and queries outside every region read none.
        """
        if not banks:
            with self.plain(n_images):
                yield
            return
        if regions is not None:
            if regions.regions != len(banks):
                raise ValueError(f"{regions.regions} regions for {len(banks)} characters' banks")
            for info, slot in zip(self.layers.values(), self.slots):
                slot.region_banks = [b.layer(info.index, halves) for b in banks]
                slot.regions = regions.level(info.scale)
                slot.bank_k, slot.bank_v = min(slot.region_banks, key=lambda kv: kv[0].shape[1])
            with self._phase(Phase.READ, n_images):
                yield
            return
        for i, slot in enumerate(self.slots):
            parts = [b.layer(i, halves) for b in banks]
            if len(parts) == 1:
                slot.bank_k, slot.bank_v = parts[0]
            else:
                slot.bank_k = torch.cat([p[0] for p in parts], dim=1)
                slot.bank_v = torch.cat([p[1] for p in parts], dim=1)
        with self._phase(Phase.READ, n_images):
            yield

    def step_bank(self, character: str) -> StepBank:
        """The bank ``character``'s references left at this step (written earlier in the step)."""
        try:
            return self.banks[character]
        except KeyError:
            raise RuntimeError(f"[{character}]'s references were not drawn at step {self.step}") from None


class ConsistentAttnProcessor:
    """Self-attention processor for one layer; its behaviour follows the shared state and its slot."""

    def __init__(self, state: ConsistentAttention, rate: float, slot: LayerSlot):
        self.state = state
        self.rate = rate
        self.slot = slot

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
        hidden_states, shape = tokens_in(attn, hidden_states, temb)

        x = hidden_states
        phase = self.state.phase
        context = x
        if encoder_hidden_states is not None:
            phase = Phase.PLAIN  # cross-attention: nothing to make consistent
            context = encoder_hidden_states
            if attn.norm_cross:
                context = attn.norm_encoder_hidden_states(context)
        if attention_mask is not None:
            phase = Phase.PLAIN  # a caller's mask does not cover the borrowed tokens
        query = attn.to_q(x)
        key = attn.to_k(context)
        value = attn.to_v(context)

        if phase is Phase.WRITE:
            out = self._write(attn, query, key, value)
        elif phase is Phase.READ and self.state.active and self.slot.bank_k.shape[1] > 0:
            out = self._read(attn, query, key, value)
        else:
            out = self._plain(attn, query, key, value, attention_mask)
        return tokens_out(attn, out, residual, shape)

    # ---- the three paths ---------------------------------------------------------------
    @staticmethod
    def _tokens(t: torch.Tensor) -> torch.Tensor:
        batch, heads, length, d = t.shape
        return t.transpose(1, 2).reshape(batch, length, heads * d)

    def _plain(self, attn, query, key, value, mask=None):
        batch = query.shape[0]
        if mask is not None:
            mask = attn.prepare_attention_mask(mask, key.shape[1], batch)
            mask = mask.view(batch, attn.heads, -1, mask.shape[-1])
        q = split_heads(attn, query, attn.norm_q)
        k = split_heads(attn, key, attn.norm_k)
        v = split_heads(attn, value)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False, scale=attn.scale)
        return self._tokens(out).to(query.dtype)

    def _write(self, attn, query, key, value):
        slot, n = self.slot, self.state.n_images
        batch, tokens, channels = key.shape
        if batch % n:
            raise RuntimeError(f"batch of {batch} is not a multiple of {n} images")
        halves = batch // n
        idx = slot.samples
        k = idx.shape[1]
        gather = idx.view(1, n, k, 1).expand(halves, n, k, channels)
        sampled_k = key.view(halves, n, tokens, channels).gather(2, gather)
        sampled_v = value.view(halves, n, tokens, channels).gather(2, gather)
        slot.out_k, slot.out_v = sampled_k, sampled_v
        if n < 2 or k == 0 or not self.state.active:
            return self._plain(attn, query, key, value)
        # Image i borrows the sampled tokens of every other image j != i of its half.
        borrowed_k = sampled_k[:, slot.others].reshape(batch, (n - 1) * k, channels)
        borrowed_v = sampled_v[:, slot.others].reshape(batch, (n - 1) * k, channels)
        q = split_heads(attn, query, attn.norm_q)
        own, own_lse = attend_with_lse(q, split_heads(attn, key, attn.norm_k), split_heads(attn, value), attn.scale,
                                        self.state.kernel)
        extra, extra_lse = attend_with_lse(q, split_heads(attn, borrowed_k, attn.norm_k),
                                           split_heads(attn, borrowed_v), attn.scale, self.state.kernel)
        return self._tokens(merge_attention(own, own_lse, extra, extra_lse, slot.log_gate)).to(query.dtype)

    def _read(self, attn, query, key, value):
        slot, n = self.slot, self.state.n_images
        batch, tokens, channels = query.shape
        if batch % n:
            raise RuntimeError(f"batch of {batch} is not a multiple of {n} images")
        halves = batch // n
        bank_k, bank_v = slot.bank_k.to(query.dtype), slot.bank_v.to(query.dtype)
        q = split_heads(attn, query, attn.norm_q)
        own, own_lse = attend_with_lse(q, split_heads(attn, key, attn.norm_k), split_heads(attn, value), attn.scale,
                                        self.state.kernel)
        # Every panel of a half reads the same bank: one call with the half's panels side by side as queries.
        q_half = split_heads(attn, query.reshape(halves, n * tokens, channels), attn.norm_q)
        if slot.regions is not None:  # one call per region, each region's queries against its own bank
            banks = [(split_heads(attn, k.to(query.dtype), attn.norm_k), split_heads(attn, v.to(query.dtype)))
                     for k, v in slot.region_banks]
            extra, extra_lse = slot.regions.attend(q_half, banks, attn.scale, self.state.kernel)
        else:
            extra, extra_lse = attend_with_lse(q_half, split_heads(attn, bank_k, attn.norm_k),
                                               split_heads(attn, bank_v), attn.scale, self.state.kernel)
        heads, d = extra.shape[1], extra.shape[-1]
        # Merged in token order (batch, tokens, heads, d), where the side-by-side panels are already apart
        # (no copy when the kernel writes its output token-major, as flash attention does).
        extra = extra.transpose(1, 2).reshape(batch, tokens, heads, d).transpose(1, 2)
        extra_lse = extra_lse.view(halves, heads, n, tokens).transpose(1, 2).reshape(batch, heads, tokens)
        return self._tokens(merge_attention(own, own_lse, extra, extra_lse, slot.log_gate)).to(query.dtype)
