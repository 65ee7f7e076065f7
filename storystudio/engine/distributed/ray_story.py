"""The driver of a story rendered through Ray: plan once, spread the batches, retry, gather.

:class:`RayStoryEngine` starts one :class:`~.actors.StoryActor` per GPU of the
cluster (``num_gpus=1``; on a cluster without GPUs, actors with a share of the
processor cores), each loading the model with the code path of a local render.
``render`` then takes the place of :meth:`..story.pipeline.StoryPipeline.render`:

1. One actor plans the story (with the batch size every actor's memory allows
   at each size: the smallest of them), into *units*: each batch of panels,
   and each character's reference panels.
2. Units are assigned greedily to the actors, each unit going where it adds
   the fewest pictures to the busiest step loop: a batch on an actor that
   already draws its characters' references costs only its panels.
3. Each actor draws its units in one call of ``StoryPipeline.render(only=...)``:
   its batches and, beside them in the same step loop, the references of their
   characters. References are drawn again on every actor that needs them
   rather than sent between actors: a step's bank must reach the readers within
   that step (840 MiB per SDXL character at 1024), which would put a transfer
   between GPUs inside every step; drawing 4 references costs 4 pictures per
   actor and no traffic.
4. The pictures come back as arrays through Ray's object store. An actor that
   dies has its units assigned again over the others (nothing is lost); an
   error of the engine (out of memory, a user's mistake) reaches the caller as
   the same type a local render raises; cancel reaches every actor within a
   UNet call through the board.

A panel's picture is the same as in a local render with the same settings:
its seed derives from the story seed and its key, its batch is the one the
local plan makes, and the references it reads are drawn with the same seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...project.story import Story
from ..errors import EngineError, GenerationCancelled, InputError, ModelError
from ..story.settings import CancelToken, GenerationSettings
from .actors import Board, Plan, StoryActor, Unit, portable_error
from .cluster import Connection, connect, require_ray

CPU_CORES_PER_ACTOR = 8  # without GPUs: one actor per this many cores (torch's threads share the rest)
WAIT_SECONDS = 0.1  # how often the driver looks at progress and the cancel token while actors draw


class RayUnavailable(EngineError):
    """Every actor of the cluster is gone; the message says what was left undone."""


def load(units: list[Unit], references: dict[str, int]) -> int:
    """Pictures in the step loop of an actor drawing ``units``: theirs and their characters' references."""
    characters = {c for u in units for c in u.characters}
    return sum(u.pictures for u in units) + sum(references.get(c, 0) for c in characters)


def assign(units: list[Unit], references: dict[str, int], actors: list[int]) -> dict[int, list[Unit]]:
    """Units spread over ``actors`` so that the busiest step loop holds as few pictures as it can.

    Units of one cast go together first (largest cast first, each to the actor it leaves least busy),
    so that a character's references are drawn by as few actors as possible; then single units are
    moved, or two swapped, off the busiest actor while that makes it less busy.
    """
    out: dict[int, list[Unit]] = {a: [] for a in actors}
    casts: dict[tuple[str, ...], list[Unit]] = {}
    for unit in units:
        casts.setdefault(unit.characters, []).append(unit)
    for group in sorted(casts.values(), key=lambda g: -load(g, references)):
        best = min(actors, key=lambda a: (load(out[a] + group, references), a))
        out[best].extend(group)
    for _ in range(4 * len(units) + 4):
        top = max(actors, key=lambda a: (load(out[a], references), -a))
        best_value, best_change = load(out[top], references), None
        for other in actors:
            if other == top:
                continue
            for i, unit in enumerate(out[top]):
                rest = out[top][:i] + out[top][i + 1:]
                value = max(load(rest, references), load(out[other] + [unit], references))
                if value < best_value:
                    best_value, best_change = value, (other, i, None)
                for j, theirs in enumerate(out[other]):
                    value = max(load(rest + [theirs], references),
                                load(out[other][:j] + out[other][j + 1:] + [unit], references))
                    if value < best_value:
                        best_value, best_change = value, (other, i, j)
        if best_change is None:
            break
        other, i, j = best_change
        unit = out[top].pop(i)
        if j is not None:
            out[top].append(out[other].pop(j))
        out[other].append(unit)
    return {a: us for a, us in out.items() if us}


