"""What runs inside Ray: the story actor (one loaded model, one GPU) and the board.

These classes are plain Python; :mod:`.ray_story` turns them into Ray actors
(``ray.remote``), so this module imports neither Ray nor torch at the top and
can be read and tested without them.

- :class:`StoryActor` loads the model with :func:`..models.loading.load_model`,
  the code path of a local render, and draws *units* of a story with
  :meth:`..story.pipeline.StoryPipeline.render` and its ``only=``: each call
  draws its panel batches together with the references of their characters,
  in the one step loop a local render uses.
- :class:`Board` is the one place the driver and the actors share while a
  story renders: the actors post progress (with previews) there and read the
  cancel flag from it between UNet calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

CANCEL_POLL_SECONDS = 0.1  # how often an actor asks the board whether the user stopped (one small call)
REPORT_SECONDS = 0.1  # progress without a preview is posted at most this often per actor


@dataclass(frozen=True)
class Unit:
    """Panels that must be drawn by one actor: one batch of panels (one UNet call per step), or the
    story panels that are a character's reference pictures (drawn by its write)."""

    keys: tuple[str, ...]
    characters: tuple[str, ...]
    pictures: int  # pictures the unit adds to its actor's step loop, beside its characters' references


@dataclass(frozen=True)
class Plan:
    units: tuple[Unit, ...]
    references: dict[str, int]  # pictures per step of each character's references (drawn by every actor reading it)
    batches: dict[tuple[int, int], int]  # pictures per UNet call at each size: the same on every actor
    notes: tuple[Any, ...]  # the plan's notes (engine Note)


class Board:
    """Progress and the cancel flag of one render, shared by the driver and the actors (a Ray actor)."""

    def __init__(self) -> None:
        self._cancelled = False
        self._events: list[dict] = []

    def report(self, event: dict) -> None:
        self._events.append(event)

    def drain(self) -> list[dict]:
        events, self._events = self._events, []
        return events

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled


def portable_error(exc: BaseException) -> BaseException:
    """``exc`` as the error the caller of a local render would see: torch's out-of-memory becomes the
    engine's OutOfMemoryError with one plain sentence (its kind is OUT_OF_MEMORY either way, but the
    engine's type needs nothing of torch to be told apart); the engine's own errors stay as they are."""
    from ..errors import EngineError, OutOfMemoryError, is_out_of_memory

    if isinstance(exc, EngineError):
        return exc
    if is_out_of_memory(exc):
        return OutOfMemoryError(f"The GPU ran out of memory while drawing ({str(exc).splitlines()[0][:160]}).")
    return exc


