"""The job queue as a model: kinds and states, targets, progress, typed errors, time left (no real worker)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from storystudio.engine.errors import ErrorKind
from storystudio.ui import jobs as jobs_module
from storystudio.ui.jobs import JobKind, JobQueue, JobState
from storystudio.ui.worker import RenderJob


class FakeWorker(QObject):
    progress = Signal(int, str, list, int, int, int, int, QImage)
    image_ready = Signal(int, str, str, bytes, dict)
    clip_ready = Signal(int, str, str, list, dict)
    message = Signal(int, str)
    failed = Signal(int, str, str)
    finished = Signal(int, str)
    model_loading = Signal(int, str)
    model_ready = Signal(int, dict)
    machine_found = Signal(dict)


class FakeService(QObject):
    def __init__(self):
        super().__init__()
        self.worker = FakeWorker()
        self.next_id = 0
        self.cancelled = []

    def _submit(self, *_):
        self.next_id += 1
        return self.next_id

    render = transition = load_model = _submit

    def warm_up(self):
        return self._submit()

    def cancel(self, job_id=None):
        self.cancelled.append(job_id)


@pytest.fixture
def queue(qapp):
    return JobQueue(FakeService())


def test_a_job_goes_from_queued_to_done_and_its_panels_follow(queue, small_story, monkeypatch):
    now = [100.0]
    monkeypatch.setattr(jobs_module, "_now", lambda: now[0])
    keys = [p.key for p in small_story.panels]
    changed = []
    queue.panels_changed.connect(changed.append)
    job = queue.submit(JobKind.PANELS, RenderJob(small_story, None, None), keys[:2], stored_rate=0.5)
    assert job.state is JobState.QUEUED and queue.busy
    assert queue.panel_status(keys[0]) == "queued" and queue.panel_status(keys[5]) is None
    w = queue.service.worker
    w.progress.emit(job.id, "read", keys[:1], 1, 4, 1, 8, QImage())  # 1 of 2 pictures x 4 steps
    assert job.state is JobState.RUNNING and queue.panel_status(keys[0]) == "generating"
    assert queue.panel_status(keys[1]) == "queued" and queue.panel_progress(keys[0]) == (1, 4)
    assert job.seconds_left() == pytest.approx(7 * 0.5)  # before its own speed is known: the stored one
    now[0] = 101.0
    w.progress.emit(job.id, "read", keys[:1], 2, 4, 2, 8, QImage())
    now[0] = 102.0
    w.progress.emit(job.id, "read", keys[:1], 3, 4, 3, 8, QImage())
    assert job.clock.rate() == pytest.approx(1.0)  # one second per picture-step, measured
    assert job.seconds_left() == pytest.approx(5 * 1.0)
    pictures = []
    queue.image.connect(lambda j, key, role, png, params: pictures.append(key))
    w.image_ready.emit(job.id, keys[0], "panel", b"png", {})
    assert pictures == [keys[0]] and job.drawn == [keys[0]] and queue.panel_status(keys[0]) is None
    ended = []
    queue.ended.connect(ended.append)
    now[0] = 110.0
    w.finished.emit(job.id, "done")
    assert ended == [job] and job.state is JobState.DONE and not queue.busy and job.seconds == 10.0
    assert queue.panel_status(keys[1]) is None  # a finished job says nothing more about its panels
    assert keys[0] in sum(changed, [])


def test_a_failed_job_keeps_its_error_kind_and_marks_its_panels(queue, small_story):
    keys = [p.key for p in small_story.panels]
    job = queue.submit(JobKind.REFERENCES, RenderJob(small_story, None, None), keys[:3])
    failures = []
    queue.failed.connect(failures.append)
    queue.service.worker.failed.emit(job.id, ErrorKind.OUT_OF_MEMORY.value, "The GPU ran out of memory.")
    queue.service.worker.finished.emit(job.id, "failed")
    assert failures == [job] and job.state is JobState.FAILED
    assert job.error.kind is ErrorKind.OUT_OF_MEMORY and "memory" in job.error.message
    assert all(queue.panel_status(k) == "failed" for k in keys[:3])
    queue.submit(JobKind.PANELS, RenderJob(small_story, None, None), keys[:1])
    assert queue.panel_status(keys[0]) == "queued" and queue.panel_status(keys[1]) == "failed"  # the newest job
    queue.forget_panels()  # another project: the old failures say nothing about it
    assert queue.panel_status(keys[1]) is None


def test_references_notes_and_panel_numbers(queue, small_story):
    keys = [p.key for p in small_story.panels]
    job = queue.submit(JobKind.REFERENCES, RenderJob(small_story, None, None), keys[:1])
    w = queue.service.worker
    w.image_ready.emit(job.id, keys[0], "reference", b"a", {"characters": ["Ann"]})
    w.image_ready.emit(job.id, "sheet-Bo-1", "sheet", b"b", {"characters": ["Bo"]})
    notes = []
    queue.note.connect(lambda j, text: notes.append(text))
    w.message.emit(job.id, "Panel 3: cut")
    assert set(job.references) == {"Ann", "Bo"} and notes == ["Panel 3: cut"] and job.notes == notes
    assert job.panel_key_at(3) == keys[2] and job.panel_key_at(99) is None


def test_warm_up_and_cancel(queue):
    warm = queue.submit(JobKind.WARM_UP, None)
    assert warm.active and not queue.busy  # the start-up work is nobody's wait
    queue.cancel()
    assert queue.service.cancelled == [None]
    queue.service.worker.finished.emit(warm.id, "cancelled")
    assert warm.state is JobState.CANCELLED and warm.error is None


def test_history_is_bounded(queue, monkeypatch):
    monkeypatch.setattr(jobs_module, "HISTORY", 3)
    for _ in range(6):
        job = queue.submit(JobKind.LOAD, None)
        queue.service.worker.finished.emit(job.id, "done")
    assert len(queue.jobs) == 3