def raise_cause(exc: BaseException) -> None:
    """Raise the engine's own error inside a Ray task error (its type and message), or ``exc`` itself."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        raise portable_error(cause) from None
    raise exc


@dataclass(frozen=True)
class RemoteModel:
    """The model the actors hold, as the command line and the app describe a loaded model."""

    name: str
    source: str
    arch: str
    device: str  # in words: "Ray, 2 actor(s): NVIDIA H200, 140 GiB"
    dtype: str


class RayStoryEngine:
    """Draws stories on the actors of a Ray cluster; ``close`` ends them and the connection it made (a Ray
    started for them stops; a cluster runs on)."""

    def __init__(self, connection: Connection, actors: list[Any], infos: list[dict]):
        self.connection = connection
        self.actors = actors
        self.infos = infos
        self.alive = list(range(len(actors)))
        self.retries = 0  # units drawn again because their actor died (in the last render)
        self.drawn: dict[int, list[str]] = {}  # actor -> panel keys it drew in the last render (retries included)

    # ---- starting ------------------------------------------------------------------------------------------
    @classmethod
    def start(cls, address: str, source: str, device: str = "auto", dtype: str = "auto",
              allow_download: bool = False, config: str | None = None, memory: str = "full",
              actors: int | None = None, cpus_per_actor: int | None = None) -> RayStoryEngine:
        """Connect (or start a local Ray for ``auto``), start the actors and load the model on each."""
        ray = require_ray()
        connection = connect(address)
        try:
            return cls._start(ray, connection, source, device, dtype, allow_download, config, memory, actors,
                              cpus_per_actor)
        except BaseException:
            connection.close()
            raise

    @classmethod
    def _start(cls, ray, connection, source, device, dtype, allow_download, config, memory, count, cpus):
        gpus = int(connection.gpus)
        if device in ("cuda", "mps") or device.startswith("cuda:"):
            if not gpus:
                raise InputError("The Ray cluster has no GPU; render on it with --device auto or cpu.")
        use_gpus = gpus > 0 and device != "cpu"
        if use_gpus:
            count = count or gpus
            options = {"num_gpus": 1, "num_cpus": cpus or 1}
            actor_device = "cuda"
        else:
            count = count or max(1, int(connection.cpus) // CPU_CORES_PER_ACTOR)
            cpus = cpus or max(1, int(connection.cpus) // count)
            options = {"num_cpus": cpus}
            actor_device = "cpu"
        need = count * options["num_cpus"]
        if need > connection.cpus or (use_gpus and count > gpus):
            raise InputError(f"The Ray cluster has {connection.cpus:g} processor core(s) and {gpus} GPU(s); "
                             f"{count} actor(s) need {need:g} core(s){' and a GPU each' if use_gpus else ''}.")
        remote = ray.remote(max_restarts=0, max_task_retries=0)(StoryActor)
        actors = [remote.options(**options).remote(None if use_gpus else cpus) for _ in range(count)]
        try:
            infos = ray.get([a.load.remote(source, actor_device, dtype, allow_download, config, memory)
                             for a in actors])
        except ray.exceptions.RayTaskError as exc:
            for a in actors:
                ray.kill(a)
            raise_cause(exc)
        except ray.exceptions.RayActorError:
            for a in actors:
                ray.kill(a)
            raise ModelError("A Ray actor ended while loading the model (see the cluster's logs); try again.") \
                from None
        return cls(connection, actors, infos)

    @property
    def info(self) -> dict:
        """What the first actor loaded: name, source, arch, device, dtype, multiple."""
        return self.infos[self.alive[0] if self.alive else 0]

    @property
    def model(self) -> RemoteModel:
        i = self.info
        return RemoteModel(i["name"], i["source"], i["arch"], self.device_words, i["dtype"])

    @property
    def size_multiple(self) -> int:
        """What width and height must be multiples of for the actors' model."""
        return int(self.info["multiple"])

    @property
    def device_words(self) -> str:
        """Where the pictures are drawn, in words (the manifest's and the app's)."""
        kinds = sorted({self.infos[i]["device"] for i in self.alive})
        return f"Ray, {len(self.alive)} actor(s): {', '.join(kinds)}"

    def close(self) -> None:
        ray = require_ray()
        if ray.is_initialized():
            for a in self.actors:
                try:
                    ray.kill(a)
                except Exception:  # already gone with its node
                    pass
        self.actors, self.alive = [], []
        self.connection.close()

    # ---- drawing -------------------------------------------------------------------------------------------
    def plan(self, story: Story, settings: GenerationSettings) -> Plan:
        ray = require_ray()
        sizes = sorted({(settings.width, settings.height)}
                       | {(int(p.size[0]), int(p.size[1])) for p in story.panels if p.size is not None
                          and len(p.size) == 2})
        batches: dict[tuple[int, int], int] = {}
        live = [self.actors[i] for i in self.alive]
        if not live:
            raise RayUnavailable("No Ray actor is left to draw on; start the render again.")
        try:
            if not settings.batch_size:
                found = ray.get([a.auto_batches.remote(sizes, settings.guided) for a in live])
                batches = {s: min(f[s] for f in found) for s in sizes}
            return ray.get(live[0].plan.remote(story, settings, batches))
        except ray.exceptions.RayTaskError as exc:
            raise_cause(exc)

    def render(
        self,
        story: Story,
        settings: GenerationSettings,
        progress: Callable[[Any], None] | None = None,
        cancel: CancelToken | None = None,
        only: list[str] | None = None,
        on_image: Callable[[Any], None] | None = None,
        previews: bool = True,
        banks: dict | None = None,
        keep_banks: bool = False,
        bank_cache: Any = None,
    ):
        """As :meth:`StoryPipeline.render`: a :class:`StoryResult`, pictures through ``on_image`` as each
        actor finishes, progress of the whole story through ``progress``. Kept banks are not used: every
        actor draws the references its panels read."""
        import numpy as np
        import ray
        from PIL import Image

        from ..story.pipeline import PanelImage, Progress, StoryResult

        if banks or keep_banks:
            raise InputError("Kept character banks are not used when rendering through Ray: each actor draws "
                             "the references beside its panels.")

        plan = self.plan(story, settings)
        wanted = set(only) if only is not None else None
        if wanted is not None:
            unknown = wanted - {p.key for p in story.panels}
            if unknown:
                raise InputError(f"There is no panel {', '.join(sorted(unknown))} in this story.")
        units = [u for u in plan.units if wanted is None or wanted & set(u.keys)]
        board = ray.remote(Board).options(num_cpus=0).remote()
        tasks: dict[Any, tuple[int, list[Unit], int]] = {}
        work: dict[int, list[int]] = {}  # task -> [done, total, pictures] (picture-steps; estimate until told)
        counter = iter(range(1, 1 << 30))
        self.retries = 0
        self.drawn = {}

        def submit(assigned: dict[int, list[Unit]]) -> None:
            for actor, its in assigned.items():
                task = next(counter)
                keys = sorted({k for u in its for k in u.keys if wanted is None or k in wanted})
                chars = {c for u in its for c in u.characters}
                pictures = sum(u.pictures for u in its) + sum(plan.references.get(c, 0) for c in chars)
                work[task] = [0, pictures * settings.steps, pictures]
                ref = self.actors[actor].render.remote(task, story, settings, keys, plan.batches, board, previews)
                tasks[ref] = (actor, its, task)
                self.drawn.setdefault(actor, []).extend(keys)

        def show(events: list[dict]) -> None:
            for e in events:
                if e["task"] not in work:
                    continue  # from a task whose actor died since
                work[e["task"]][0], work[e["task"]][1] = e["work_done"], e["work_total"]
                if progress is None:
                    continue
                preview = Image.fromarray(e["preview"]) if e["preview"] is not None else None
                progress(Progress(e["phase"], e["keys"], e["step"], e["steps"], 0,
                                  sum(w[2] for w in work.values()), preview,
                                  sum(w[0] for w in work.values()), sum(w[1] for w in work.values())))

        result = StoryResult({}, [], {}, list(plan.notes), {"write": [], "read": [], "plain": []})
        seen_notes = set(plan.notes)
        sheets: dict[str, PanelImage] = {}
        stopping = False
        failure: BaseException | None = None
        submit(assign(units, plan.references, self.alive))
        try:
            while tasks:
                ready, _ = ray.wait(list(tasks), num_returns=1, timeout=WAIT_SECONDS)
                show(ray.get(board.drain.remote()))
                if not stopping and cancel is not None and cancel.is_set():
                    stopping = True
                    board.cancel.remote()
                for ref in ready:
                    actor, its, task = tasks.pop(ref)
                    try:
                        out = ray.get(ref)
                    except ray.exceptions.RayActorError:
                        work.pop(task, None)
                        self.drawn.pop(actor, None)
                        if actor in self.alive:
                            self.alive.remove(actor)
                        if stopping:
                            continue
                        if not self.alive:
                            raise RayUnavailable(f"Every Ray actor ended before the story was drawn "
                                                 f"({sum(len(u.keys) for u in its)} panel(s) left); start "
                                                 "the render again.") from None
                        self.retries += len(its)
                        submit(assign(its, plan.references, self.alive))  # the dead actor's units, elsewhere
                        continue
                    except ray.exceptions.RayTaskError as exc:
                        work.pop(task, None)
                        try:
                            raise_cause(exc)
                        except GenerationCancelled:
                            stopping = True
                        except BaseException as err:  # the first real failure stops the others and is raised
                            if failure is None:
                                failure = err
                            if not stopping:
                                stopping = True
                                board.cancel.remote()
                        continue
                    self._gather(out, result, sheets, seen_notes, on_image, PanelImage, Image, np)
        finally:
            if tasks:  # left early (an error here, Ctrl+C): the actors stop at their next UNet call
                board.cancel.remote()
        if failure is not None:
            raise failure
        if stopping:
            raise GenerationCancelled()
        order = [p.key for p in story.panels]
        result.images = {k: result.images[k] for k in order if k in result.images}
        result.sheets = list(sheets.values())
        return result

    @staticmethod
    def _gather(out: dict, result, sheets: dict, seen_notes: set, on_image, panel_image, image_cls, np) -> None:
        def picture(d: dict):
            return panel_image(d["key"], image_cls.fromarray(np.asarray(d["pixels"])), d["role"], d["parameters"],
                               d["seconds"])

        for d in out["images"]:
            img = picture(d)
            result.images[img.key] = img
            if on_image is not None:
                on_image(img)
        for d in out["sheets"]:
            if d["key"] in sheets:
                continue  # a character's sheets come from every actor that drew its references: one is kept
            img = picture(d)
            sheets[img.key] = img
            if on_image is not None:
                on_image(img)
        for note in out["notes"]:
            if note not in seen_notes:
                seen_notes.add(note)
                result.notes.append(note)
        for phase, secs in out["unet_calls"].items():
            result.unet_calls.setdefault(phase, []).extend(secs)

