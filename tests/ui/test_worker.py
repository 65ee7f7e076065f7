"""The inference worker on its QThread, with the tiny model: results, cancel, errors, a responsive GUI."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image
from PySide6.QtCore import QElapsedTimer, QThread, QTimer

from storystudio.engine.story.pipeline import GenerationSettings
from storystudio.project.script import parse_script
from storystudio.ui.worker import GenerationService, ModelChoice, RenderJob

STORY = "[Ann] a girl with red hair\n\n[Ann] reads\n[Ann] runs\n[NC] a beach\n[Ann] sleeps\n"


def settings(**kw):
    base = dict(steps=3, width=64, height=64, seed=5, id_length=2)
    base.update(kw)
    return GenerationSettings(**base)


@pytest.fixture
def service(qtbot):
    svc = GenerationService()
    yield svc
    svc.shutdown()


class Recorder:
    def __init__(self, svc):
        self.images, self.progress, self.finished, self.failed, self.threads = [], [], [], [], set()
        w = svc.worker
        w.image_ready.connect(lambda job, key, role, png, params: self.images.append((job, key, role, png, params)))
        w.progress.connect(lambda job, phase, keys, step, steps, done, total, preview:
                           self.progress.append((job, phase, step, preview.width())))
        w.finished.connect(lambda job, status: self.finished.append((job, status)))
        w.failed.connect(lambda job, kind, msg: self.failed.append((job, msg)))
        w.progress.connect(lambda *a: self.threads.add(QThread.currentThread()))


def test_generate_all_through_the_worker(qtbot, service, tiny_model_dirs):
    rec = Recorder(service)
    model = ModelChoice(str(tiny_model_dirs["sd15"]), device="cpu")
    loaded = []
    service.worker.model_loaded.connect(lambda job, text: loaded.append(text))
    job = service.render(RenderJob(parse_script(STORY), settings(), model))
    qtbot.waitUntil(lambda: (job, "done") in rec.finished, timeout=60000)
    assert sorted(k for _, k, _, _, _ in rec.images) == ["panel-1", "panel-2", "panel-3", "panel-4"]
    for _, key, role, png, params in rec.images:
        with Image.open(io.BytesIO(png)) as im:
            assert im.size == (64, 64)
        assert params["seed"] and params["steps"] == 3
    assert {role for _, _, role, _, _ in rec.images} == {"reference", "panel"}
    # previews arrive (at most every half second per batch, and at each batch's last step)
    assert rec.progress and {width for *_, width in rec.progress} <= {0, 8} and rec.progress[-1][-1] == 8
    assert loaded and "SD15" in loaded[0] and "CPU" in loaded[0]
    assert service.worker.thread() is service.thread.thread and service.thread.thread is not QThread.currentThread()
    qtbot.waitUntil(lambda: not service.busy, timeout=5000)  # the GUI side forgets finished jobs


def test_regenerate_one_panel_reproduces_it(qtbot, service, tiny_model_dirs):
    rec = Recorder(service)
    model = ModelChoice(str(tiny_model_dirs["sd15"]), device="cpu")
    first = service.render(RenderJob(parse_script(STORY), settings(), model))
    again = service.render(RenderJob(parse_script(STORY), settings(), model, only=["panel-4"]))
    qtbot.waitUntil(lambda: (again, "done") in rec.finished, timeout=60000)
    by_job = {}
    for job, key, role, png, params in rec.images:
        by_job.setdefault(job, {})[key] = png
    assert list(by_job[again]) == ["panel-4"]
    assert by_job[again]["panel-4"] == by_job[first]["panel-4"]


def test_cancel_mid_job_and_the_worker_goes_on(qtbot, service, tiny_model_dirs):
    rec = Recorder(service)
    model = ModelChoice(str(tiny_model_dirs["sd15"]), device="cpu")
    long = service.render(RenderJob(parse_script(STORY), settings(steps=8), model))
    service.worker.progress.connect(
        lambda job, phase, keys, step, *rest: service.cancel(job) if job == long and step == 2 else None)
    qtbot.waitUntil(lambda: (long, "cancelled") in rec.finished, timeout=60000)
    steps_of_job = [step for job, _, step, _ in rec.progress if job == long]
    # references and panels advance together; the job stopped within one step of the request
    assert 2 in steps_of_job and max(steps_of_job) <= 3 and steps_of_job == sorted(steps_of_job)
    assert not [k for job, k, *_ in rec.images if job == long]
    after = service.render(RenderJob(parse_script("[NC] a beach\n"), settings(steps=2), model))
    qtbot.waitUntil(lambda: (after, "done") in rec.finished, timeout=60000)
    assert [k for job, k, *_ in rec.images if job == after] == ["panel-1"]


def test_errors_arrive_as_plain_words(qtbot, service, tmp_path):
    rec = Recorder(service)
    job = service.render(RenderJob(parse_script(STORY), settings(), ModelChoice(str(tmp_path / "none.safetensors"))))
    qtbot.waitUntil(lambda: (job, "failed") in rec.finished, timeout=30000)
    assert rec.failed == [(job, f"The model file {tmp_path / 'none.safetensors'} does not exist.")]


def test_a_tag_without_a_character_is_a_plain_message(qtbot, service, tiny_model_dirs):
    from storystudio.project.story import Panel, Story

    rec = Recorder(service)
    story = Story([], [Panel("p1", "[Gone] waves", characters=["Gone"])])  # its character was deleted
    job = service.render(RenderJob(story, settings(), ModelChoice(str(tiny_model_dirs["sd15"]), device="cpu")))
    qtbot.waitUntil(lambda: (job, "failed") in rec.finished, timeout=30000)
    message = rec.failed[0][1]
    assert message.startswith("There is no character named [Gone]") and not message.startswith(("'", "Generation"))


def test_gui_event_loop_keeps_turning_during_a_job(qtbot, service, tiny_model_dirs):
    rec = Recorder(service)
    model = ModelChoice(str(tiny_model_dirs["sdxl"]), device="cpu")
    warm = service.warm_up()  # what the app does when its window opens
    qtbot.waitUntil(lambda: (warm, "done") in rec.finished, timeout=60000)
    gaps, clock = [], QElapsedTimer()
    timer = QTimer()
    timer.setInterval(10)

    def tick():
        if clock.isValid():
            gaps.append(clock.restart())
        else:
            clock.start()

    timer.timeout.connect(tick)
    timer.start()
    start = time.perf_counter()
    job = service.render(RenderJob(parse_script(STORY), settings(steps=6), model))
    qtbot.waitUntil(lambda: (job, "done") in rec.finished, timeout=60000)
    timer.stop()
    assert time.perf_counter() - start > 0.2 and len(gaps) > 10  # the job really ran while we measured
    assert max(gaps) < 100, f"the GUI thread stalled for {max(gaps)} ms"


class _LocalAsRay:
    """Stands in for engine.distributed's RayStoryEngine: draws locally, counts its starts and closes."""

    started: list = []
    closed: list = []

    def __init__(self, address, source, **kw):
        from storystudio.engine.distributed.ray_story import RemoteModel
        from storystudio.engine.models.loading import load_model
        from storystudio.engine.story.pipeline import StoryPipeline

        self.engine = StoryPipeline(load_model(source, device="cpu"))
        self.model = RemoteModel("tiny", source, self.engine.model.arch, "Ray, 1 actor(s): CPU", "float32")
        self.started.append((address, source))

    @classmethod
    def start(cls, address, source, **kw):
        return cls(address, source, **kw)

    def render(self, *args, **kw):
        return self.engine.render(*args, **kw)

    def close(self):
        self.closed.append(self)


