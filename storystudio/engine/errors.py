"""What can go wrong in the engine, as types the app and the command line tell apart.

Every error the engine raises on purpose is an :class:`EngineError` whose
``kind`` says what the user can do about it; its message is one plain
sentence. :func:`error_kind` sorts any other exception (torch running out of
memory, a bug) the same way, so no caller matches message text or class names.
Torch-free: the GUI thread imports it.
"""

from __future__ import annotations

import sys
from enum import Enum


class ErrorKind(Enum):
    MISSING_MODEL = "missing-model"  # a model, or a part of one, is not on this computer or cannot be used
    OUT_OF_MEMORY = "out-of-memory"  # the GPU (or the host) ran out of memory: a lower-memory setting may help
    USER_MISTAKE = "user-mistake"  # something the user gave (settings, story, file) cannot be drawn as it is
    CANCELLED = "cancelled"  # the user stopped the work
    INTERNAL = "internal"  # a bug or an unexpected failure: the message says what happened


class EngineError(Exception):
    """Base of the engine's own errors; ``kind`` tells the caller what it means."""

    kind = ErrorKind.INTERNAL


class ModelError(EngineError, RuntimeError):
    """A model cannot be found or used; the message says why in plain words."""

    kind = ErrorKind.MISSING_MODEL


class InputError(EngineError, ValueError):
    """Settings or a story the engine cannot draw as they are (a user's mistake, said in plain words)."""

    kind = ErrorKind.USER_MISTAKE


class OutOfMemoryError(EngineError, MemoryError):
    """The GPU ran out of memory while drawing."""

    kind = ErrorKind.OUT_OF_MEMORY


class GenerationCancelled(EngineError):
    """The user stopped generation; pictures finished before that are kept."""

    kind = ErrorKind.CANCELLED


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's (or the engine's) out-of-memory error, without importing torch."""
    if isinstance(exc, (OutOfMemoryError, MemoryError)):
        return True
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    return oom is not None and isinstance(exc, oom)


def error_kind(exc: BaseException) -> ErrorKind:
    """The kind of any exception that reached the caller of the engine."""
    if isinstance(exc, EngineError):
        return exc.kind
    if is_out_of_memory(exc):
        return ErrorKind.OUT_OF_MEMORY
    return ErrorKind.INTERNAL
