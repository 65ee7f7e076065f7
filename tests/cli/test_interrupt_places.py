"""Where a Ctrl+C may raise KeyboardInterrupt: at StoryStudio's own lines, never inside an import.

Python runs a signal handler at the next Python line, which may be code a C extension is calling back
(the CI found both: PySide6 turned a KeyboardInterrupt raised inside its enum conversion into a
SystemError, and torch's pybind11 code aborted the process when one was raised mid-import). These tests
send real SIGINTs to this process while "library" code runs: code whose module is not StoryStudio's.
"""

from __future__ import annotations

import signal
import sys
import textwrap
import time

import pytest

from storystudio.cli.base import Interrupts, stopping_place

LIBRARY = textwrap.dedent("""
    import signal, time

    def busy(seconds, log):
        signal.raise_signal(signal.SIGINT)  # the handler runs at once, on this line
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
        log.append(("library finished", time.monotonic()))
""")

OURS = textwrap.dedent("""
    import time

    def run(call, log):
        call()
        log.append(("back in our code", time.monotonic()))
        end = time.monotonic() + 30
        while time.monotonic() < end:  # until the Ctrl+C is raised here
            pass
        log.append(("never interrupted", time.monotonic()))
""")


def _module(source: str, name: str) -> dict:
    space = {"__name__": name}
    exec(compile(source, f"<{name}>", "exec"), space)
    return space


@pytest.fixture
def handled():
    interrupts = Interrupts()
    previous = signal.signal(signal.SIGINT, interrupts.handler)
    yield interrupts
    signal.signal(signal.SIGINT, previous)
    interrupts.reset()


def _run(call) -> tuple[list, float]:
    ours = _module(OURS, "storystudio.probe")
    log: list = []
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        ours["run"](lambda: call(log), log)
    log.append(("raised", time.monotonic()))
    assert "never interrupted" not in [what for what, _ in log]
    return [(what, at - started) for what, at in log], started


def _events(log: list) -> list[str]:
    """What happened, leaving out the line back in our code (the Ctrl+C may be raised on that very line)."""
    return [what for what, _ in log if what != "back in our code"]


def test_a_ctrl_c_in_library_code_is_raised_at_our_next_line(handled):
    library = _module(LIBRARY, "somelibrary")
    log, _ = _run(lambda log: library["busy"](0.1, log))
    assert _events(log) == ["library finished", "raised"]
    assert log[-1][1] - log[0][1] < 1.0  # found within a few retries of 10 ms


def test_a_ctrl_c_in_a_long_library_call_is_raised_there_after_half_a_second(handled):
    """A wait in a library that does not come back for long still ends, where it is."""
    library = _module(LIBRARY, "somelibrary")
    log, _ = _run(lambda log: library["busy"](30, log))
    assert [what for what, _ in log] == ["raised"]
    assert Interrupts.MOST_DEFERRED_SECONDS <= log[0][1] < 10


def test_a_ctrl_c_during_an_import_waits_until_the_import_is_done(handled, tmp_path, monkeypatch):
    """Even past the half second: an extension module's start-up must never be cut short."""
    (tmp_path / "slow_import_probe.py").write_text(textwrap.dedent("""
        import signal, time
        signal.raise_signal(signal.SIGINT)
        end = time.monotonic() + 0.8
        while time.monotonic() < end:
            pass
        DONE = True
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slow_import_probe", raising=False)

    def load(log):
        import slow_import_probe

        log.append(("imported", time.monotonic()))
        assert slow_import_probe.DONE

    log, _ = _run(load)
    assert _events(log) == ["imported", "raised"]
    assert log[0][1] >= 0.8


def test_a_soft_stop_still_only_asks_first(handled):
    """Inside ``soft`` the first Ctrl+C sets ``stop`` wherever it lands; the second one raises."""
    library = _module(LIBRARY, "somelibrary")
    with handled.soft() as stop:
        log: list = []
        library["busy"](0.05, log)
        assert stop.is_set() and log
        log2, _ = _run(lambda log: library["busy"](0.05, log))
    assert _events(log2) == ["library finished", "raised"]


def test_stopping_places():
    assert stopping_place(sys._getframe()) == "library"  # a test module is not StoryStudio's code
    ours = _module("import sys\ndef here():\n    return sys._getframe()\n", "storystudio.cli.probe")
    assert stopping_place(ours["here"]()) == "ours"
    assert stopping_place(None) == "ours"


def test_a_ctrl_c_inside_a_qt_call_is_not_turned_into_a_system_error(handled):
    """The CI's case: SIGINT handled while PySide6 reads ``Qt.IntersectClip``'s value (Python code in
    the middle of ``QPainter.setClipPath``). Raised there, the exception came out as a SystemError."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter, QPainterPath

    image = QImage(64, 64, QImage.Format.Format_RGB32)
    painter = QPainter(image)
    path = QPainterPath()
    path.addRect(0, 0, 32, 32)
    inside_qt: list[str] = []

    def sigint_inside_the_enum_read(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.endswith("enum.py") and not inside_qt:
            inside_qt.append(frame.f_code.co_name)
            signal.raise_signal(signal.SIGINT)

    def paint(log):
        sys.setprofile(sigint_inside_the_enum_read)
        try:
            painter.setClipPath(path, Qt.ClipOperation.IntersectClip)
        finally:
            sys.setprofile(None)
        log.append(("library finished", time.monotonic()))

    try:
        log, _ = _run(paint)
    finally:
        painter.end()
    assert inside_qt, "no Python code ran inside setClipPath: the case is not made"
    assert _events(log) == ["library finished", "raised"]


def test_a_line_is_written_whole_so_a_ctrl_c_cannot_split_it(monkeypatch):
    """The CI once read "Loading ... storystudio: stopped." as one line: a Ctrl+C had landed between the text
    and its line end, which print() writes apart. Here the stream is interrupted after its first write."""
    from storystudio.cli.base import say

    class Interrupted:
        def __init__(self):
            self.written = []

        def write(self, text):
            if self.written:
                raise KeyboardInterrupt
            self.written.append(text)

        def flush(self):
            pass

        def isatty(self):
            return False

    stream = Interrupted()
    monkeypatch.setattr(sys, "stderr", stream)
    say("Loading the model ...")
    monkeypatch.undo()
    assert stream.written == ["Loading the model ...\n"]


def test_without_pthread_kill_the_deferred_ctrl_c_still_arrives(handled, monkeypatch):
    """Windows has no signal.pthread_kill: the retry raises SIGINT in the process instead."""
    monkeypatch.delattr(signal, "pthread_kill")
    library = _module(LIBRARY, "somelibrary")
    log, _ = _run(lambda log: library["busy"](0.1, log))
    assert _events(log) == ["library finished", "raised"]
