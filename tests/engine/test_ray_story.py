"""The Ray back end on the CPU: a local Ray (2 cores) and the tiny SDXL model, as CI runs it.

One Ray for the module; the command line's run comes first (its own actor, stopped after), then two
actors shared by the other tests, the one that kills an actor last. A local render with the same
settings and one torch thread (each actor has one core) is the reference the pictures must equal,
bit for bit.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import ray
import torch

from cli_helpers import cli
from helpers import SMALL_STORY
from storystudio.engine.distributed.actors import Unit, portable_error
from storystudio.engine.distributed.ray_story import RayStoryEngine, assign, load
from storystudio.engine.errors import ErrorKind, GenerationCancelled, InputError, OutOfMemoryError, error_kind
from storystudio.engine.story.pipeline import GenerationSettings, StoryPipeline
from storystudio.project.script import parse_script

SETTINGS = GenerationSettings(steps=4, width=64, height=64, id_length=2, freeu=False, seed=7)


def story():
    # Ann's four 64x64 panels after her references are drawn in two batches of two (the CPU's batch): a picture's
    # last bits depend on its batch, so the actors must batch as the local plan does
    s = parse_script(SMALL_STORY + "[Ann] sings\n[Ann] jumps\n[Ann] sits\n", title="small")
    s.panels[0].size = (96, 64)  # a reference panel of its own size: drawn as a reference and again as a reader
    return s


def pixels(img) -> np.ndarray:
    return np.asarray(img.image.convert("RGB"))


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_result(tiny_sdxl):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each actor draws (the CPU's sums depend on the thread count)
    try:
        return StoryPipeline(tiny_sdxl).render(story(), SETTINGS)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def engine(local_ray, tiny_model_dirs):
    e = RayStoryEngine.start("auto", str(tiny_model_dirs["sdxl"]), device="cpu", actors=2, cpus_per_actor=1)
    yield e
    e.close()


def assert_same(result, local) -> None:
    assert list(result.images) == list(local.images)
    for key, img in local.images.items():
        assert np.array_equal(pixels(result.images[key]), pixels(img)), key
        assert result.images[key].parameters == img.parameters, key
        assert result.images[key].role == img.role
    assert sorted(s.key for s in result.sheets) == sorted(s.key for s in local.sheets)
    ours = {s.key: s for s in result.sheets}
    for sheet in local.sheets:
        assert np.array_equal(pixels(ours[sheet.key]), pixels(sheet)), sheet.key
    assert sorted(n.text for n in result.notes) == sorted(n.text for n in local.notes)


def test_render_command_through_ray(local_ray, tmp_path, tiny_model_dirs):
    """``render --ray auto`` with a Ray already running uses it (its own actor) and leaves it running."""
    script = tmp_path / "small.story.txt"
    script.write_text(SMALL_STORY, encoding="utf-8")
    out = tmp_path / "out"
    run = cli("render", script, "--out", out, "--model", tiny_model_dirs["sdxl"], "--steps", "2", "--size", "64x64",
              "--device", "cpu", "--id-length", "2", "--ray", "auto")
    assert run.rc == 0, run.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["model"]["device"].startswith("Ray, 1 actor(s)")
    assert sorted(p.name for p in out.glob("panel-*.png")) == [f"panel-{i:03d}.png" for i in range(1, 7)]
    assert all(p["file"] for p in manifest["panels"])
    assert ray.is_initialized(), "a Ray the command did not start was shut down"
    deadline = time.monotonic() + 20
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 2, "the command left its actor holding the cores"


def test_same_pictures_as_a_local_render(engine, local_result):
    events = []
    result = engine.render(story(), SETTINGS, progress=events.append)
    assert_same(result, local_result)
    assert len(engine.alive) == 2
    assert [len(img.parameters["batch"]) for img in result.images.values() if img.role == "panel"].count(2) == 4
    # both actors drew (the story's batches were spread), and progress covers the whole story
    assert len([keys for keys in engine.drawn.values() if keys]) == 2
    assert events and events[-1].work_done == events[-1].work_total
    assert all(e.work_done <= e.work_total for e in events)
    assert any(e.preview is not None for e in events)


def test_only_some_panels(engine, local_result):
    keys = [story().panels[3].key, story().panels[5].key]
    result = engine.render(story(), SETTINGS, only=keys)
    assert list(result.images) == keys
    for key in keys:
        assert np.array_equal(pixels(result.images[key]), pixels(local_result.images[key]))


def test_a_users_mistake_on_an_actor_reaches_the_caller_as_its_kind(engine):
    with pytest.raises(InputError) as err:
        engine.render(story(), replace(SETTINGS, width=80, height=80))  # the tiny UNet needs multiples of 32
    assert error_kind(err.value) is ErrorKind.USER_MISTAKE
    assert "multiples of 32" in str(err.value)
    with pytest.raises(InputError, match="no panel nope"):
        engine.render(story(), SETTINGS, only=["nope"])


def test_out_of_memory_keeps_its_kind_across_ray():
    gpu_oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    err = portable_error(gpu_oom)
    assert isinstance(err, OutOfMemoryError) and error_kind(err) is ErrorKind.OUT_OF_MEMORY
    assert ray.cloudpickle.loads(ray.cloudpickle.dumps(err)).args == err.args
    cancelled = GenerationCancelled()
    assert portable_error(cancelled) is cancelled


def test_cancel_stops_every_actor(engine):
    stop = threading.Event()
    events = []

    def progress(p):
        events.append(p)
        stop.set()

    long = replace(SETTINGS, steps=25)
    started = time.perf_counter()
    with pytest.raises(GenerationCancelled):
        engine.render(story(), long, progress=progress, cancel=stop)
    assert events and events[-1].work_done < events[-1].work_total
    assert time.perf_counter() - started < 30
    # the actors are free again at once: the next render is not queued behind a cancelled one
    assert engine.render(story(), SETTINGS, only=[story().panels[4].key]).images


def test_units_are_spread_where_they_cost_least():
    refs = {"Ann": 4, "Bo": 4}
    units = [Unit(("a",), ("Ann",), 2), Unit(("b",), ("Ann",), 2), Unit(("c",), ("Bo",), 2),
             Unit(("d",), ("Bo",), 2), Unit(("r",), ("Ann",), 0)]
    out = assign(units, refs, [0, 1])
    by_actor = {a: {u.keys[0] for u in us} for a, us in out.items()}
    assert by_actor == {0: {"a", "b", "r"}, 1: {"c", "d"}}  # each character's references drawn once
    # one character, 44 panels in batches of 8 (and 4) beside 4 references: split, its references drawn twice
    units = [Unit((f"p{i}",), ("Ann",), 8) for i in range(5)] + [Unit(("q",), ("Ann",), 4), Unit(("r",), ("Ann",), 0)]
    out = assign(units, {"Ann": 4}, [0, 1])
    assert sorted(load(us, {"Ann": 4}) for us in out.values()) == [24, 28]
    assert sorted(k for us in out.values() for u in us for k in u.keys) == sorted(k for u in units for k in u.keys)


def test_a_killed_actor_has_its_batches_drawn_elsewhere(engine, local_result):
    """Runs last: it leaves one actor."""
    killed = []

    def progress(p):
        if not killed and p.work_done > 0:
            killed.append(engine.actors[0])
            ray.kill(engine.actors[0], no_restart=True)

    result = engine.render(story(), replace(SETTINGS), progress=progress)
    assert killed
    assert engine.alive == [1]
    assert engine.retries >= 1
    assert_same(result, local_result)
