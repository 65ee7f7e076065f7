"""Pictures decoded for exports without Qt's image readers (export.page_render.decode_picture).

Exports run on worker threads; QImage.fromData there held the GIL while waiting for a Qt lock the GUI
thread held while waiting for the GIL, and a test run froze. The pictures must come out exactly as
Qt's own reader gives them, so nothing an export draws changes.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from PySide6.QtGui import QImage

from storystudio.export.page_render import decode_picture, ensure_gui_app


def _encoded(mode: str, fmt: str = "PNG", **save) -> bytes:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (23, 31, 4), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGBA").convert(mode) if mode != "P" else \
        Image.fromarray(pixels[..., :3], "RGB").quantize(17)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def _pixels(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_ARGB32)
    return np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.width(), 4).copy()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P"])
def test_png_pixels_are_those_of_qts_reader(mode):
    """Grey and palette pictures come out as 32-bit ones (Qt's reader keeps them 8-bit): same pixels."""
    ensure_gui_app()
    data = _encoded(mode)
    ours, qts = decode_picture(data), QImage.fromData(data)
    expected = QImage.Format.Format_ARGB32 if "A" in mode else QImage.Format.Format_RGB32
    assert not ours.isNull() and ours.format() == expected
    if mode in ("RGB", "RGBA"):
        assert qts.format() == expected
    assert (ours.width(), ours.height()) == (31, 23)
    assert np.array_equal(_pixels(ours), _pixels(qts))


def test_a_palette_picture_with_a_transparent_colour_keeps_it():
    ensure_gui_app()
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 250, 20, 20] + [0] * 762)
    image.paste(0, (0, 0, 4, 8))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=0)
    ours, qts = decode_picture(buffer.getvalue()), QImage.fromData(buffer.getvalue())
    assert ours.hasAlphaChannel() and qts.hasAlphaChannel()
    assert np.array_equal(_pixels(ours), _pixels(qts))


def test_jpeg_is_decoded_close_to_qts_reader():
    ensure_gui_app()
    data = _encoded("RGB", "JPEG", quality=90)
    ours, qts = decode_picture(data), QImage.fromData(data)
    assert ours.format() == QImage.Format.Format_RGB32
    assert np.abs(_pixels(ours).astype(int) - _pixels(qts).astype(int)).max() <= 3


@pytest.mark.parametrize("data", [None, b"", b"not a picture", _encoded("RGB")[:40]], ids=["none", "empty",
                                                                                           "text", "cut short"])
def test_what_is_not_a_picture_gives_a_null_image(data):
    assert decode_picture(data).isNull()
