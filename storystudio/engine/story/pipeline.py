"""The StoryDiffusion image stage: write each character's references, then read every panel.

1. **write**: for each character, its first ``id_length`` panels that show only
   that character are generated together, with consistent attention among
   them; the sampled tokens are kept as the character's bank.
2. **read**: every other panel is generated with its own tokens plus the banks
   of the characters it shows (plain attention when it shows nobody), alone or
   in batches of panels that show the same characters at the same size.

A panel may have its own size (the shape of its comic frame). References are
always drawn at the settings' size, so that a bank does not change when a frame
does; a reference panel of another size is drawn a second time in the read
phase, at its own size, and its write picture is kept as a reference only.
Reading works at any size: a bank holds tokens, not a grid, and they are
added to the keys and values of the panel's own tokens, however many those are.

Each panel's noise comes from its own seed, derived from the story seed and
the panel's key, so regenerating one panel reproduces it and a new variation
number gives a new picture with the same characters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from ...project.story import Panel, Story
from ..attention.bank import CharacterBank
from ..attention.consistent import ConsistentAttention
from ..errors import GenerationCancelled, InputError
from ..imaging import decode_latents, preview_image
from ..models.loading import LoadedModel
from .settings import (  # noqa: F401  (derive_seed and the checks are part of the pipeline's interface)
    FREEU_DEFAULT,
    SCHEDULERS,
    CancelToken,
    GenerationSettings,
    check_panel_sizes,
    derive_seed,
    size_problems,
)
from .styles import get_style

@dataclass
class Progress:
    phase: str  # "write", "read" or "plain"
    panel_keys: list[str]
    step: int  # steps done in this batch (1..steps)
    steps: int
    panels_done: int
    panels_total: int
    preview: Image.Image | None = None


@dataclass
class PanelImage:
    """One generated picture with everything needed to make it again."""

    key: str
    image: Image.Image
    role: str  # "reference" (write phase), "panel" (read or plain) or "sheet" (extra reference)
    parameters: dict[str, Any]
    seconds: float


@dataclass
class StoryResult:
    images: dict[str, PanelImage]  # story panels by key, in story order
    # Reference pictures that are no panel's picture: sheets drawn for characters with no solo
    # panel (role "sheet"), and the references of solo panels whose own size differs from the
    # settings' (role "reference", key "reference-<panel key>"; the panel is drawn again at its size).
    sheets: list[PanelImage]
    banks: dict[str, CharacterBank]
    messages: list[str]
    unet_calls: dict[str, list[float]]  # seconds per UNet call by phase

    @property
    def bank_bytes(self) -> int:
        return sum(b.nbytes for b in self.banks.values())


@dataclass
class _Job:
    """One pipeline call: prompts generated together."""

    phase: str
    keys: list[str]
    prompts: list[str]  # styled, characters expanded
    negatives: list[str]
    seeds: list[int]
    characters: list[str]
    role: str
    base_prompts: list[str] = field(default_factory=list)
    size: tuple[int, int] = (768, 768)  # (width, height) of every picture of the call
    # Write jobs only: reference panels of another size, drawn again at their size in the read phase.
    redrawn: set[str] = field(default_factory=set)


class StoryPipeline:
    """Generates a story's panels with consistent characters over a loaded diffusers pipeline."""

    def __init__(self, model: LoadedModel):
        self.model = model
        self.pipe = model.pipe

    # ---- planning -------------------------------------------------------------
    def check_prompts(self, story: Story, settings: GenerationSettings) -> list[str]:
        """Plain messages for prompts the text encoder will cut short."""
        tok = self.pipe.tokenizer
        limit = tok.model_max_length
        style = get_style(settings.style)
        messages = []
        for number, panel in enumerate(story.panels, 1):
            prompt, _ = style.apply(story.expand(panel))
            ids = tok(prompt, truncation=False, add_special_tokens=True).input_ids
            if len(ids) > limit:
                dropped = tok.decode(ids[limit - 1 : -1]).strip()
                messages.append(
                    f"Panel {number}: the prompt is {len(ids)} tokens with the style and character descriptions; "
                    f"the text encoder reads {limit}, so the end is cut off (\"{dropped[:80]}\" is ignored). "
                    "Shorten it to keep every word."
                )
        return messages

    def plan(self, story: Story, settings: GenerationSettings) -> tuple[list[_Job], list[_Job], list[str]]:
        """Write jobs (one per character), read jobs (batches) and messages for the user."""
        style = get_style(settings.style)
        default = (settings.width, settings.height)
        messages: list[str] = []
        writes: list[_Job] = []
        reference_keys: set[str] = set()
        shown = {name for p in story.panels for name in p.characters}
        for character in story.characters:
            if character.name not in shown:
                continue
            refs = story.reference_panels(character.name, settings.id_length)
            if refs:
                if len(refs) < settings.id_length:
                    messages.append(
                        f"[{character.name}] appears alone in only {len(refs)} panel(s), so {len(refs)} reference "
                        f"image(s) are used instead of {settings.id_length}; more solo panels give a steadier likeness."
                    )
                base = [story.expand(p) for p in refs]
                keys = [p.key for p in refs]
                seeds = [derive_seed(settings.seed, p.key, p.variation) for p in refs]
                role = "reference"
                redrawn = {p.key for p in refs if self.panel_size(p, settings) != default}
                reference_keys.update(set(keys) - redrawn)
                if redrawn:
                    messages.append(
                        f"[{character.name}]: {len(redrawn)} of its reference panel(s) have their own size; they are "
                        f"drawn at {default[0]}x{default[1]} as references and again at their own size as panels."
                    )
            else:
                count = settings.id_length
                messages.append(
                    f"[{character.name}] never appears alone, so {count} extra reference image(s) are drawn from "
                    "the description alone (they are not panels of the story)."
                )
                base = [f"{character.description}, character reference, full figure"] * count
                keys = [f"sheet-{character.name}-{i + 1}" for i in range(count)]
                seeds = [derive_seed(settings.seed, k) for k in keys]
                role = "sheet"
                redrawn = set()
            prompts, negatives = zip(*(style.apply(b, settings.negative_prompt) for b in base))
            writes.append(_Job("write", keys, list(prompts), list(negatives), seeds, [character.name], role, base,
                               default, redrawn))

        order = {c.name: i for i, c in enumerate(story.characters)}
        # One pipeline call draws pictures of one size, so a batch shares its size as well as its cast.
        groups: dict[tuple[tuple[str, ...], tuple[int, int]], list[Panel]] = {}
        for panel in story.panels:
            if panel.key in reference_keys:
                continue
            cast = tuple(sorted(set(panel.characters), key=order.__getitem__))
            groups.setdefault((cast, self.panel_size(panel, settings)), []).append(panel)
        reads = []
        for (cast, size), panels in groups.items():
            per_call = settings.batch_size or 1
            for i in range(0, len(panels), per_call):
                batch = panels[i : i + per_call]
                base = [story.expand(p) for p in batch]
                prompts, negatives = zip(*(style.apply(b, settings.negative_prompt) for b in base))
                seeds = [derive_seed(settings.seed, p.key, p.variation) for p in batch]
                reads.append(_Job("read" if cast else "plain", [p.key for p in batch], list(prompts), list(negatives),
                                  seeds, list(cast), "panel", base, size))
        position = {p.key: i for i, p in enumerate(story.panels)}
        reads.sort(key=lambda j: position[j.keys[0]])
        return writes, reads, messages

    @staticmethod
    def panel_size(panel: Panel, settings: GenerationSettings) -> tuple[int, int]:
        """(width, height) the panel is drawn at: its own size, or the settings' when it has none."""
        return (settings.width, settings.height) if panel.size is None else (int(panel.size[0]), int(panel.size[1]))

    # ---- running ----------------------------------------------------------------
    def render(
        self,
        story: Story,
        settings: GenerationSettings,
        progress: Callable[[Progress], None] | None = None,
        cancel: CancelToken | None = None,
        banks: dict[str, CharacterBank] | None = None,
        only: list[str] | None = None,
        on_image: Callable[[PanelImage], None] | None = None,
    ) -> StoryResult:
        """Generate the story (or only the panels whose keys are in ``only``).

        Characters whose bank is given are not written again: a panel can be
        regenerated later from saved banks alone.
        """
        multiple = self.pipe.vae_scale_factor * 2 ** (len(self.pipe.unet.config.block_out_channels) - 1)
        settings.validate(multiple)
        check_panel_sizes(story, multiple)
        for panel in story.panels:
            try:
                story.expand(panel)  # an unknown character fails here with its name, before any work
            except KeyError as exc:
                raise InputError(str(exc.args[0]) if exc.args else "A panel tags an unknown character.") from None
        writes, reads, messages = self.plan(story, settings)
        messages = self.check_prompts(story, settings) + messages
        banks = dict(banks or {})
        for w in writes:
            name = w.characters[0]
            if name in banks and not self.bank_is_current(banks[name], w, settings):
                del banks[name]  # made from another description, seed or setting: write it again
        wanted = set(only) if only is not None else None
        if wanted is not None:
            unknown = wanted - {p.key for p in story.panels}
            if unknown:
                raise ValueError(f"There is no panel {', '.join(sorted(unknown))} in this story.")
        needed_chars = {c for j in reads if wanted is None or wanted & set(j.keys) for c in j.characters}
        # A character is written when a wanted panel needs its bank and none was given, or when one of
        # its own reference panels is wanted: a reference panel is only reproduced by the write it came from
        # (one of another size is then read again from that bank, and the caller gets its reference too).
        writes = [
            w for w in writes
            if (wanted is not None and wanted & set(w.keys))
            or (w.characters[0] not in banks and (wanted is None or w.characters[0] in needed_chars))
        ]
        reads = [r for r in reads if wanted is None or wanted & set(r.keys)]
        total = sum(len(j.keys) for j in writes + reads)
        result = StoryResult({}, [], banks, messages, {"write": [], "read": [], "plain": []})
        done = 0

        self._configure(settings)
        csa = ConsistentAttention(self.pipe.unet, settings.consistency, seed=settings.seed)
        timer = _UnetTimer(self.pipe.unet, self.model.device)
        try:
            with csa, timer:
                for job in writes + reads:
                    if cancel is not None and cancel.is_set():
                        raise GenerationCancelled()
                    timer.phase = job.phase
                    images, seconds, bank = self._run(job, settings, csa, banks, progress, cancel, done, total)
                    if bank is not None:
                        banks[job.characters[0]] = bank
                    for key, base, prompt, neg, seed, image in zip(job.keys, job.base_prompts, job.prompts,
                                                                    job.negatives, job.seeds, images):
                        out = PanelImage(key, image, job.role,
                                         self._parameters(settings, job, base, prompt, neg, seed),
                                         seconds / len(job.keys))
                        if job.role == "sheet":
                            result.sheets.append(out)
                        elif wanted is not None and key not in wanted:
                            continue  # drawn only to rebuild a bank; the caller did not ask for it
                        elif key in job.redrawn:
                            out.key = f"reference-{key}"  # the panel's own picture comes from the read phase
                            result.sheets.append(out)
                        else:
                            result.images[key] = out
                        if on_image is not None:
                            on_image(out)
                    done += len(job.keys)
        finally:
            self.pipe.disable_freeu()
            for phase, secs in timer.seconds.items():
                result.unet_calls.setdefault(phase, []).extend(secs)
        order = [p.key for p in story.panels]
        result.images = {k: result.images[k] for k in order if k in result.images}
        return result

    def _configure(self, settings: GenerationSettings) -> None:
        import diffusers

        cls = getattr(diffusers, SCHEDULERS[settings.scheduler])
        if type(self.pipe.scheduler) is not cls:
            self.pipe.scheduler = cls.from_config(self.pipe.scheduler.config)
        if settings.freeu:
            self.pipe.enable_freeu(**FREEU_DEFAULT)
        else:
            self.pipe.disable_freeu()

    def _latents(self, seeds: list[int], size: tuple[int, int]) -> torch.Tensor:
        # Noise is drawn on the CPU so that a seed gives the same picture on every device.
        width, height = size
        shape = (1, self.pipe.unet.config.in_channels,
                 height // self.pipe.vae_scale_factor, width // self.pipe.vae_scale_factor)
        noise = [torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds]
        return torch.cat(noise).to(self.model.device, self.pipe.unet.dtype)

    def _run(self, job, settings, csa, banks, progress, cancel, done, total):
        n = len(job.keys)
        start = time.perf_counter()
        bank = None

        def on_step(pipe, i, t, kwargs):
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled()
            if progress is not None:
                preview = preview_image(kwargs["latents"], self.model.arch)
                progress(Progress(job.phase, job.keys, i + 1, settings.steps, done, total, preview))
            return kwargs

        call = dict(
            prompt=job.prompts, negative_prompt=job.negatives if settings.guidance > 1 else None,
            num_inference_steps=settings.steps, guidance_scale=settings.guidance,
            height=job.size[1], width=job.size[0],  # SDXL also conditions on this size
            latents=self._latents(job.seeds, job.size),
            generator=[torch.Generator().manual_seed(s + 1) for s in job.seeds],
            output_type="latent", callback_on_step_end=on_step, callback_on_step_end_tensor_inputs=["latents"],
        )
        if job.phase == "write":
            sample_seed = derive_seed(settings.seed, f"write:{job.characters[0]}")
            with csa.write(job.characters[0], n, sample_seed, steps=settings.steps) as out:
                latents = self.pipe(**call).images
            bank = out["bank"]
            bank.recipe.update(self._recipe(settings, job))
        elif job.phase == "read":
            self._check_banks(job, banks, settings)
            with csa.read([banks[c] for c in job.characters], n, self.model.device):
                latents = self.pipe(**call).images
        else:
            with csa.plain(n):
                latents = self.pipe(**call).images
        images = decode_latents(self.pipe.vae, latents, self.pipe.image_processor)
        return images, time.perf_counter() - start, bank

    _RECIPE_KEYS = ("model", "prompts", "negative_prompts", "seeds", "steps", "width", "height", "guidance",
                    "scheduler", "freeu", "story_seed", "consistency", "dtype")

    def bank_is_current(self, bank: CharacterBank, job: _Job, settings: GenerationSettings) -> bool:
        """Whether a bank was written by exactly this write job (same model, prompts, seeds and settings)."""
        want = self._recipe(settings, job)
        return all(bank.recipe.get(k) == want[k] for k in self._RECIPE_KEYS)

    def _check_banks(self, job: _Job, banks: dict[str, CharacterBank], settings: GenerationSettings) -> None:
        for name in job.characters:
            if name not in banks:  # the plan writes every needed character first; this guards the plan
                raise ValueError(f"[{name}] has no references yet; generate the character's references first.")

    def _recipe(self, settings: GenerationSettings, job: _Job) -> dict[str, Any]:
        return dict(
            model=self.model.source, arch=self.model.arch, character=job.characters[0], keys=job.keys,
            prompts=job.prompts, negative_prompts=job.negatives, seeds=job.seeds, steps=settings.steps,
            width=settings.width, height=settings.height, guidance=settings.guidance, scheduler=settings.scheduler,
            freeu=settings.freeu, story_seed=settings.seed, consistency=settings.consistency.to_dict(),
            dtype=str(self.model.dtype).removeprefix("torch."),
        )

    def _parameters(self, settings, job, base, prompt, negative, seed) -> dict[str, Any]:
        return dict(
            generator="StoryStudio", prompt=prompt, negative_prompt=negative, story_prompt=base, seed=seed,
            steps=settings.steps, guidance=settings.guidance, width=job.size[0], height=job.size[1],
            scheduler=settings.scheduler, freeu=settings.freeu, style=get_style(settings.style).name,
            model=self.model.source, arch=self.model.arch, dtype=str(self.model.dtype).removeprefix("torch."),
            phase=job.phase, role=job.role, characters=job.characters, batch=job.keys,
            story_seed=settings.seed, consistency=settings.consistency.to_dict(), id_length=settings.id_length,
        )


class _UnetTimer:
    """Seconds of every UNet call, by phase.

    On CUDA it records events on the compute stream instead of synchronising,
    so that the bank copies on the side stream still overlap the compute.
    """

    def __init__(self, unet: torch.nn.Module, device: torch.device):
        self.unet = unet
        self.cuda = device.type == "cuda"
        self.phase = "plain"
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
        self._events.append((self.phase, self._open, self._mark()))

    def __enter__(self) -> _UnetTimer:
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
