"""Where each character stands in a panel that shows several: one box per character (pure data).

A box is ``(left, top, right, bottom)`` in fractions of the panel's width and
height (0..1), so it keeps its place when the panel's size or shape changes.
Where boxes overlap, the later one in the list is in front (it is drawn on
top in the panel view and owns the overlap when the picture is drawn).

A panel that shows two or more characters and has no boxes of its own gets
:func:`default_regions`: side by side in the order of the tags, the first
tagged character on the left.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: The smallest side a box may have, as a fraction of the panel (about one latent token of a 1024 panel).
MIN_SIDE = 0.02

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Region:
    """The part of a panel where one character is drawn."""

    character: str
    box: Box  # (left, top, right, bottom), fractions of the panel's width and height

    def to_dict(self) -> dict:
        return {"character": self.character, "box": [round(v, 6) for v in self.box]}

    @classmethod
    def from_dict(cls, data: dict) -> Region:
        return cls(str(data["character"]), clamp_box(tuple(float(v) for v in data["box"])))

    def moved(self, dx: float, dy: float) -> Region:
        """The same box moved by (dx, dy), kept inside the panel."""
        left, top, right, bottom = self.box
        w, h = right - left, bottom - top
        left = min(max(left + dx, 0.0), 1.0 - w)
        top = min(max(top + dy, 0.0), 1.0 - h)
        return Region(self.character, (left, top, left + w, top + h))

    def with_box(self, box: Sequence[float]) -> Region:
        return Region(self.character, clamp_box(box))


def box_problem(box: Sequence[float]) -> str | None:
    """What is wrong with a box in plain words, or None."""
    if len(box) != 4:
        return "a box needs four numbers (left, top, right, bottom)"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box):
        return "a box's sides must be numbers"
    left, top, right, bottom = box
    if not (0.0 <= left < right <= 1.0 and 0.0 <= top < bottom <= 1.0):
        return "a box must lie inside the panel, with its left side before its right and its top above its bottom"
    return None


def clamp_box(box: Sequence[float]) -> Box:
    """``box`` (two corners, in any order) inside the panel and at least :data:`MIN_SIDE` on each side."""
    if len(box) != 4 or not all(math.isfinite(float(v)) for v in box):
        raise ValueError("a box needs four finite numbers (left, top, right, bottom)")
    x0, y0, x1, y1 = (float(v) for v in box)
    left, right = sorted((min(max(x0, 0.0), 1.0), min(max(x1, 0.0), 1.0)))
    top, bottom = sorted((min(max(y0, 0.0), 1.0), min(max(y1, 0.0), 1.0)))
    if right - left < MIN_SIDE:
        left = min(left, 1.0 - MIN_SIDE)
        right = left + MIN_SIDE
    if bottom - top < MIN_SIDE:
        top = min(top, 1.0 - MIN_SIDE)
        bottom = top + MIN_SIDE
    return (left, top, right, bottom)


def default_regions(names: Sequence[str]) -> list[Region]:
    """Side by side, full height, in tag order (the first on the left); none for fewer than two characters."""
    if len(names) < 2:
        return []
    n = len(names)
    return [Region(name, (i / n, 0.0, (i + 1) / n, 1.0)) for i, name in enumerate(names)]


def panel_regions(names: Sequence[str], stored: Iterable[Region] | None) -> list[Region]:
    """The regions a panel showing ``names`` is drawn with: its own boxes for those characters (in their
    stored order, the front one last), with the default place for any character that has none; none
    for a panel of fewer than two characters."""
    if len(names) < 2:
        return []
    own = [r for r in (stored or ()) if r.character in names]
    placed = {r.character for r in own}
    seen: set[str] = set()
    kept = []
    for region in own:  # one box per character: the last one given wins
        if region.character in seen:
            kept = [r for r in kept if r.character != region.character]
        seen.add(region.character)
        kept.append(region)
    defaults = [r for r in default_regions(list(names)) if r.character not in placed]
    return defaults + kept
