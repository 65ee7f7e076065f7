"""Work off the GUI thread, set up in one place.

Two shapes, both with their threads named and their ends waited for:

- :func:`run_in_thread` runs one function in a thread of its own and tells
  the GUI thread how it went: ``progressed(value)`` as often as the function
  reports, then exactly one of ``returned(result)``, ``errored(exception)``
  or ``cancelled()``, then ``ended()``. The function gets a ``report``
  callable and a ``cancelled`` check when it names those parameters. An
  exception raised after :meth:`ThreadWorker.cancel` counts as cancelled (the
  work stopped because it was asked to).
- :class:`WorkerThread` keeps one ``QObject`` in a long-lived thread whose
  slots run there, one request after another (the inference worker, the
  animatic preview's frames).

The callbacks given to :func:`run_in_thread` run in the thread that called it
(queued), so they may touch widgets; connect the signals themselves only to
methods of objects that live in the GUI thread, for the same reason. The
worker keeps itself alive until it has ended.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

_running: set[ThreadWorker] = set()  # workers not yet ended: nothing else may hold them


class ThreadWorker(QThread):
    """One call of ``func`` on a thread of its own."""

    progressed = Signal(object)
    returned = Signal(object)
    errored = Signal(object)  # the exception
    cancelled = Signal()
    ended = Signal()

    def __init__(self, func: Callable[..., Any], *args: Any, name: str = "", **kwargs: Any):
        super().__init__()
        self.setObjectName(name or f"StoryStudio {getattr(func, '__name__', 'work')}")
        self._func, self._args, self._kwargs = func, args, kwargs
        self._stop = threading.Event()
        try:
            wanted = inspect.signature(func).parameters
        except (TypeError, ValueError):
            wanted = {}
        if "report" in wanted:
            self._kwargs["report"] = self.progressed.emit
        if "cancelled" in wanted:
            self._kwargs["cancelled"] = self._stop.is_set
        self.finished.connect(self._ended)

    def start(self) -> ThreadWorker:  # type: ignore[override]
        _running.add(self)
        super().start()
        return self

    def cancel(self) -> None:
        """Ask the function to stop (it sees ``cancelled()`` turn true)."""
        self._stop.set()

    @property
    def cancel_requested(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        try:
            result = self._func(*self._args, **self._kwargs)
        except Exception as exc:  # every failure reaches the GUI thread as a value; the receiver decides
            if self._stop.is_set():
                self.cancelled.emit()
            else:
                self.errored.emit(exc)
            return
        if self._stop.is_set():
            self.cancelled.emit()
        else:
            self.returned.emit(result)

    def _ended(self) -> None:
        self.ended.emit()
        _running.discard(self)


class _Relay(QObject):
    """Lives in the thread that started the work and calls a plain function there (a lambda connected
    straight to a signal emitted from another thread would run in that other thread)."""

    def __init__(self, func: Callable[..., None]):
        super().__init__()
        self.func = func

    @Slot(object)
    def call(self, value: Any) -> None:
        self.func(value)

    @Slot()
    def call0(self) -> None:
        self.func()


def run_in_thread(func: Callable[..., Any], *args: Any, name: str = "",
                  on_progress: Callable[[Any], None] | None = None,
                  on_result: Callable[[Any], None] | None = None,
                  on_error: Callable[[BaseException], None] | None = None,
                  on_cancel: Callable[[], None] | None = None,
                  start: bool = True, **kwargs: Any) -> ThreadWorker:
    """Run ``func(*args, **kwargs)`` on a new thread; the callbacks run on the GUI thread."""
    worker = ThreadWorker(func, *args, name=name, **kwargs)
    worker.relays = []
    for signal, slot in ((worker.progressed, on_progress), (worker.returned, on_result),
                         (worker.errored, on_error), (worker.cancelled, on_cancel)):
        if slot is not None:
            relay = _Relay(slot)
            signal.connect(relay.call0 if signal is worker.cancelled else relay.call)
            worker.relays.append(relay)
    if start:
        worker.start()
    return worker


def wait_for_workers(msecs: int = 10000) -> bool:
    """Cancel every running worker and wait for them (at the app's end); True when all ended in time."""
    for worker in list(_running):
        worker.cancel()
    return all(worker.wait(msecs) for worker in list(_running))


def threads_still_running() -> bool:
    """Whether any thread of ours is still busy (a model load, or a step on a slow processor, that did not
    stop when asked at the app's end). Destroying a running QThread aborts the process, so the app then
    ends its process directly instead of leaving it to Python's clean-up."""
    return any(t.isRunning() for t in list(_long_lived)) or any(w.isRunning() for w in list(_running))


_long_lived: set[QThread] = set()


class WorkerThread:
    """A long-lived thread for one ``QObject``: its slots run there, queued one after another."""

    def __init__(self, worker: QObject, name: str):
        self.worker = worker
        self.thread = QThread()
        self.thread.setObjectName(name)
        worker.moveToThread(self.thread)
        self.thread.start()
        _long_lived.add(self.thread)
        self.thread.finished.connect(lambda: _long_lived.discard(self.thread), Qt.DirectConnection)

    def stop(self, wait_ms: int = 10000) -> bool:
        """Let the thread finish what it is doing and end; True when it ended within ``wait_ms``."""
        self.thread.quit()
        return self.thread.wait(wait_ms)

    @property
    def running(self) -> bool:
        return self.thread.isRunning()