def test_renders_go_to_the_ray_cluster_when_preferences_say_so(qtbot, service, tiny_model_dirs, monkeypatch):
    from storystudio.engine.distributed import ray_story

    monkeypatch.setattr(ray_story, "RayStoryEngine", _LocalAsRay)
    _LocalAsRay.started, _LocalAsRay.closed = [], []
    rec = Recorder(service)
    loaded = []
    service.worker.model_loaded.connect(lambda job, text: loaded.append(text))
    model = ModelChoice(str(tiny_model_dirs["sd15"]), device="cpu")
    first = service.render(RenderJob(parse_script(STORY), settings(), model, ray_address="auto"))
    second = service.render(RenderJob(parse_script(STORY), settings(), model, only=["panel-4"],
                                      ray_address="auto"))
    qtbot.waitUntil(lambda: (second, "done") in rec.finished, timeout=60000)
    assert (first, "done") in rec.finished and not rec.failed
    assert _LocalAsRay.started == [("auto", str(tiny_model_dirs["sd15"]))]  # the actors keep the model
    assert loaded and "on Ray, 1 actor(s)" in loaded[0]
    assert sorted(k for j, k, *_ in rec.images if j == first) == ["panel-1", "panel-2", "panel-3", "panel-4"]
    other = service.render(RenderJob(parse_script(STORY), settings(), model, only=["panel-4"],
                                     ray_address="gpu-box:6379"))
    qtbot.waitUntil(lambda: (other, "done") in rec.finished, timeout=60000)
    assert len(_LocalAsRay.started) == 2 and len(_LocalAsRay.closed) == 1  # another cluster: the old actors end


def test_ray_not_installed_says_how_to_get_it(qtbot, service, tiny_model_dirs, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as without the extra
    failed = []
    service.worker.failed.connect(lambda job, kind, msg: failed.append((kind, msg)))
    rec = Recorder(service)
    model = ModelChoice(str(tiny_model_dirs["sd15"]), device="cpu")
    job = service.render(RenderJob(parse_script(STORY), settings(), model, ray_address="auto"))
    qtbot.waitUntil(lambda: (job, "failed") in rec.finished, timeout=30000)
    assert failed == [("user-mistake", 'Rendering through Ray needs Ray, which is not installed; install it with '
                                       'pip install "storystudio[ray]".')]
