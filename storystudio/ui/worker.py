"""The inference worker: one long-lived QThread that owns the pipeline and runs jobs in order.

The GUI never touches the model. It submits jobs (load a model, generate a
story or some of its panels) with a snapshot of what to draw; the worker
answers through signals: progress with a preview, each finished picture as PNG
bytes with its parameters, errors in plain words, and the end of each job.
The UI applies pictures to the project itself (as undoable commands).

torch and diffusers are imported by the worker thread when the first job
needs them, so the window opens without waiting for them.
"""

from __future__ import annotations

import io
import itertools
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QImage

from ..engine.errors import ErrorKind, error_kind
from ..project.story import Story
from .threads import WorkerThread


@dataclass
class ModelChoice:
    source: str
    device: str = "auto"
    dtype: str = "auto"
    allow_download: bool = False
    memory: str = "full"  # engine.models.loading.MEMORY_MODES


@dataclass
class RenderJob:
    """Generate pictures for a story snapshot: every panel, or only ``only`` (panel keys)."""

    story: Story
    settings: Any  # engine GenerationSettings, or the project's ProjectSettings (converted in the worker)
    model: ModelChoice
    only: list[str] | None = None
    label: str = "Generate"
    # Bytes of host memory and of disk for keeping character banks between jobs (0, 0: keep none, and draw
    # a character's references again beside the panels that need them; see docs/ENGINE.md).
    bank_budget: tuple[int, int] = (0, 0)
    compile: bool = False  # run the UNet through torch.compile (Preferences; a one-time cost, cached on disk)
    ray_address: str = ""  # Preferences > Render on: "" this computer, else a Ray cluster ("auto": started here)


@dataclass
class TransitionJob:
    """Make the in-between frames of one cut: from the end of ``before``'s hold to the start of ``after``'s."""

    before: str  # panel ids
    after: str
    start_png: bytes
    end_png: bytes
    frames: int
    size: tuple[int, int]
    start_prompt: str = ""
    end_prompt: str = ""
    seed: int = 0
    backend: str = "blend"  # "blend" (no model) or "diffusion"
    video_models: dict[str, Any] = field(default_factory=dict)  # for "diffusion": where its models are
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Job:
    id: int
    kind: str  # "load" or "render"
    payload: Any
    cancel: threading.Event = field(default_factory=threading.Event)


def _plain_error(exc: BaseException) -> tuple[ErrorKind, str]:
    """What kind of failure it is, and one message a creator can act on."""
    kind = error_kind(exc)
    if kind is ErrorKind.OUT_OF_MEMORY:
        return kind, ("The GPU ran out of memory. Choose a lower GPU memory setting in Preferences, or a smaller "
                      "picture size, then generate again.")
    if kind is ErrorKind.INTERNAL:
        return kind, f"Generation failed: {exc or type(exc).__name__}"
    return kind, str(exc)