class StoryActor:
    """One loaded model on one device; draws the units it is given."""

    def __init__(self, threads: int | None = None) -> None:
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        self.model = None
        self.controlnets: dict = {}  # ControlNets the renders loaded (poses), kept for the next render

    # ---- set-up ---------------------------------------------------------------------------------------
    def load(self, source: str, device: str = "auto", dtype: str = "auto", allow_download: bool = False,
             config: str | None = None, memory: str = "full") -> dict:
        """Load the model (as a local render does); what was loaded, in words the driver shows."""
        import os

        from ..models.loading import device_summary, load_model, quiet_libraries

        quiet_libraries()
        try:
            self.model = load_model(source, device=device, dtype=dtype, allow_download=allow_download,
                                    config=config, memory=memory)
        except BaseException as exc:
            raise portable_error(exc) from None
        m = self.model
        pipe = m.pipe
        return {"name": m.name, "source": m.source, "arch": m.arch, "device": device_summary(m.device),
                "device_type": m.device.type, "dtype": str(m.dtype).removeprefix("torch."),
                "multiple": pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1),
                "pid": os.getpid()}

    def pid(self) -> int:
        import os

        return os.getpid()

    def peak_memory(self, reset: bool = False) -> dict:
        """Bytes of GPU memory allocated and reserved at most since the last reset (0 on the CPU)."""
        import torch

        if self.model is None or self.model.device.type != "cuda":
            return {"allocated": 0, "reserved": 0}
        peak = {"allocated": torch.cuda.max_memory_allocated(), "reserved": torch.cuda.max_memory_reserved()}
        if reset:
            torch.cuda.reset_peak_memory_stats()
        return peak

    def _engine(self, batches: dict[tuple[int, int], int] | None = None):
        from ..story.pipeline import StoryPipeline

        fixed = dict(batches or {})

        class PlannedPipeline(StoryPipeline):
            # Every actor batches a size as the plan did: a picture's last bits may depend on its batch.
            def auto_batch(self, size, guided):
                return fixed[tuple(size)] if tuple(size) in fixed else super().auto_batch(size, guided)

        return PlannedPipeline(self.model, controlnets=self.controlnets)

    def auto_batches(self, sizes: list[tuple[int, int]], guided: bool) -> dict[tuple[int, int], int]:
        """Pictures per UNet call this actor's free memory allows at each size."""
        engine = self._engine()
        return {tuple(s): engine.auto_batch(tuple(s), guided) for s in sizes}

    def plan(self, story, settings, batches: dict[tuple[int, int], int]) -> Plan:
        """The story's units: each read batch, and each character's reference panels."""
        try:
            engine = self._engine(batches)
            engine.check(story, settings)
            writes, reads, notes = engine.plan(story, settings)
        except BaseException as exc:
            raise portable_error(exc) from None
        panels = {p.key for p in story.panels}
        units = []
        for job in writes:
            # the reference pictures that are story panels come from the write; a reference panel of another
            # size is drawn again as a reader, so it travels with its read batch instead
            keys = tuple(k for k in job.keys if k in panels and k not in job.redrawn)
            if keys:
                units.append(Unit(keys, tuple(job.characters), 0))
        for job in reads:
            units.append(Unit(tuple(job.keys), tuple(job.characters), len(job.keys)))
        references = {job.characters[0]: len(job.keys) for job in writes}
        return Plan(tuple(units), references, dict(batches), tuple(notes))

    # ---- drawing --------------------------------------------------------------------------------------
    def render(self, task: int, story, settings, only: list[str], batches: dict[tuple[int, int], int],
               board: Any, previews: bool = True) -> dict:
        """Draw the panels ``only`` names (whole batches, with their characters' references).

        Pictures come back as arrays through Ray's object store, with their
        parameters; progress goes to ``board`` as it happens.
        """
        import numpy as np
        import ray

        engine = self._engine(batches)
        last = {"report": 0.0, "poll": 0.0, "cancelled": False}

        def progress(p) -> None:
            now = time.perf_counter()
            final = p.work_done == p.work_total
            if p.preview is None and not final and now - last["report"] < REPORT_SECONDS:
                return
            last["report"] = now
            board.report.remote({
                "task": task, "phase": p.phase, "keys": list(p.panel_keys), "step": p.step, "steps": p.steps,
                "work_done": p.work_done, "work_total": p.work_total,
                "preview": np.asarray(p.preview.convert("RGB")) if p.preview is not None else None,
            })

        def cancelled() -> bool:
            now = time.perf_counter()
            if not last["cancelled"] and now - last["poll"] >= CANCEL_POLL_SECONDS:
                last["poll"] = now
                last["cancelled"] = bool(ray.get(board.cancelled.remote()))
            return last["cancelled"]

        class Token:
            def is_set(self) -> bool:
                return cancelled()

        try:
            result = engine.render(story, settings, progress=progress, cancel=Token(), only=list(only),
                                   previews=previews)
        except BaseException as exc:
            raise portable_error(exc) from None

        def picture(img) -> dict:
            return {"key": img.key, "role": img.role, "pixels": np.asarray(img.image.convert("RGB")),
                    "parameters": img.parameters, "seconds": img.seconds}

        return {"task": task, "images": [picture(i) for i in result.images.values()],
                "sheets": [picture(i) for i in result.sheets], "notes": list(result.notes),
                "unet_calls": result.unet_calls}
