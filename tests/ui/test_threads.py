"""The one thread-worker helper: results, progress, errors and cancel reach the GUI thread."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, QThread, Signal, Slot

from storystudio.ui.threads import ThreadWorker, WorkerThread, run_in_thread, wait_for_workers


def test_result_and_progress_arrive_on_the_gui_thread(qtbot):
    seen = []

    def work(n, report):
        for i in range(n):
            report(i)
        return threading.current_thread().name, n * 2

    worker = run_in_thread(work, 3, name="StoryStudio test",
                           on_progress=lambda v: seen.append(("progress", v, threading.current_thread())),
                           on_result=lambda v: seen.append(("result", v, threading.current_thread())))
    qtbot.waitUntil(lambda: any(kind == "result" for kind, *_ in seen), timeout=10000)
    assert [v for kind, v, _ in seen if kind == "progress"] == [0, 1, 2]
    result = next(v for kind, v, _ in seen if kind == "result")
    assert result[1] == 6 and result[0] != threading.main_thread().name  # it ran elsewhere
    assert all(t is threading.main_thread() for *_, t in seen)  # the callbacks ran on the GUI thread
    assert worker.objectName() == "StoryStudio test"
    assert wait_for_workers(5000)


def test_errors_and_cancel(qtbot):
    errors = []
    run_in_thread(lambda: 1 / 0, on_error=errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=10000)
    assert isinstance(errors[0], ZeroDivisionError)

    started, outcome = threading.Event(), []

    def slow(cancelled):
        started.set()
        while not cancelled():
            pass
        raise RuntimeError("stopped because asked")

    worker = ThreadWorker(slow)
    worker.cancelled.connect(lambda: outcome.append("cancelled"))
    worker.errored.connect(lambda exc: outcome.append("error"))
    worker.start()
    assert started.wait(5)
    worker.cancel()
    qtbot.waitUntil(lambda: bool(outcome), timeout=10000)
    assert outcome == ["cancelled"]  # an exception after Cancel is the cancel, not an error


class Echo(QObject):
    done = Signal(object)

    @Slot(int)
    def work(self, value):
        self.done.emit((value, QThread.currentThread()))


def test_a_long_lived_worker_thread_runs_requests_in_order(qtbot):
    class Asker(QObject):
        ask = Signal(int)

    echo, asker, got = Echo(), Asker(), []
    thread = WorkerThread(echo, "StoryStudio echo")
    asker.ask.connect(echo.work)
    echo.done.connect(got.append)
    for i in range(3):
        asker.ask.emit(i)
    qtbot.waitUntil(lambda: len(got) == 3, timeout=10000)
    assert [v for v, _ in got] == [0, 1, 2] and all(t is thread.thread for _, t in got)
    assert thread.thread.objectName() == "StoryStudio echo"
    assert thread.stop(5000) and not thread.running