class InferenceWorker(QObject):
    """Lives in the worker thread; its slots run there."""

    # job, phase, keys, step, steps, work done, work total (picture-steps of the whole job), preview
    progress = Signal(int, str, list, int, int, int, int, QImage)
    image_ready = Signal(int, str, str, bytes, dict)  # job, panel key, role, PNG bytes, parameters
    message = Signal(int, str)  # job, a note for the user (e.g. truncated prompt)
    model_loading = Signal(int, str)  # job, what is being loaded
    model_loaded = Signal(int, str)  # job, one-line description
    model_ready = Signal(int, dict)  # job, what was loaded: name, source, arch, device (in words)
    device_found = Signal(str)  # the compute device, in words (after the warm-up)
    machine_found = Signal(dict)  # what this computer can draw on (``Machine.to_dict``), after the warm-up
    clip_ready = Signal(int, str, str, list, dict)  # job, panel before, panel after, PNG bytes per frame, parameters
    failed = Signal(int, str, str)  # job, ErrorKind value, plain message
    finished = Signal(int, str)  # job, "done" | "cancelled" | "failed"

    def __init__(self) -> None:
        super().__init__()
        self._model = None
        self._model_key: tuple | None = None
        self._bank_cache = None  # engine BankCache, within the budget of the last job
        self._controlnets: dict = {}  # ControlNets the loaded model's renders loaded (poses), kept between jobs
        self._video = None  # the transition pipeline, once loaded
        self._video_key: tuple | None = None
        self._ray_engine = None  # engine.distributed RayStoryEngine, while renders go to a Ray cluster
        self._ray_key: tuple | None = None

    @Slot(object)
    def run(self, job: Job) -> None:
        if job.cancel.is_set():
            self.finished.emit(job.id, "cancelled")
            return
        try:
            if job.kind == "warm-up":
                warm_up()
                machine = find_machine()
                self.machine_found.emit(machine)
                self.device_found.emit(machine["summary"])
            elif job.kind == "load":
                self._load(job, job.payload)
            elif job.kind == "transition":
                self._transition(job, job.payload)
            else:
                self._render(job, job.payload)
        except Exception as exc:  # every failure reaches the user as words; the worker keeps running
            kind, message = _plain_error(exc)
            if kind is ErrorKind.CANCELLED:
                self.finished.emit(job.id, "cancelled")
                return
            if kind is ErrorKind.INTERNAL:
                traceback.print_exc()
            self.failed.emit(job.id, kind.value, message)
            self.finished.emit(job.id, "failed")
            return
        self.finished.emit(job.id, "cancelled" if job.cancel.is_set() else "done")

    def _load(self, job: Job, choice: ModelChoice):
        from ..engine.models.loading import device_summary, load_model, quiet_libraries

        key = (choice.source, choice.device, choice.dtype, choice.memory)
        if self._model is None or self._model_key != key:
            self.model_loading.emit(job.id, choice.source)
            quiet_libraries()
            self._model = None
            self._bank_cache = None  # banks belong to the model that made them
            self._controlnets = {}  # and ControlNets to its architecture and device
            self._model = load_model(choice.source, device=choice.device, dtype=choice.dtype,
                                     allow_download=choice.allow_download, memory=choice.memory)
            self._model_key = key
        m = self._model
        device = device_summary(m.device)
        self.model_ready.emit(job.id, {"name": m.name, "source": choice.source, "arch": m.arch, "device": device})
        self.model_loaded.emit(job.id, f"{m.name} ({m.arch.upper()}) on {device}")
        return m

    def _render(self, job: Job, work: RenderJob) -> None:
        from ..engine.story.pipeline import StoryPipeline
        from ..engine.story.settings import GenerationSettings

        engine = (self._ray(job, work) if work.ray_address
                  else StoryPipeline(self._load(job, work.model), controlnets=self._controlnets))
        settings = work.settings
        if not isinstance(settings, GenerationSettings):
            settings = GenerationSettings.from_project(settings, compile=work.compile or None)

        def on_progress(p) -> None:
            preview = _to_qimage(p.preview) if p.preview is not None else QImage()
            self.progress.emit(job.id, p.phase, list(p.panel_keys), p.step, p.steps, p.work_done, p.work_total,
                               preview)

        def on_image(img) -> None:
            buf = io.BytesIO()
            img.image.save(buf, format="PNG")
            self.image_ready.emit(job.id, img.key, img.role, buf.getvalue(), img.parameters)

        result = engine.render(work.story, settings, progress=on_progress, cancel=job.cancel,
                               only=work.only, on_image=on_image, bank_cache=self._banks_within(work.bank_budget))
        for note in result.messages:
            self.message.emit(job.id, note)


    def _ray(self, job: Job, work: RenderJob):
        """The Ray engine for this address and model: its actors keep the model loaded between jobs."""
        from ..engine.distributed.ray_story import RayStoryEngine

        choice = work.model
        key = (work.ray_address, choice.source, choice.device, choice.dtype, choice.memory)
        if self._ray_engine is None or self._ray_key != key:
            self.close_ray()
            self.model_loading.emit(job.id, f"{choice.source} on the Ray cluster ({work.ray_address})")
            self._ray_engine = RayStoryEngine.start(work.ray_address, choice.source, device=choice.device,
                                                    dtype=choice.dtype, allow_download=choice.allow_download,
                                                    memory=choice.memory)
            self._ray_key = key
        m = self._ray_engine.model
        self.model_ready.emit(job.id, {"name": m.name, "source": choice.source, "arch": m.arch, "device": m.device})
        self.model_loaded.emit(job.id, f"{m.name} ({m.arch.upper()}) on {m.device}")
        return self._ray_engine

    def close_ray(self) -> None:
        """End the Ray actors (and a Ray started for them)."""
        engine, self._ray_engine, self._ray_key = self._ray_engine, None, None
        if engine is not None:
            engine.close()

    def _banks_within(self, budget: tuple[int, int]):
        """The bank cache for this budget (the same one while the budget stays; none for a zero budget)."""
        from ..engine.attention.bank import BankCache

        ram, disk = (int(b) for b in budget)
        if ram <= 0 and disk <= 0:
            self._bank_cache = None
        elif self._bank_cache is None or (self._bank_cache.ram_bytes, self._bank_cache.disk_bytes) != (ram, disk):
            from platformdirs import user_cache_path

            folder = user_cache_path("StoryStudio", appauthor=False) / "banks"
            self._bank_cache = BankCache(ram, disk, folder)
        return self._bank_cache

    def _transition(self, job: Job, work: TransitionJob) -> None:
        from PIL import Image

        from ..engine.video.transitions import BlendBackend, TransitionRequest

        if work.backend == "diffusion":
            backend = self._video_backend(job, work)
        else:
            backend = BlendBackend()
        request = TransitionRequest(
            start=Image.open(io.BytesIO(work.start_png)).convert("RGB"),
            end=Image.open(io.BytesIO(work.end_png)).convert("RGB"),
            frames=work.frames, size=work.size, start_prompt=work.start_prompt, end_prompt=work.end_prompt,
            seed=work.seed, options=dict(work.options))

        def on_progress(done: int, total: int) -> None:
            self.progress.emit(job.id, "transition", [work.before], done, total, done, total, QImage())

        frames = backend.render(request, progress=on_progress, cancel=job.cancel.is_set)
        pngs = []
        for frame in frames:
            buf = io.BytesIO()
            frame.save(buf, format="PNG")
            pngs.append(buf.getvalue())
        parameters = {"backend": backend.name, "frames": work.frames, "size": list(work.size), "seed": work.seed,
                      "start_prompt": work.start_prompt, "end_prompt": work.end_prompt, **work.options}
        self.clip_ready.emit(job.id, work.before, work.after, pngs, parameters)

    def _video_backend(self, job: Job, work: TransitionJob):
        """The AnimateDiff backend, its models loaded once and kept (like the picture model)."""
        from ..engine.models.loading import quiet_libraries
        from ..engine.video.diffusion import DiffusionTransitionBackend, load_video_models

        places = {k: str(v) for k, v in work.video_models.items() if v and k != "device" and k != "dtype"}
        device, dtype = work.video_models.get("device", "auto"), work.video_models.get("dtype", "auto")
        key = (tuple(sorted(places.items())), device, dtype)
        if self._video is None or self._video_key != key:
            self.model_loading.emit(job.id, "the video models")
            quiet_libraries()
            self._video = None
            self._video = load_video_models(**places, device=device, dtype=dtype)
            self._video_key = key
        self.model_loaded.emit(job.id, "video models (AnimateDiff + SparseCtrl + IP-Adapter)")
        return DiffusionTransitionBackend(self._video)


