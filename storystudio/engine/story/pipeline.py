"""The StoryDiffusion image stage: references and panels of a story, drawn with the same characters.

1. **Plan**: each character's reference images are its first ``id_length``
   panels that show only that character (extra "sheet" pictures drawn from its
   description when it never appears alone). Every other panel is batched with
   panels that show the same characters at the same size (and the same prompt
   length: one UNet call shares its text length).
2. **Draw, in flight**: references and panels are denoised in one step loop
   (:mod:`.sampler`). At each step a character's references are drawn together
   with consistent attention among them, and the panels that show the
   character read the sampled keys and values of that same step; then the
   step's bank is dropped. Nothing grows with the number of steps, references
   or characters.
3. **Kept banks** (optional): a bank kept from an earlier run (``banks``, e.g.
   ``render --banks``; or a :class:`~..attention.bank.BankCache`) stands in for
   drawing that character's references again; the pictures are the same.

A panel may have its own size (the shape of its comic frame). References are
always drawn at the settings' size, so that a character's look does not
change when a frame does; a reference panel of another size is drawn a second
time, at its own size, as a reader, and its write picture is kept as a
reference only. Reading works at any size: a bank holds tokens, not a grid.

Each panel's noise comes from its own seed, derived from the story seed and
the panel's key, so regenerating one panel reproduces it and a new variation
number gives a new picture with the same characters.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from ...project.pose import PoseError, picture_digest
from ...project.story import Panel, Story
from ..attention.bank import BankCache, BankFeed, BankWriter, CharacterBank, recipe_key
from ..attention.config import Phase
from ..attention.consistent import ConsistentAttention, level_tokens
from ..errors import GenerationCancelled, InputError
from ..imaging import decode_latents, preview_image
from ..models.loading import LoadedModel
from . import regions as identity
from .controls import CONTROL_KINDS, StoryControls
from .prompts import EncodedPrompt, PromptEncoder
from .sampler import Group, StepReport, StorySampler, UnetTimer
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

MAX_AUTO_BATCH = 8  # pictures per UNet call chosen automatically: past this the GPU is busy anyway
PREVIEW_SECONDS = 0.5  # at most this often a preview per group (each one waits for the GPU)


@dataclass
class Progress:
    phase: str  # "write", "read" or "plain"
    panel_keys: list[str]
    step: int  # steps done by these pictures (1..steps)
    steps: int
    panels_done: int  # pictures finished before this run's step loop (0 while it runs)
    panels_total: int
    preview: Image.Image | None = None
    work_done: int = 0  # picture-steps done in the whole job, references included
    work_total: int = 0


@dataclass(frozen=True)
class Note:
    """Something the user should know about the story, with the panels (keys) it concerns."""

    text: str
    panels: tuple[str, ...] = ()


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
    banks: dict[str, CharacterBank]  # kept banks (only when asked for: keep_banks)
    notes: list[Note]
    unet_calls: dict[str, list[float]]  # seconds per UNet call by phase

    @property
    def messages(self) -> list[str]:
        return [n.text for n in self.notes]

    @property
    def bank_bytes(self) -> int:
        return sum(b.nbytes for b in self.banks.values())


@dataclass
class _Job:
    """Pictures drawn together: one character's references, or a batch of panels."""

    phase: Phase
    keys: list[str]
    prompts: list[str]  # styled, characters expanded
    negatives: list[str]
    seeds: list[int]
    characters: list[str]
    role: str
    base_prompts: list[str] = field(default_factory=list)
    size: tuple[int, int] = (768, 768)  # (width, height) of every picture of the call
    # Write jobs only: reference panels of another size, drawn again at their size as readers.
    redrawn: set[str] = field(default_factory=set)
    chosen: list[int] | None = None  # write jobs: the references whose look panels take (all when None)
    regions: identity.RegionPlan | None = None  # read jobs of shared panels: each character's box and text
    photos: dict[str, dict] = field(default_factory=dict)  # the photos acting on these pictures (hash, strength)
    guides: list[tuple] = field(default_factory=list)  # each picture's ControlNet guides (project.pose.Guide)
    # each picture's guide pictures at the job's size, by kind (drawn once, before the step loop)
    pictures: list[dict[str, Image.Image]] = field(default_factory=list)


