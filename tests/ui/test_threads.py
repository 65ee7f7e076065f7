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


def test_a_thread_busy_past_the_apps_end_is_seen_and_the_process_ends_cleanly(tmp_path):
    """Closing the window while the worker is in a long step: Qt aborts a process whose running QThread is
    destroyed at exit; the app sees the busy thread and ends its process itself, with the window's code."""
    import subprocess
    import sys

    script = tmp_path / "busy.py"
    script.write_text(
        "import sys, threading, time\n"
        "from PySide6.QtCore import QMetaObject, QObject, Qt, QTimer, Slot\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from storystudio.ui.app import end_threads\n"
        "from storystudio.ui.threads import WorkerThread, threads_still_running\n"
        "class Slow(QObject):\n"
        "    @Slot()\n"
        "    def work(self):\n"
        "        time.sleep(30)\n"
        "app = QApplication([])\n"
        "slow = Slow()\n"
        "thread = WorkerThread(slow, 'busy')\n"
        "QMetaObject.invokeMethod(slow, 'work', Qt.QueuedConnection)\n"  # runs on the worker's thread
        "QTimer.singleShot(300, app.quit)\n"
        "code = app.exec()\n"
        "assert not thread.stop(200) and threads_still_running()\n"
        "print('ending', flush=True)\n"
        "sys.exit(end_threads(7))\n",
        encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.stdout.strip() == "ending", done.stderr
    assert done.returncode == 7, done.stderr  # ended by the app, not aborted (-6) by Qt
    assert "Destroyed while thread" not in done.stderr


def test_threads_that_ended_are_not_counted(qtbot):
    from storystudio.ui.threads import threads_still_running

    class Quick(QObject):
        pass

    thread = WorkerThread(Quick(), "quick")
    assert thread.stop(5000)
    qtbot.waitUntil(lambda: not threads_still_running(), timeout=5000)
