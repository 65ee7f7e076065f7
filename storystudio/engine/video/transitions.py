"""In-between frames for the animatic: from one keyframe (a panel) to the next.

A *transition backend* takes two keyframe pictures (and their prompts) and
returns N frames that lead from the first to the second. Backends:

- ``BlendBackend`` (always available, no model): a cross-dissolve with a
  gentle camera push, eased, so every user gets a working animatic;
- ``storystudio.engine.video.diffusion`` (needs the video models): AnimateDiff
  with SparseCtrl-RGB holding the two keyframes at the first and last frame,
  and per-frame CLIP image embeddings interpolated between the two keyframes
  through an IP-Adapter: a training-free stand-in for the paper's Semantic
  Motion Predictor (STORYDIFFUSION.md section 5).

Nothing here imports Qt.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ..errors import GenerationCancelled

Progress = Callable[[int, int], None]  # frames (or steps) done, total
Cancel = Callable[[], bool]


class TransitionCancelled(GenerationCancelled):
    """The user stopped the transition; nothing is returned."""


@dataclass
class TransitionRequest:
    """Make ``frames`` pictures of ``size`` (width, height) leading from ``start`` to ``end``.

    The first returned frame is the start keyframe's look and the last the
    end's; the animatic shows them between the two panels' holds.
    """

    start: Image.Image
    end: Image.Image
    frames: int
    size: tuple[int, int]
    start_prompt: str = ""
    end_prompt: str = ""
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)  # backend-specific (steps, strength, ...)

    def check(self) -> None:
        if self.frames < 2:
            raise ValueError("A transition needs at least 2 frames.")
        w, h = self.size
        if w < 16 or h < 16:
            raise ValueError(f"A transition of {w}x{h} pixels is too small.")


class TransitionBackend(Protocol):
    """What the animatic asks of every backend."""

    name: str  # shown to the user, e.g. "Blend (no model)"

    def render(self, request: TransitionRequest, progress: Progress | None = None,
               cancel: Cancel | None = None) -> list[Image.Image]: ...


def ease_in_out(t: float) -> float:
    """Smoothstep: slow start, slow end."""
    t = min(max(t, 0.0), 1.0)
    return t * t * (3 - 2 * t)


def cover(image: Image.Image, size: tuple[int, int], zoom: float = 1.0) -> Image.Image:
    """``image`` scaled to fill ``size`` (cropping the overflow, centred), zoomed in by ``zoom`` >= 1."""
    w, h = size
    scale = max(w / image.width, h / image.height) * zoom
    cw, ch = w / scale, h / scale
    x0, y0 = (image.width - cw) / 2, (image.height - ch) / 2
    return image.resize((w, h), Image.Resampling.BICUBIC, box=(x0, y0, x0 + cw, y0 + ch))


class BlendBackend:
    """A cross-dissolve with a slight push-in on the outgoing panel and a settle on the incoming one."""

    name = "Blend (no model)"

    def __init__(self, push: float = 0.06):
        self.push = push

    def render(self, request: TransitionRequest, progress: Progress | None = None,
               cancel: Cancel | None = None) -> list[Image.Image]:
        request.check()
        a = request.start.convert("RGB")
        b = request.end.convert("RGB")
        frames = []
        n = request.frames
        for i in range(n):
            if cancel is not None and cancel():
                raise TransitionCancelled
            t = i / (n - 1)
            mix = ease_in_out(t)
            # the outgoing picture keeps moving in as it fades; the incoming one settles from slightly close
            fa = np.asarray(cover(a, request.size, 1 + self.push * t), dtype=np.float32)
            fb = np.asarray(cover(b, request.size, 1 + self.push * (1 - t)), dtype=np.float32)
            frames.append(Image.fromarray(np.round(fa * (1 - mix) + fb * mix).astype(np.uint8)))
            if progress is not None:
                progress(i + 1, n)
        return frames


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation between two embedding vectors (linear when they are nearly parallel)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return (1 - t) * a + t * b
    cos = float(np.clip(np.dot(a / na, b / nb), -1.0, 1.0))
    omega = math.acos(cos)
    if omega < 1e-4:
        return (1 - t) * a + t * b
    return (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)
