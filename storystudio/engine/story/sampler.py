"""The story's step loop: references and panels denoised together, one step at a time.

At step *s* every group of pictures makes one UNet call, references first: a
character's reference images (the write) deposit their sampled keys and
values of step *s*, then the panels that show the character read them (the
read), and the step's banks are dropped. No bank outlives its step unless a
:class:`~..attention.bank.BankWriter` keeps it; panels whose characters come
from a kept bank read it through a :class:`~..attention.bank.BankFeed`.

Each group has its own scheduler (multistep samplers keep history), its own
latents and one generator per picture, so a picture does not depend on what
it is batched with. The loop is diffusers' Stable Diffusion / SDXL denoising
loop, written out so that several groups can share a step.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..attention.bank import BankFeed, BankWriter
from ..attention.config import Phase
from ..attention.consistent import ConsistentAttention
from ..errors import GenerationCancelled
from .controls import GroupGuides, StoryControls
from .prompts import EncodedPrompt


@dataclass
class Group:
    """Pictures of one size denoised together in one UNet call per step."""

    phase: Phase
    keys: list[str]
    size: tuple[int, int]  # (width, height)
    seeds: list[int]
    prompts: list[EncodedPrompt]
    character: str | None = None  # write: whose references
    sample_seed: int = 0  # write: seeds the token samples
    chosen: list[int] | None = None  # write: the references the panels read (all when None)
    cast: tuple[str, ...] = ()  # read: whose banks
    record: BankWriter | None = None  # write: keep every step of the bank
    identity: Any = None  # .regions.GroupIdentity: regions and photos of these pictures (None: neither)
    # each picture's ControlNet guide pictures at the group's size, by kind (empty: none; see .controls)
    guides: list[dict[str, Any]] = field(default_factory=list)
    # set by the sampler
    latents: torch.Tensor | None = field(default=None, repr=False)
    scheduler: Any = field(default=None, repr=False)
    generators: list[torch.Generator] = field(default_factory=list, repr=False)
    embeds: torch.Tensor | None = field(default=None, repr=False)
    added: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    control: GroupGuides | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return len(self.keys)


@dataclass
class StepReport:
    """What the loop tells its caller after each UNet call."""

    group: Group
    step: int  # steps done by this group (1..steps)
    steps: int
    work_done: int  # picture-steps done in the whole run
    work_total: int
    latents: torch.Tensor


class StorySampler:
    """Runs groups of pictures through the denoising steps in lockstep."""

    def __init__(self, pipe: Any, csa: ConsistentAttention, device: torch.device, arch: str,
                 controls: StoryControls | None = None, cross: Any = None):
        self.pipe = pipe
        self.csa = csa
        self.controls = controls  # the run's ControlNets, when a picture has a guide
        self.cross = cross  # attention.regions.RegionalCrossAttention, when some group has regions or photos
        self.device = torch.device(device)
        self.arch = arch
        self.unet = pipe.unet
        self.call_phase = "plain"  # for timers: the phase of the UNet call in progress

    # ---- preparing ------------------------------------------------------------------------
    def _initial_latents(self, seeds: list[int], size: tuple[int, int]) -> torch.Tensor:
        # Noise is drawn on the CPU so that a seed gives the same picture on every device.
        width, height = size
        shape = (1, self.unet.config.in_channels, height // self.pipe.vae_scale_factor,
                 width // self.pipe.vae_scale_factor)
        noise = [torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds]
        return torch.cat(noise).to(self.device, self.unet.dtype)

    def _conditioning(self, group: Group, guided: bool) -> None:
        cond = torch.cat([p.cond for p in group.prompts])
        if guided:
            cond = torch.cat([torch.cat([p.uncond for p in group.prompts]), cond])
        group.embeds = cond.to(self.device, self.unet.dtype)
        if self.arch != "sdxl":
            return
        pooled = torch.cat([p.pooled for p in group.prompts])
        width, height = group.size
        # SDXL's micro-conditioning, as diffusers' pipeline sets it by default: original = target = the size.
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=group.embeds.dtype)
        time_ids = time_ids.repeat(group.n, 1)
        if guided:
            pooled = torch.cat([torch.cat([p.negative_pooled for p in group.prompts]), pooled])
            time_ids = torch.cat([time_ids, time_ids])
        group.added = {"text_embeds": pooled.to(self.device, self.unet.dtype), "time_ids": time_ids.to(self.device)}

    def prepare(self, groups: list[Group], steps: int, guided: bool) -> torch.Tensor:
        """Latents, schedulers, generators and conditioning of every group; returns the timesteps."""
        base = self.pipe.scheduler
        base.set_timesteps(steps, device=self.device)
        timesteps = base.timesteps
        for group in groups:
            group.scheduler = copy.deepcopy(base)
            group.latents = self._initial_latents(group.seeds, group.size) * base.init_noise_sigma
            group.generators = [torch.Generator().manual_seed(s + 1) for s in group.seeds]
            self._conditioning(group, guided)
            group.control = None
            if self.controls is not None and any(group.guides):
                group.control = self.controls.prepare(group.guides, 2 if guided else 1, self.device, self.unet.dtype)
        return timesteps

    def _step_kwargs(self, scheduler: Any, group: Group) -> dict[str, Any]:
        accepted = set(inspect.signature(scheduler.step).parameters)
        kwargs: dict[str, Any] = {}
        if "eta" in accepted:
            kwargs["eta"] = 0.0
        if "generator" in accepted:
            kwargs["generator"] = group.generators
        return kwargs

    # ---- running ------------------------------------------------------------------------------
    @torch.no_grad()
    def run(
        self,
        groups: list[Group],
        steps: int,
        guidance: float,
        kept: BankFeed | None = None,
        on_step: Callable[[StepReport], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> None:
        """Denoise every group (writes first, in the order given); each group's ``latents`` hold the result."""
        guided = guidance > 1
        halves = 2 if guided else 1
        timesteps = self.prepare(groups, steps, guided)
        # The schedulers get the step's timestep on the CPU: indexing their tables with a GPU tensor would
        # wait for the GPU at every call.
        host_steps = timesteps.cpu()
        step_kwargs = {id(g): self._step_kwargs(g.scheduler, g) for g in groups}
        work_total = sum(g.n for g in groups) * len(timesteps)
        work_done = 0
        self.csa.start(len(timesteps), self.device, self.unet.dtype)
        for i, t in enumerate(timesteps):
            self.csa.begin_step(i)
            kept_banks = kept.get(i) if kept is not None else {}
            for group in groups:
                if cancel is not None and cancel():
                    raise GenerationCancelled()
                latents = group.latents
                model_in = torch.cat([latents, latents]) if guided else latents
                model_in = group.scheduler.scale_model_input(model_in, t)
                self.call_phase = group.phase.value
                # ControlNet residuals for the guided pictures of this call (none outside the guides' steps)
                control = {} if group.control is None else self.controls.residuals(
                    group.control, i, len(timesteps), model_in, t, group.embeds, group.added)
                with self._phase(group, halves, kept_banks) as bank, self._identity(group):
                    noise = self.unet(model_in, t, encoder_hidden_states=group.embeds, added_cond_kwargs=group.added,
                                      return_dict=False, **control)[0]
                if group.record is not None:
                    group.record.put(bank)
                if guided:
                    uncond, cond = noise.chunk(2)
                    noise = uncond + guidance * (cond - uncond)
                group.latents = group.scheduler.step(noise, host_steps[i], latents, **step_kwargs[id(group)],
                                                     return_dict=False)[0]
                work_done += group.n
                if on_step is not None:
                    on_step(StepReport(group, i + 1, len(timesteps), work_done, work_total, group.latents))

    def _phase(self, group: Group, halves: int, kept_banks: dict):
        if group.phase is Phase.WRITE:
            latent_hw = (group.size[1] // self.pipe.vae_scale_factor, group.size[0] // self.pipe.vae_scale_factor)
            return self.csa.write(group.character, group.n, group.sample_seed, latent_hw, self.device, group.chosen)
        if group.phase is Phase.READ:
            banks = [kept_banks[c] if c in kept_banks else self.csa.step_bank(c) for c in group.cast]
            layout = group.identity.layout if group.identity is not None else None
            return self.csa.read(banks, group.n, halves, regions=layout)
        return self.csa.plain(group.n)

    def _identity(self, group: Group):
        """The cross-attention's regional texts and photos for this group's UNet call (nothing when it has none)."""
        ident = group.identity
        if self.cross is None or ident is None or ident.empty:
            return contextlib.nullcontext()
        return self.cross.call(ident.layout, ident.texts, ident.photos, ident.photo, ident.kept)


class UnetTimer:
    """Seconds of every UNet call, by phase.

    On CUDA it records events on the compute stream instead of synchronising,
    so that kept banks' copies on the side stream still overlap the compute.
    """

    def __init__(self, unet: torch.nn.Module, device: torch.device, phase_of: Callable[[], str]):
        self.unet = unet
        self.cuda = device.type == "cuda"
        self.phase_of = phase_of
        self.seconds: dict[str, list[float]] = {}
        self._open: Any = None
        self._events: list[tuple[str, Any, Any]] = []
        self._hooks: list[Any] = []

    def _mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _pre(self, *_: Any) -> None:
        self._open = self._mark()

    def _post(self, *_: Any) -> None:
        self._events.append((self.phase_of(), self._open, self._mark()))

    def __enter__(self) -> UnetTimer:
        self._hooks = [self.unet.register_forward_pre_hook(self._pre), self.unet.register_forward_hook(self._post)]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._hooks:
            h.remove()
        if self.cuda:
            torch.cuda.synchronize()
        for phase, a, b in self._events:
            secs = a.elapsed_time(b) / 1000 if self.cuda else b - a
            self.seconds.setdefault(phase, []).append(secs)
