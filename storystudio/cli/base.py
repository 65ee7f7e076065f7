"""What every ``storystudio`` subcommand shares: its base class, the errors, option types, output, Ctrl+C.

A subcommand is a :class:`Command`: ``register`` adds its options to the
parser, ``check`` validates them (and the files they name) before any work
starts, and ``run`` does the work. Every limit an option checks is one of
``project.limits``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from ..project import limits
from . import EXIT_USER


class UserError(Exception):
    """A mistake in what the user asked for; the message is one plain sentence, shown as it is."""


class Stopped(Exception):
    """The user stopped the command (Ctrl+C); the message says what was kept, or is empty."""


class Command:
    """One subcommand: its options, their checks, and its work."""

    name: ClassVar[str]
    help: ClassVar[str]

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    @classmethod
    def register(cls, subparsers: Any) -> argparse.ArgumentParser:
        """Add this command's parser (and options) to ``subparsers``."""
        raise NotImplementedError

    def check(self) -> None:
        """UserError for any option (or file it names) that cannot work, before any work starts."""

    def run(self) -> int:
        raise NotImplementedError


class Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one plain sentence, not a usage dump."""

    def error(self, message: str) -> None:
        message = shorten_quotes(message)
        self.exit(EXIT_USER, f"{self.prog}: {message[0].upper() + message[1:]}. See {self.prog} --help.\n")


def shorten_quotes(message: str) -> str:
    """A parser message with every quoted value cut to a short excerpt (argparse repeats bad values whole)."""
    message = "".join(c if c.isprintable() else " " for c in message)
    return re.sub(rf"'([^']{{{limits.MAX_QUOTE_CHARS}}})[^']+'", r"'\1...'", message)


# ---- option types: each refuses a bad value with the sentence argparse shows ------------------------------
def whole(low: int, high: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        digits = text.strip()
        if re.fullmatch(r"[+-]?[0-9]{20,}", digits):  # far out of range (and int() refuses 4300 digits)
            raise argparse.ArgumentTypeError(f"{what} must be from {low} to {high}, not {limits.quote(digits, 20)}")
        try:
            value = int(digits)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{limits.quote(text)} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be from {low} to {high}, not {value}")
        return value

    return parse


def number(low: float, high: float, what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{limits.quote(text)} is not a number") from None
        if not math.isfinite(value) or not low <= value <= high:  # nan and inf are no numbers of anything
            raise argparse.ArgumentTypeError(f"{what} must be a number from {low:g} to {high:g}, not {text.strip()[:20]}")
        return value

    return parse


def size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{limits.quote(text)} is not a size; write it as WIDTHxHEIGHT, e.g. 768x768") from None
    problem = limits.picture_size_problem(w, h)
    if problem:
        raise argparse.ArgumentTypeError(f"{limits.quote(w)}x{limits.quote(h)}: {problem}")
    return w, h


def text(most: int, what: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if len(value) > most:
            raise argparse.ArgumentTypeError(f"{what} may be at most {most} characters long, not {len(value)}")
        return value

    return parse


def path(what: str) -> Callable[[str], str]:
    """A file or folder name: not empty (an empty --out would mean the current folder), no NUL."""
    def parse(value: str) -> str:
        if not value.strip():
            raise argparse.ArgumentTypeError(f"{what} needs a name; an empty one is not a place")
        if "\x00" in value or len(value) > 4096:
            raise argparse.ArgumentTypeError(f"{limits.quote(value)} is not a usable {what}")
        return value

    return parse


# ---- output ------------------------------------------------------------------------------------------------
def say(message: str) -> None:
    """A line on stderr (an empty one only ends a progress line on a terminal)."""
    if message or sys.stderr.isatty():
        # One write, line end included: a Ctrl+C between the text and its line end (as print() writes them)
        # would put the closing "stopped" on the same line.
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


# ---- Ctrl+C --------------------------------------------------------------------------------------------------
class Interrupts:
    """What Ctrl+C (SIGINT) does, whatever the command is doing.

    ``main`` routes SIGINT to :meth:`handler`. By default it raises
    KeyboardInterrupt, which ``main`` turns into exit code 130 and one line. Inside :meth:`soft` the first Ctrl+C only sets
    :attr:`stop` (work checks it and stops cleanly, keeping what is finished);
    a second one raises at once. Inside :meth:`held` (moving finished files
    into place) it waits until the block ends, so nothing is left half moved.

    KeyboardInterrupt is only raised where Python code can take it: at a
    line of StoryStudio's own code, never while a module is being imported.
    Python runs a signal handler at whatever Python line comes next, and that
    line may belong to code a C extension is calling back: PySide6 reading an
    enum's value in the middle of ``QPainter.setClipPath`` turns the
    exception into a SystemError, and torch's pybind11 code, mid-import,
    aborts the process. Elsewhere the handler asks again every
    :data:`RETRY_SECONDS` (it sends SIGINT to the main thread once more), and
    after :data:`MOST_DEFERRED_SECONDS` in a library (counted from the end of
    the last import) it raises where it is, so a long wait in a library still
    ends.
    """

    #: How often a deferred Ctrl+C looks again for a place to stop, and how long it waits for one of
    #: StoryStudio's own lines (outside imports, which are always waited for).
    RETRY_SECONDS = 0.01
    MOST_DEFERRED_SECONDS = 0.5

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._soft = 0
        self._held = 0
        self._pending = False
        self._deferred_since: float | None = None
        self._retry: threading.Timer | None = None
        self._retry_lock = threading.RLock()  # re-entrant: a handler may run again inside itself

    def handler(self, signum: int, frame: Any) -> None:
        if self._held:
            self._pending = True
        elif self._soft and not self.stop.is_set() and self._deferred_since is None:
            self.stop.set()
        else:
            self._raise_where_safe(frame)

    def _raise_where_safe(self, frame: Any) -> None:
        now = time.monotonic()
        where = stopping_place(frame)
        if self._deferred_since is None or where == "importing":
            self._deferred_since = now  # the half second in a library counts from the end of any import
        if where == "ours" or (where == "library" and now - self._deferred_since >= self.MOST_DEFERRED_SECONDS):
            self._cancel_retry()
            self._deferred_since = None
            raise KeyboardInterrupt
        with self._retry_lock:
            if self._retry is None:
                self._retry = threading.Timer(self.RETRY_SECONDS, self._ask_again)
                self._retry.daemon = True
                self._retry.start()

    def _cancel_retry(self) -> None:
        with self._retry_lock:
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None

    def _ask_again(self) -> None:
        with self._retry_lock:
            if self._retry is not threading.current_thread():
                return  # cancelled: the interrupt was raised meanwhile
            self._retry = None
            send = getattr(signal, "pthread_kill", None)  # not on Windows
            if send is not None:
                send(threading.main_thread().ident, signal.SIGINT)
            else:  # raised in the process: Python runs its handler on the main thread all the same
                signal.raise_signal(signal.SIGINT)

    @contextlib.contextmanager
    def soft(self) -> Iterator[threading.Event]:
        self._soft += 1
        try:
            yield self.stop
        finally:
            self._soft -= 1

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            if not self._held and self._pending:
                self._pending = False
                self._deferred_since = None
                self.stop.set()
                raise KeyboardInterrupt

    def reset(self) -> None:
        """A fresh start for the next command run in this process: no stop asked, nothing deferred."""
        self._cancel_retry()
        self._deferred_since = None
        self._pending = False
        self.stop.clear()


def stopping_place(frame: Any) -> str:
    """Where the main thread is when a signal handler runs in ``frame``: ``"importing"`` (a module is
    being imported, whoever's), ``"ours"`` (a line of StoryStudio's own code) or ``"library"``."""
    if frame is None:  # called directly, not by Python's signal machinery
        return "ours"
    innermost = frame
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return "importing"
        frame = frame.f_back
    name = innermost.f_globals.get("__name__") or ""
    return "ours" if name == "storystudio" or name.startswith("storystudio.") else "library"


#: The running command's interrupt handling (main installs it).
interrupts = Interrupts()
