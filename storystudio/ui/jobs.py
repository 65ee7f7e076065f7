"""Generation jobs as a model: a queue of jobs, each with a kind and a state, its parameters and its panels.

The window submits work here (``JobQueue.submit``); the queue hands it to the
:class:`~storystudio.ui.worker.GenerationService`, follows the worker's
signals and keeps, per job, what it was asked to draw, where it is, what it
drew, its notes, its error (with its kind) and how fast it went. The window,
the timeline and the messages list observe the queue's signals; none of them
keeps its own record of running work.

Finished jobs stay in the queue (a short history), so a panel whose job
failed still shows it until the next job for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from ..engine.errors import ErrorKind
from .timing import StepClock

HISTORY = 50  # finished jobs kept


def _now() -> float:
    return time.monotonic()


class JobKind(Enum):
    WARM_UP = "warm-up"  # import the heavy libraries ahead of the first picture
    LOAD = "load"  # load a model
    PANELS = "panels"  # draw panels (all or some)
    REFERENCES = "references"  # draw a character's reference pictures
    TRANSITION = "transition"  # make the frames of one animatic cut


class JobState(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        return self in (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class JobError:
    kind: ErrorKind
    message: str


@dataclass(frozen=True)
class JobProgress:
    phase: str
    keys: tuple[str, ...]  # the panels (or references) of the batch being drawn
    step: int
    steps: int
    done: int  # picture-steps done in the whole job (references included; for a transition: frames)
    total: int  # picture-steps of the whole job

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0


@dataclass(eq=False)
class Job:
    id: int
    kind: JobKind
    params: Any  # the worker's RenderJob / TransitionJob / ModelChoice
    targets: list[str] = field(default_factory=list)  # panel ids it draws (for a transition: the cut's panel)
    label: str = ""
    state: JobState = JobState.QUEUED
    progress: JobProgress | None = None
    drawn: list[str] = field(default_factory=list)  # target panels that got their picture
    references: dict[str, list[tuple[bytes, dict]]] = field(default_factory=dict)  # character -> pictures
    notes: list[str] = field(default_factory=list)
    error: JobError | None = None
    model: dict[str, Any] = field(default_factory=dict)  # what the worker loaded: name, arch, device
    estimate_s: float | None = None  # the estimate given before it started
    stored_rate: float | None = None  # seconds per picture-step known before it started
    clock: StepClock = field(default_factory=StepClock)
    queued_at: float = field(default_factory=lambda: _now())
    started_at: float | None = None
    ended_at: float | None = None

    @property
    def active(self) -> bool:
        return self.state.active

    @property
    def draws_pictures(self) -> bool:
        return self.kind in (JobKind.PANELS, JobKind.REFERENCES)

    @property
    def seconds(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.ended_at or _now()) - self.started_at

    def seconds_left(self) -> float | None:
        """From this job's own speed once measured, else from the speed known before it started."""
        p = self.progress
        rate = self.clock.rate() or self.stored_rate
        if p is None or rate is None:
            return None
        return max(0, p.total - p.done) * rate

    def panel_key_at(self, number: int) -> str | None:
        """The id of the job's story panel ``number`` (1-based, as the engine's notes count them)."""
        story = getattr(self.params, "story", None)
        panels = getattr(story, "panels", None) or []
        return panels[number - 1].key if 0 < number <= len(panels) else None


