"""The model-free blend backend and the helpers every transition backend shares."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from storystudio.engine.video.transitions import BlendBackend, TransitionCancelled, TransitionRequest, cover, slerp

RED = Image.new("RGB", (64, 48), (220, 20, 20))
BLUE = Image.new("RGB", (48, 64), (20, 20, 220))


def _mean(image):
    return np.asarray(image, dtype=np.float64).reshape(-1, 3).mean(axis=0)


def test_blend_frame_count_ends_and_midpoint():
    seen = []
    frames = BlendBackend().render(TransitionRequest(RED, BLUE, frames=9, size=(40, 30)),
                                   progress=lambda done, total: seen.append((done, total)))
    assert len(frames) == 9 and all(f.size == (40, 30) for f in frames)
    assert seen == [(i, 9) for i in range(1, 10)]
    assert np.allclose(_mean(frames[0]), (220, 20, 20), atol=1)  # the start keyframe
    assert np.allclose(_mean(frames[-1]), (20, 20, 220), atol=1)  # the end keyframe
    assert np.allclose(_mean(frames[4]), (120, 20, 120), atol=1)  # half of each at the midpoint (eased: 0.5)
    reds = [_mean(f)[0] for f in frames]
    assert all(a >= b for a, b in zip(reds, reds[1:]))  # the start fades out steadily


def test_blend_keeps_pictures_and_cancels():
    start = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    frames = BlendBackend(push=0.0).render(TransitionRequest(start, BLUE, frames=3, size=(40, 30)))
    assert np.array_equal(np.asarray(frames[0]), np.asarray(start))  # same size, no push: the picture itself
    calls = []
    with pytest.raises(TransitionCancelled):
        BlendBackend().render(TransitionRequest(RED, BLUE, frames=20, size=(40, 30)),
                              progress=lambda d, t: calls.append(d), cancel=lambda: len(calls) >= 3)
    assert calls == [1, 2, 3]
    with pytest.raises(ValueError, match="at least 2 frames"):
        BlendBackend().render(TransitionRequest(RED, BLUE, frames=1, size=(40, 30)))


def test_cover_fills_and_slerp_interpolates_on_the_sphere():
    assert cover(BLUE, (40, 30)).size == (40, 30)
    a, b = np.array([1.0, 0.0]), np.array([0.0, 2.0])
    assert np.allclose(slerp(a, b, 0), a) and np.allclose(slerp(a, b, 1), b)
    mid = slerp(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.5)
    assert np.allclose(mid, [2**-0.5, 2**-0.5])  # unit vectors stay on the unit circle
    assert np.allclose(slerp(a, 3 * a, 0.5), 2 * a)  # parallel: linear