def find_machine() -> dict:
    """What this computer can draw on, as ``Machine.to_dict`` (torch is imported by now)."""
    import torch

    from ..engine.models.catalog import detect_gpu_memory_gb
    from ..engine.models.loading import device_summary, pick_device

    devices = []
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    devices.append("cpu")
    return {"summary": device_summary(pick_device("auto")), "gpu_gb": detect_gpu_memory_gb(), "devices": devices}


def warm_up() -> None:
    """Import torch, diffusers and the pipeline classes.

    Initialising their compiled modules holds Python's global lock for up to a
    few hundred milliseconds at a time, which would stall the GUI thread. The
    app does it in the worker right after the window opens, while nobody waits
    for a picture, instead of in the middle of the first job.
    """
    import transformers

    # quiet before diffusers' imports: they make transformers warn (once, on the console) that its image
    # processors fall back to PIL without torchvision, which StoryStudio neither needs nor asks for
    transformers.utils.logging.set_verbosity_error()
    import diffusers  # noqa: F401
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline  # noqa: F401
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer  # noqa: F401

    # Loading a pipeline imports every scheduler compatible with its own and the guiders; some pull in scipy.
    import diffusers.guiders  # noqa: F401

    diffusers.EulerDiscreteScheduler.compatibles  # noqa: B018
    # Those imports leave millions of long-lived objects. A full pass of Python's cycle collector over
    # them holds the lock for 200-400 ms; frozen, they are left out of every later pass.
    import gc

    from ..engine.story import pipeline as story_pipeline  # noqa: F401
    from ..engine.story.prompts import warm_up as warm_up_prompts

    warm_up_prompts()  # compel and pyparsing, which the first prompt would otherwise import
    gc.freeze()

    from ..engine.models.loading import quiet_libraries

    quiet_libraries()


def _to_qimage(pil_image) -> QImage:
    rgb = pil_image.convert("RGB")
    data = rgb.tobytes()
    image = QImage(data, rgb.width, rgb.height, 3 * rgb.width, QImage.Format_RGB888)
    return image.copy()  # own the pixels: ``data`` goes away with this frame


class GenerationService(QObject):
    """The GUI side: owns the worker thread, numbers jobs, cancels them."""

    submit_job = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._jobs: dict[int, Job] = {}
        self.worker = InferenceWorker()
        self.thread = WorkerThread(self.worker, "StoryStudio inference")
        self.submit_job.connect(self.worker.run)
        self.worker.finished.connect(self._forget)

    def submit(self, kind: str, payload: Any) -> int:
        job = Job(next(self._ids), kind, payload)
        self._jobs[job.id] = job
        self.submit_job.emit(job)
        return job.id

    def warm_up(self) -> int:
        """Import the heavy libraries in the worker, ahead of the first job."""
        return self.submit("warm-up", None)

    def load_model(self, choice: ModelChoice) -> int:
        return self.submit("load", choice)

    def render(self, work: RenderJob) -> int:
        return self.submit("render", work)

    def transition(self, work: TransitionJob) -> int:
        return self.submit("transition", work)

    def cancel(self, job_id: int | None = None) -> None:
        """Stop one job, or every queued and running job; the running one stops within a step."""
        for jid, job in list(self._jobs.items()):
            if job_id is None or jid == job_id:
                job.cancel.set()

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    @Slot(int, str)
    def _forget(self, job_id: int, status: str) -> None:
        self._jobs.pop(job_id, None)

    def shutdown(self, wait_ms: int = 10000) -> None:
        self.cancel()
        self.thread.stop(wait_ms)
