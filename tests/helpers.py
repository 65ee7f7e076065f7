"""Pure test helpers (no torch, no Qt): the example story, a small story, flat-colour pictures."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

EXAMPLE = Path(__file__).resolve().parents[1] / "resources" / "examples" / "lighthouse.story.txt"

# A short story for fast tests: Ann has three solo panels, Bo one, one panel shows both, one nobody.
SMALL_STORY = """\
[Ann] a girl with red hair and a green coat
[Bo] a tall man with a grey beard

[Ann] reads a book # Ann loves books.
[Ann] walks in the rain
[Bo] paints a fence
[Ann] eats an apple
[NC] a quiet street at night # Later.
[Ann] and [Bo] laugh together
"""

# ---- comic pages: panels in flat, distinct colours, so rendered pages can be checked pixel by pixel

COLOURS = [(200, 30, 30), (30, 160, 60), (40, 70, 210), (230, 180, 20), (150, 40, 170), (20, 170, 180),
           (240, 110, 30), (90, 90, 90), (160, 120, 80), (10, 110, 110), (190, 60, 120), (70, 150, 230)]


def flat_png(colour: tuple[int, int, int], size: tuple[int, int] = (96, 96)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()