class StoryPipeline:
    """Generates a story's panels with consistent characters over a loaded diffusers pipeline."""

    def __init__(self, model: LoadedModel, controlnets: dict | None = None):
        self.model = model
        self.pipe = model.pipe
        self.encoder = PromptEncoder(self.pipe)
        self._photo_adapter = None  # .photos.PhotoAdapter, loaded when a story first has a photo
        self._photo_key = ""  # the settings' photo_adapter it was loaded from
        # ControlNets loaded by earlier renders, by kind and source; a caller that makes a pipeline per
        # job (the app's worker) hands the same dict to each, for the same model
        self._controlnets: dict = {} if controlnets is None else controlnets

    @property
    def size_multiple(self) -> int:
        """What width and height must be multiples of for this model's UNet."""
        return self.pipe.vae_scale_factor * 2 ** (len(self.pipe.unet.config.block_out_channels) - 1)

    # ---- planning -------------------------------------------------------------
    def auto_batch(self, size: tuple[int, int], guided: bool) -> int:
        """Pictures per UNet call: as many as the GPU's free memory holds at this size (1..MAX_AUTO_BATCH)."""
        device = self.model.device
        if device.type != "cuda":
            return 2  # the CPU gains little from batching; two pictures amortise the Python per call
        free, _total = torch.cuda.mem_get_info(device)
        unet = self.pipe.unet
        if next(unet.parameters()).device.type != "cuda":  # offloaded: the UNet comes to the GPU when it runs
            free -= sum(p.numel() * p.element_size() for p in unet.parameters())
        # Activations of one UNet sample per megapixel, measured on SDXL with flash attention (~0.24 GiB),
        # with room for the decoder and the step's banks.
        per_picture = 0.4 * 2**30 * (size[0] * size[1] / 2**20) * (2 if guided else 1)
        return max(1, min(MAX_AUTO_BATCH, int(0.7 * free // per_picture)))

    def plan(self, story: Story, settings: GenerationSettings) -> tuple[list[_Job], list[_Job], list[Note]]:
        """Write jobs (one per character), read jobs (batches) and notes for the user."""
        style = get_style(settings.style)
        default = (settings.width, settings.height)
        notes: list[Note] = []
        writes: list[_Job] = []
        reference_keys: set[str] = set()
        shown = {name for p in story.panels for name in p.characters}
        for character in story.characters:
            if character.name not in shown:
                continue
            if character.references is not None:
                job = self._pinned(story, character, settings, default)
                reference_keys.update(set(job.keys) - job.redrawn)
                writes.append(job)
                continue
            refs = story.reference_panels(character.name, settings.id_length)
            if refs:
                if len(refs) < settings.id_length:
                    notes.append(Note(
                        f"[{character.name}] appears alone in only {len(refs)} panel(s), so {len(refs)} reference "
                        f"image(s) are used instead of {settings.id_length}; more solo panels give a steadier likeness.",
                        tuple(p.key for p in refs)))
                base = [story.expand(p) for p in refs]
                guides = [tuple(p.guides) for p in refs]
                keys = [p.key for p in refs]
                seeds = [derive_seed(settings.seed, p.key, p.variation) for p in refs]
                role = "reference"
                redrawn = {p.key for p in refs if self.panel_size(p, settings) != default}
                reference_keys.update(set(keys) - redrawn)
                if redrawn:
                    notes.append(Note(
                        f"[{character.name}]: {len(redrawn)} of its reference panel(s) have their own size; they are "
                        f"drawn at {default[0]}x{default[1]} as references and again at their own size as panels.",
                        tuple(sorted(redrawn))))
            else:
                count = settings.id_length
                notes.append(Note(
                    f"[{character.name}] never appears alone, so {count} extra reference image(s) are drawn from "
                    "the description alone (they are not panels of the story).",
                    tuple(p.key for p in story.panels if character.name in p.characters)))
                base = [f"{character.description}, character reference, full figure"] * count
                guides = [()] * count
                keys = [f"sheet-{character.name}-{i + 1}" for i in range(count)]
                seeds = [derive_seed(settings.seed, k) for k in keys]
                role = "sheet"
                redrawn = set()
            prompts, negatives = zip(*(style.apply(b, settings.negative_prompt) for b in base))
            writes.append(_Job(Phase.WRITE, keys, list(prompts), list(negatives), seeds, [character.name], role, base,
                               default, redrawn, guides=guides))

        order = {c.name: i for i, c in enumerate(story.characters)}
        # One UNet call draws pictures of one size and one text length, so a batch shares both with its cast.
        groups: dict[tuple, list[tuple[Panel, str, str, str]]] = {}
        for panel in story.panels:
            if panel.key in reference_keys:
                continue
            cast = tuple(sorted(set(panel.characters), key=order.__getitem__))
            # A shared panel's main text is the action without anybody's looks; each region gets its character's.
            regional = identity.uses_regions(panel, settings.regions)
            base = identity.background_prompt(story, panel) if regional else story.expand(panel)
            prompt, negative = style.apply(base, settings.negative_prompt)
            chunks = max(self.encoder.chunks(prompt), self.encoder.chunks(negative) if settings.guided else 1)
            size = self.panel_size(panel, settings)
            groups.setdefault((cast, size, chunks), []).append((panel, base, prompt, negative))
        reads = []
        for (cast, size, _), members in groups.items():
            per_call = settings.batch_size or self.auto_batch(size, settings.guided)
            for i in range(0, len(members), per_call):
                batch = members[i : i + per_call]
                reads.append(_Job(Phase.READ if cast else Phase.PLAIN, [p.key for p, *_ in batch], [m[2] for m in batch],
                                  [m[3] for m in batch],
                                  [derive_seed(settings.seed, p.key, p.variation) for p, *_ in batch],
                                  list(cast), "panel", [m[1] for m in batch], size,
                                  guides=[tuple(p.guides) for p, *_ in batch]))
                if settings.regions and len(cast) >= 2:
                    reads[-1].regions = identity.plan_regions(story, [p for p, *_ in batch], cast, style,
                                                              settings.negative_prompt)
        for job in writes + reads:
            job.photos = identity.photo_parameters(story, job.characters)
        position = {p.key: i for i, p in enumerate(story.panels)}
        reads.sort(key=lambda j: position[j.keys[0]])
        return writes, reads, notes

    def _pinned(self, story: Story, character, settings: GenerationSettings, default: tuple[int, int]) -> _Job:
        """The write job of a character whose references the user pinned: exactly those pictures again."""
        pinned = character.references
        panels = {p.key: p for p in story.panels}
        redrawn = set()
        for key, prompt, seed in zip(pinned.keys, pinned.prompts, pinned.seeds):
            panel = panels.get(key)
            same = (panel is not None and panel.characters == [character.name] and story.expand(panel) == prompt
                    and derive_seed(settings.seed, key, panel.variation) == seed
                    and self.panel_size(panel, settings) == default
                    and not panel.guides)  # pinned references are drawn as they were: without guides
            if not same:
                redrawn.add(key)  # its pinned picture is a reference only; a panel of that key is drawn as a reader
        style = get_style(settings.style)
        prompts, negatives = zip(*(style.apply(b, settings.negative_prompt) for b in pinned.prompts))
        chosen = list(pinned.chosen) if pinned.chosen is not None else None
        if chosen is not None and not (chosen and all(0 <= i < len(pinned.keys) for i in chosen)):
            raise InputError(f"The chosen references of [{character.name}] do not match its reference pictures; "
                             "choose them again.")
        return _Job(Phase.WRITE, list(pinned.keys), list(prompts), list(negatives), list(pinned.seeds), [character.name],
                    "reference", list(pinned.prompts), default, redrawn, chosen, guides=[()] * len(pinned.keys))

    @staticmethod
    def panel_size(panel: Panel, settings: GenerationSettings) -> tuple[int, int]:
        """(width, height) the panel is drawn at: its own size, or the settings' when it has none."""
        return (settings.width, settings.height) if panel.size is None else (int(panel.size[0]), int(panel.size[1]))

    def check(self, story: Story, settings: GenerationSettings) -> None:
        """InputError in plain words for anything that would stop the story, before any work."""
        settings.validate(self.size_multiple)
        check_panel_sizes(story, self.size_multiple)
        for number, panel in enumerate(story.panels, 1):
            try:
                story.expand(panel)  # an unknown character fails here with its name
            except KeyError as exc:
                raise InputError(str(exc.args[0]) if exc.args else "A panel tags an unknown character.") from None
            kinds = [g.kind for g in panel.guides]
            for kind in kinds:
                if kind not in CONTROL_KINDS:
                    raise InputError(f"Panel {number} has a guide of the unknown kind {kind!r}.")
            if len(set(kinds)) != len(kinds):
                raise InputError(f"Panel {number} has two guides of the same kind; keep one.")
            for guide in panel.guides:
                try:
                    guide.render((64, 64))  # an unreadable imported picture fails here, before any work
                except PoseError as exc:
                    raise InputError(f"Panel {number}: {exc}") from None
        identity.check_story(story)

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
        keep_banks: bool = False,
        bank_cache: BankCache | None = None,
        previews: bool = True,
    ) -> StoryResult:
        """Generate the story (or only the panels whose keys are in ``only``).

        Characters with a current kept bank (in ``banks`` or ``bank_cache``) are
        not drawn again. ``keep_banks`` returns the banks of the characters drawn
        in this run (every step, in host memory: large); with a ``bank_cache``
        they are also kept there when they fit its budget.
        """
        self.check(story, settings)
        writes, reads, notes = self.plan(story, settings)
        wanted = set(only) if only is not None else None
        if wanted is not None:
            unknown = wanted - {p.key for p in story.panels}
            if unknown:
                raise InputError(f"There is no panel {', '.join(sorted(unknown))} in this story.")
        kept = self._kept_banks(writes, settings, banks or {}, bank_cache)
        needed_chars = {c for j in reads if wanted is None or wanted & set(j.keys) for c in j.characters}
        # A character's references are drawn when a wanted panel reads it and no current bank is kept, or when
        # one of its own reference panels is wanted: a reference panel is only reproduced by the write it came
        # from (one of another size is then drawn again as a reader, and the caller gets its reference too).
        writes = [
            w for w in writes
            if (wanted is not None and wanted & set(w.keys))
            or (w.characters[0] not in kept and (wanted is None or w.characters[0] in needed_chars))
        ]
        reads = [r for r in reads if wanted is None or wanted & set(r.keys)]
        drawn = {w.characters[0] for w in writes}
        kept = {name: bank for name, bank in kept.items() if name in needed_chars and name not in drawn}

        controls = self._controls(writes + reads, settings)  # a missing ControlNet stops here, before any work
        numbers = {p.key: i for i, p in enumerate(story.panels, 1)}
        encoded = {id(j): self._encode(j, settings, notes, numbers) for j in writes + reads}
        csa = ConsistentAttention(self.pipe.unet, settings.consistency, seed=settings.seed)
        photos = self._photos(story, writes + reads, settings)
        cross = None
        if photos or any(j.regions is not None for j in reads):
            from ..attention.regions import RegionalCrossAttention

            cross = RegionalCrossAttention(self.pipe.unet, self._photo_adapter.layers if photos else None)
        result = StoryResult({}, [], {}, notes, {"write": [], "read": [], "plain": []})
        self._configure(settings)
        try:
            with csa, cross if cross is not None else contextlib.nullcontext():
                layer_names = list(csa.layers)
                scales = {info.scale for info in csa.layers.values()} | (cross.levels_needed if cross else set())
                groups = [self._group(j, encoded[id(j)], settings, keep_banks, bank_cache, csa)
                          for j in writes + reads]
                for job, group in zip(writes + reads, groups):
                    group.identity = self._identity(job, settings, photos, scales)
                self._check_kept(kept, settings)
                feed = BankFeed(kept, layer_names, self.model.device) if kept else None
                sampler = StorySampler(self.pipe, csa, self.model.device, self.model.arch, controls, cross)
                timer = UnetTimer(self.pipe.unet, self.model.device, lambda: sampler.call_phase)
                started = time.perf_counter()
                with timer:
                    sampler.run(groups, settings.steps, settings.guidance, kept=feed,
                                on_step=self._reporter(progress, previews, sum(len(j.keys) for j in writes + reads)),
                                cancel=cancel.is_set if cancel is not None else None)
                for phase, secs in timer.seconds.items():
                    result.unet_calls.setdefault(phase, []).extend(secs)
                seconds = (time.perf_counter() - started) / max(1, sum(g.n for g in groups))
                for job, group in zip(writes + reads, groups):
                    if cancel is not None and cancel.is_set():
                        raise GenerationCancelled()
                    self._finish(job, group, settings, wanted, seconds, result, on_image)
                    if group.record is not None:
                        bank = group.record.finish(self._recipe(settings, job))
                        group.record = None
                        if keep_banks:
                            result.banks[job.characters[0]] = bank
                        if bank_cache is not None:
                            bank_cache.put(recipe_key(bank.recipe), bank)
        finally:
            self.pipe.disable_freeu()
        order = [p.key for p in story.panels]
        result.images = {k: result.images[k] for k in order if k in result.images}
        return result

    def _controls(self, jobs: list[_Job], settings: GenerationSettings) -> StoryControls | None:
        """The ControlNets the guides of these jobs need (loaded once per pipeline), with each picture's guide
        pictures drawn at its job's size; ``None`` when no picture has a guide."""
        for job in jobs:
            job.pictures = [{g.kind: g.render(job.size) for g in guides} for guides in job.guides] or [
                {} for _ in job.keys]
        kinds = {kind for job in jobs for picture in job.pictures for kind in picture}
        if not kinds:
            return None
        return StoryControls.load(kinds, self.pipe, self.model.arch, settings.control_models, self.model.device,
                                  self.pipe.unet.dtype, settings.control_strength, settings.control_start,
                                  settings.control_end, loaded=self._controlnets)

    def _encode(self, job: _Job, settings: GenerationSettings, notes: list[Note],
                numbers: dict[str, int]) -> list[EncodedPrompt]:
        out = []
        for i, (key, prompt, negative) in enumerate(zip(job.keys, job.prompts, job.negatives)):
            enc = self.encoder.encode(prompt, negative if settings.guided else None)
            where = (f"Panel {numbers[key]}" if key in numbers
                     else f"Reference {i + 1} of [{job.characters[0]}]")
            notes.extend(Note(f"{where}: {note}", (key,) if key in numbers else ()) for note in enc.notes)
            out.append(enc)
        longest = max(e.chunks for e in out)
        if any(e.chunks != longest for e in out):  # references are drawn together: one text length for all
            empty = self.encoder.encode("", "" if settings.guided else None)
            out = [self._pad(e, empty, longest) for e in out]
        return out

    @staticmethod
    def _pad(enc: EncodedPrompt, empty: EncodedPrompt, chunks: int) -> EncodedPrompt:
        """``enc`` lengthened to ``chunks`` text chunks with empty ones, as a longer prompt's shorter side is."""
        extra = chunks - enc.chunks

        def grow(t, e):
            return None if t is None else torch.cat([t] + [e] * extra, dim=1)

        return EncodedPrompt(grow(enc.cond, empty.cond), grow(enc.uncond, empty.uncond), enc.pooled,
                             enc.negative_pooled, chunks, list(enc.notes))

    def _group(self, job: _Job, prompts: list[EncodedPrompt], settings: GenerationSettings, keep_banks: bool,
               cache: BankCache | None, csa: ConsistentAttention) -> Group:
        if job.phase is Phase.WRITE:
            character = job.characters[0]
            record = None
            if keep_banks or (cache is not None and cache.fits(self._bank_bytes(job, settings, csa))):
                record = BankWriter(character, list(csa.layers), settings.steps)
            return Group(Phase.WRITE, list(job.keys), job.size, list(job.seeds), prompts, character=character,
                         sample_seed=derive_seed(settings.seed, f"write:{character}"), chosen=job.chosen,
                         record=record, guides=list(job.pictures))
        return Group(job.phase, list(job.keys), job.size, list(job.seeds), prompts, cast=tuple(job.characters),
                     guides=list(job.pictures))

    # ---- regions and photos ---------------------------------------------------------------
    def _photos(self, story: Story, jobs: list[_Job], settings: GenerationSettings) -> dict[str, tuple[Any, float]]:
        """name -> (IP-Adapter tokens, strength) of each character with a photo in the pictures to draw."""
        names = sorted({name for job in jobs for name in job.photos})
        if not names:
            return {}
        if self._photo_adapter is None or self._photo_key != settings.photo_adapter:
            from .photos import PhotoAdapter

            self._photo_adapter = PhotoAdapter.load(self.pipe, self.model.arch, settings.photo_adapter)
            self._photo_key = settings.photo_adapter
        out = {}
        for name in names:
            character = story.character(name)
            out[name] = (self._photo_adapter.tokens(character.photo, name), character.photo_strength)
        return out

    def _identity(self, job: _Job, settings: GenerationSettings, photos: dict, scales: set[int]):
        if job.regions is None and not (len(job.characters) == 1 and job.characters[0] in photos):
            return None
        vae = self.pipe.vae_scale_factor
        empty = self.encoder.encode("", "" if settings.guided else None)
        return identity.prepare_identity(
            job.regions, job.characters, {k: v for k, v in photos.items() if k in job.photos}, self.encoder.encode,
            empty, self._pad, len(job.keys), settings.guided, (job.size[1] // vae, job.size[0] // vae), scales,
            self.model.device, self.pipe.unet.dtype, job.negatives)

    def _bank_bytes(self, job: _Job, settings: GenerationSettings, csa: ConsistentAttention) -> int:
        """What keeping this write's bank for every step costs (keys and values of every sampled token)."""
        unet = self.pipe.unet
        latent_hw = (job.size[1] // self.pipe.vae_scale_factor, job.size[0] // self.pipe.vae_scale_factor)
        halves = 2 if settings.guided else 1
        total = 0
        for name, info in csa.layers.items():
            channels = unet.get_submodule(name).to_k.out_features
            images = len(job.chosen) if job.chosen is not None else len(job.keys)
            total += 2 * halves * images * int(level_tokens(info.scale, latent_hw) * info.rate) * channels
        return total * settings.steps * unet.dtype.itemsize

    def _reporter(self, progress, previews: bool, pictures: int) -> Callable[[StepReport], None] | None:
        if progress is None:
            return None
        last: dict[int, float] = {}

        def report(r: StepReport) -> None:
            preview = None
            now = time.perf_counter()
            if previews and (r.step == r.steps or now - last.get(id(r.group), 0.0) >= PREVIEW_SECONDS):
                last[id(r.group)] = now
                preview = preview_image(r.latents, self.model.arch)
            progress(Progress(r.group.phase.value, list(r.group.keys), r.step, r.steps, 0, pictures, preview,
                              r.work_done, r.work_total))

        return report

    def _finish(self, job: _Job, group: Group, settings, wanted, seconds: float, result: StoryResult,
                on_image) -> None:
        images = decode_latents(self.pipe.vae, group.latents, self.pipe.image_processor)
        for index, (key, base, prompt, neg, seed, image) in enumerate(zip(job.keys, job.base_prompts, job.prompts,
                                                                           job.negatives, job.seeds, images)):
            parameters = self._parameters(settings, job, base, prompt, neg, seed)
            controls = self._guide_records(settings, job, index)
            if controls:
                parameters["controls"] = controls
            if job.regions is not None:
                parameters["regions"] = job.regions.parameters(index)
            if job.photos:
                parameters["photos"] = job.photos
            out = PanelImage(key, image, job.role, parameters, seconds)
            if job.role == "sheet":
                result.sheets.append(out)
            elif wanted is not None and key not in wanted:
                continue  # drawn only for its character's bank; the caller did not ask for it
            elif key in job.redrawn:
                out.key = f"reference-{key}"  # the panel's own picture comes from its read at its own size
                result.sheets.append(out)
            else:
                result.images[key] = out
            if on_image is not None:
                on_image(out)

    def _configure(self, settings: GenerationSettings) -> None:
        import diffusers

        cls = getattr(diffusers, SCHEDULERS[settings.scheduler])
        if type(self.pipe.scheduler) is not cls:
            self.pipe.scheduler = cls.from_config(self.pipe.scheduler.config)
        if settings.freeu:
            self.pipe.enable_freeu(**FREEU_DEFAULT)
        else:
            self.pipe.disable_freeu()
        if settings.compile:
            from .compile import compile_unet

            compile_unet(self.pipe.unet)

    # ---- kept banks ---------------------------------------------------------------------
    _RECIPE_KEYS = ("model", "prompts", "negative_prompts", "seeds", "chosen", "steps", "width", "height", "guidance",
                    "scheduler", "freeu", "story_seed", "consistency", "dtype", "controls", "photos")

    def bank_is_current(self, bank: CharacterBank, job: _Job, settings: GenerationSettings) -> bool:
        """Whether a bank was kept from exactly this write job (same model, prompts, seeds and settings)."""
        want = self._recipe(settings, job)
        return all(bank.recipe.get(k) == want[k] for k in self._RECIPE_KEYS)

    def _kept_banks(self, writes: list[_Job], settings: GenerationSettings, given: dict[str, CharacterBank],
                    cache: BankCache | None) -> dict[str, CharacterBank]:
        kept = {}
        for job in writes:
            name = job.characters[0]
            if name in given and self.bank_is_current(given[name], job, settings):
                kept[name] = given[name]  # made from another description, seed or setting: drawn again instead
            elif cache is not None and (bank := cache.get(recipe_key(self._recipe(settings, job)))) is not None:
                kept[name] = bank
        return kept

    def _check_kept(self, kept: dict[str, CharacterBank], settings: GenerationSettings) -> None:
        for bank in kept.values():
            if bank.num_steps < settings.steps:
                raise InputError(f"The kept references of [{bank.character}] were made with {bank.num_steps} "
                                 "steps; this picture needs more. Use the same number of steps or draw the "
                                 "references again.")

    def _recipe(self, settings: GenerationSettings, job: _Job) -> dict[str, Any]:
        return dict(
            model=self.model.source, arch=self.model.arch, character=job.characters[0], keys=job.keys,
            prompts=job.prompts, negative_prompts=job.negatives, seeds=job.seeds, chosen=job.chosen,
            steps=settings.steps,
            width=settings.width, height=settings.height, guidance=settings.guidance, scheduler=settings.scheduler,
            freeu=settings.freeu, story_seed=settings.seed, consistency=settings.consistency.to_dict(),
            dtype=str(self.model.dtype).removeprefix("torch."), photos=job.photos or None,
            # a guided reference writes another bank; None (as in banks kept before guides) when none is
            controls=[self._guide_records(settings, job, i, resolved=False) for i in range(len(job.keys))]
            if any(job.guides) else None,
        )

    def _guide_records(self, settings: GenerationSettings, job: _Job, index: int,
                       resolved: bool = True) -> list[dict[str, Any]]:
        """What a picture's guides were: kind, the guide picture's sha256, strength, step range and the
        ControlNet (the one loaded, or with ``resolved`` false the one asked for: "" for the default)."""
        pictures = job.pictures[index] if index < len(job.pictures) else {
            g.kind: g.render(job.size) for g in (job.guides[index] if index < len(job.guides) else ())}
        return [dict(kind=kind, sha256=picture_digest(picture), strength=settings.control_strength,
                     start=settings.control_start, end=settings.control_end,
                     model=self._control_source(kind, settings, resolved))
                for kind, picture in sorted(pictures.items())]

    def _control_source(self, kind: str, settings: GenerationSettings, resolved: bool) -> str:
        source = settings.control_models.get(kind) or None
        loaded = self._controlnets.get((kind, source)) if resolved else None
        return loaded[1] if loaded is not None else (source or "")

    def _parameters(self, settings, job, base, prompt, negative, seed) -> dict[str, Any]:
        return dict(
            generator="StoryStudio", prompt=prompt, negative_prompt=negative, story_prompt=base, seed=seed,
            steps=settings.steps, guidance=settings.guidance, width=job.size[0], height=job.size[1],
            scheduler=settings.scheduler, freeu=settings.freeu, style=get_style(settings.style).name,
            model=self.model.source, arch=self.model.arch, dtype=str(self.model.dtype).removeprefix("torch."),
            phase=job.phase.value, role=job.role, characters=job.characters, batch=job.keys,
            story_seed=settings.seed, consistency=settings.consistency.to_dict(), id_length=settings.id_length,
        )