class JobQueue(QObject):
    """Every job of this window: queued, running and recently finished."""

    added = Signal(object)  # Job
    changed = Signal(object)  # Job: its state or progress moved
    ended = Signal(object)  # Job, in its final state (done, cancelled, failed)
    panels_changed = Signal(list)  # panel ids whose job state changed
    image = Signal(object, str, str, bytes, dict)  # Job, panel key, role, PNG bytes, parameters
    preview = Signal(object, list, QImage)  # Job, panel keys, the batch's preview picture
    clip = Signal(object, str, str, list, dict)  # Job, panel before, panel after, frames (PNG), parameters
    note = Signal(object, str)  # Job, a note from the engine
    failed = Signal(object)  # Job, with its error
    model_loading = Signal(object, str)  # Job, what is being loaded
    model_ready = Signal(object, dict)  # Job, what was loaded (name, arch, device)

    def __init__(self, service, parent: QObject | None = None):
        super().__init__(parent)
        self.service = service
        self.jobs: list[Job] = []
        w = service.worker
        w.progress.connect(self._progress)
        w.image_ready.connect(self._image)
        w.clip_ready.connect(self._clip)
        w.message.connect(self._note)
        w.failed.connect(self._failed)
        w.finished.connect(self._finished)
        w.model_loading.connect(self._model_loading)
        w.model_ready.connect(self._model_ready)

    # ---- submitting --------------------------------------------------------------------------
    def submit(self, kind: JobKind, params: Any, targets: list[str] | None = None, label: str = "",
               estimate_s: float | None = None, stored_rate: float | None = None) -> Job:
        if kind is JobKind.TRANSITION:
            job_id = self.service.transition(params)
        elif kind is JobKind.LOAD:
            job_id = self.service.load_model(params)
        elif kind is JobKind.WARM_UP:
            job_id = self.service.warm_up()
        else:
            job_id = self.service.render(params)
        job = Job(job_id, kind, params, list(targets or []), label, estimate_s=estimate_s, stored_rate=stored_rate)
        self.jobs.append(job)
        self.added.emit(job)
        self.changed.emit(job)
        if job.targets and job.draws_pictures:
            self.panels_changed.emit(list(job.targets))
        return job

    def cancel(self, job: Job | None = None) -> None:
        """Stop one job, or every queued and running one (the running one stops within a step)."""
        self.service.cancel(None if job is None else job.id)

    # ---- looking ------------------------------------------------------------------------------
    def find(self, job_id: int) -> Job | None:
        return next((j for j in reversed(self.jobs) if j.id == job_id), None)

    def active(self, *kinds: JobKind) -> list[Job]:
        return [j for j in self.jobs if j.active and (not kinds or j.kind in kinds)]

    @property
    def busy(self) -> bool:
        """Work the user waits for is queued or running (the start-up warm-up does not count)."""
        return any(j.kind is not JobKind.WARM_UP for j in self.active())

    def latest_for(self, panel_id: str) -> Job | None:
        return next((j for j in reversed(self.jobs) if j.draws_pictures and panel_id in j.targets), None)

    def panel_status(self, panel_id: str) -> str | None:
        """"queued", "generating" or "failed" while a job says so about the panel; None otherwise
        (then the panel's own pictures tell: done or empty)."""
        job = self.latest_for(panel_id)
        if job is None or panel_id in job.drawn:
            return None
        if job.state is JobState.QUEUED:
            return "queued"
        if job.state is JobState.RUNNING:
            return "generating" if job.progress and panel_id in job.progress.keys else "queued"
        if job.state is JobState.FAILED:
            return "failed"
        return None

    def panel_progress(self, panel_id: str) -> tuple[int, int] | None:
        """(step, steps) of the panel being drawn now."""
        job = self.latest_for(panel_id)
        if job is None or job.state is not JobState.RUNNING or job.progress is None:
            return None
        if panel_id not in job.progress.keys or panel_id in job.drawn:
            return None
        return job.progress.step, job.progress.steps

    def forget_panels(self) -> None:
        """A new project is open: finished jobs say nothing about its panels."""
        ids = [pid for j in self.jobs for pid in j.targets]
        self.jobs = [j for j in self.jobs if j.active]
        if ids:
            self.panels_changed.emit(ids)

    # ---- the worker's signals ---------------------------------------------------------------
    def _start(self, job: Job) -> None:
        if job.state is JobState.QUEUED:
            job.state = JobState.RUNNING
            job.started_at = _now()

    def _progress(self, job_id, phase, keys, step, steps, done, total, preview) -> None:
        job = self.find(job_id)
        if job is None:
            return
        self._start(job)
        before = set(job.progress.keys) if job.progress else set()
        job.progress = JobProgress(phase, tuple(keys), step, steps, done, total)
        job.clock.tick(done, _now())
        self.changed.emit(job)
        touched = (before | set(keys)) & set(job.targets)
        if touched:
            self.panels_changed.emit(sorted(touched))
        if not preview.isNull():
            self.preview.emit(job, list(keys), preview)

    def _image(self, job_id, key, role, png, params) -> None:
        job = self.find(job_id)
        if job is None:
            return
        self._start(job)
        if job.kind is JobKind.REFERENCES and role in ("reference", "sheet"):
            name = (params.get("characters") or [None])[0]
            if name:
                job.references.setdefault(name, []).append((png, params))
        self.image.emit(job, key, role, png, params)
        if key in job.targets and key not in job.drawn:
            job.drawn.append(key)
            self.panels_changed.emit([key])

    def _clip(self, job_id, before, after, frames, params) -> None:
        job = self.find(job_id)
        if job is not None:
            self.clip.emit(job, before, after, frames, params)

    def _note(self, job_id, text) -> None:
        job = self.find(job_id)
        if job is not None:
            job.notes.append(text)
            self.note.emit(job, text)

    def _model_loading(self, job_id, source) -> None:
        job = self.find(job_id)
        if job is not None:
            self._start(job)
            self.changed.emit(job)
            self.model_loading.emit(job, source)

    def _model_ready(self, job_id, info) -> None:
        job = self.find(job_id)
        if job is not None:
            self._start(job)
            job.model = dict(info)
            self.model_ready.emit(job, job.model)

    def _failed(self, job_id, kind, message) -> None:
        job = self.find(job_id)
        if job is None:
            return
        try:
            error_kind = ErrorKind(kind)
        except ValueError:
            error_kind = ErrorKind.INTERNAL
        job.error = JobError(error_kind, message)

    def _finished(self, job_id, status) -> None:
        job = self.find(job_id)
        if job is None:
            return
        job.state = {"done": JobState.DONE, "cancelled": JobState.CANCELLED}.get(status, JobState.FAILED)
        if job.state is JobState.FAILED and job.error is None:
            job.error = JobError(ErrorKind.INTERNAL, "The job failed.")
        if job.started_at is None:
            job.started_at = _now()
        job.ended_at = _now()
        if job.error is not None and job.state is JobState.FAILED:
            self.failed.emit(job)
        self.changed.emit(job)
        self.ended.emit(job)
        if job.targets and job.draws_pictures:
            self.panels_changed.emit(list(job.targets))
        finished = [j for j in self.jobs if not j.active]
        for old in finished[:-HISTORY]:
            self.jobs.remove(old)
