"""Comic pages as data: page sizes, templates, frames, balloons and auto-layout.

Units are PostScript points (1/72 inch) on every page, print or screen; a
page's origin is the top-left corner of its *trim* box, so the bleed lies at
negative coordinates and past the trim width and height. Raster output turns
points into pixels with the layout's DPI (a webtoon strip uses 72 DPI, one
point per pixel, so its 800 pt are 800 px).

Nothing here draws: ``storystudio.export.page_render`` paints these pages for
the canvas and for every export alike.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import limits

MM = 72 / 25.4
INCH = 72.0

Point = tuple[float, float]


class LayoutError(ValueError):
    """Page data that cannot be used; the message is a plain sentence."""


def _new_id() -> str:
    return uuid.uuid4().hex


# ---------------------------------------------------------------------------
# page sizes


@dataclass(frozen=True)
class PageSize:
    """A trim size with its bleed and safe margin, all in points."""

    id: str
    name: str
    width: float
    height: float  # for a webtoon strip: the height of one strip page when it holds no panel
    bleed: float
    safe: float  # distance of the safe (live) area inside the trim
    dpi: int  # raster resolution for PNG, CBZ and the images inside a PDF
    strip: bool = False  # a vertical strip whose height grows with its panels

    def describe(self) -> str:
        if self.strip:
            return f"{self.name} ({self.width:.0f} px wide)"
        if self.id.startswith(("a", "manga")):
            return f"{self.name} ({self.width / MM:.0f} x {self.height / MM:.0f} mm)"
        return f"{self.name} ({self.width / INCH:g} x {self.height / INCH:g} in)"


PAGE_SIZES: dict[str, PageSize] = {
    s.id: s
    for s in (
        PageSize("us-comic", "US comic book", 6.625 * INCH, 10.25 * INCH, 0.125 * INCH, 0.375 * INCH, 300),
        PageSize("manga-b5", "Manga magazine (JIS B5)", 182 * MM, 257 * MM, 3 * MM, 10 * MM, 300),
        PageSize("manga-a5", "Manga volume (A5)", 148 * MM, 210 * MM, 3 * MM, 8 * MM, 300),
        PageSize("a4", "A4", 210 * MM, 297 * MM, 3 * MM, 10 * MM, 300),
        PageSize("letter", "US Letter", 8.5 * INCH, 11 * INCH, 0.125 * INCH, 0.375 * INCH, 300),
        PageSize("square", "Square (8 x 8 in)", 8 * INCH, 8 * INCH, 0.125 * INCH, 0.375 * INCH, 300),
        PageSize("webtoon", "Webtoon strip", 800.0, 1280.0, 0.0, 40.0, 72, strip=True),
    )
}


# ---------------------------------------------------------------------------
# geometry helpers


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h

    def points(self) -> list[Point]:
        return [(self.x, self.y), (self.right, self.y), (self.right, self.bottom), (self.x, self.bottom)]

    def inset(self, d: float) -> Rect:
        return Rect(self.x + d, self.y + d, self.w - 2 * d, self.h - 2 * d)

    def contains(self, p: Point, slack: float = 1e-6) -> bool:
        return self.x - slack <= p[0] <= self.right + slack and self.y - slack <= p[1] <= self.bottom + slack


def bounding_rect(points: Iterable[Point]) -> Rect:
    pts = list(points)
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    return Rect(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))


def _round_pts(points: Iterable[Point]) -> list[Point]:
    return [(round(x, 3), round(y, 3)) for x, y in points]


# ---------------------------------------------------------------------------
# frames and balloons

FITS = ("cover", "contain")
BALLOON_KINDS = {
    "speech": "Speech balloon (oval)",
    "speech-box": "Speech balloon (rounded box)",
    "thought": "Thought balloon",
    "caption": "Caption box",
    "sfx": "Sound effect",
}
ALIGNMENTS = ("left", "center", "right")
CAPTION = "caption"  # a balloon's ``source`` when it shows its panel's caption
#: What a balloon's ``source`` may say: "caption", "dialogue:N" (N counts from 0), or "" (words of its own).
SOURCE_PATTERN = re.compile(r"caption|dialogue:(0|[1-9][0-9]{0,4})")
TALKING = ("speech", "speech-box", "thought")  # kinds whose words are dialogue
DEFAULT_FONT = "Comic Neue"
SFX_FONT = "Bebas Neue"


@dataclass
class Frame:
    """A panel slot on a page: a polygon (a rectangle unless slanted) holding one panel's picture.

    ``zoom`` (1 = the fit) and ``pan`` (-1..1 on each axis, 0 = centred) choose
    the part of the picture that shows.
    """

    points: list[Point]
    panel: str | None = None  # panel id
    fit: str = "cover"
    zoom: float = 1.0
    pan: Point = (0.0, 0.0)
    id: str = field(default_factory=_new_id)

    @classmethod
    def rect(cls, x: float, y: float, w: float, h: float, **kw: Any) -> Frame:
        return cls(points=_round_pts(Rect(x, y, w, h).points()), **kw)

    @property
    def bounds(self) -> Rect:
        return bounding_rect(self.points)

    @property
    def is_rect(self) -> bool:
        b = self.bounds
        corners = {(round(x, 2), round(y, 2)) for x, y in b.points()}
        return len(self.points) == 4 and {(round(x, 2), round(y, 2)) for x, y in self.points} == corners

    @property
    def aspect(self) -> float:
        """Width over height of the frame's bounds: the shape its picture should be generated at."""
        b = self.bounds
        return b.w / b.h if b.h > 0 else 1.0

    def moved(self, dx: float, dy: float) -> list[Point]:
        return _round_pts((x + dx, y + dy) for x, y in self.points)

    def fitted_to(self, target: Rect) -> list[Point]:
        """The frame's points scaled and moved so that its bounds become ``target``."""
        b = self.bounds
        sx = target.w / b.w if b.w else 1.0
        sy = target.h / b.h if b.h else 1.0
        return _round_pts((target.x + (x - b.x) * sx, target.y + (y - b.y) * sy) for x, y in self.points)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "points": [list(p) for p in self.points], "panel": self.panel, "fit": self.fit,
                "zoom": self.zoom, "pan": list(self.pan)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "a frame") -> Frame:
        points = _points(data.get("points"), where)
        fit = data.get("fit", "cover")
        if fit not in FITS:
            raise LayoutError(f"{where} has an unknown fit {fit!r} (use cover or contain)")
        zoom = _number(data.get("zoom", 1.0), f"the zoom of {where}")
        if zoom < 1.0:
            raise LayoutError(f"the zoom of {where} is {zoom}, but it must be at least 1")
        pan = _points([data.get("pan", [0, 0])], f"the pan of {where}", minimum=1)[0]
        panel = data.get("panel")
        if panel is not None and not isinstance(panel, str):
            raise LayoutError(f"{where} names its panel with something that is not text")
        return cls(points=points, panel=panel, fit=fit, zoom=zoom,
                   pan=(max(-1.0, min(1.0, pan[0])), max(-1.0, min(1.0, pan[1]))), id=_text_id(data, where))


@dataclass
class Balloon:
    """Lettering on a page: a speech or thought balloon, a caption box or sound-effect text.

    ``x, y, w, h`` is the balloon's box on the page; its text is wrapped inside
    the shape. ``tail`` is the point the tail points at (speech and thought
    only). ``size`` None means "the largest size up to the layout's lettering
    size that fits". The order of a page's balloons is their reading order.

    Whose words it shows (see "words" below):

    - ``panel`` and ``source`` both set: the panel's own words, its caption
      (``source`` "caption") or its dialogue line N ("dialogue:N"). ``text``
      is then only a copy, filled in from the panel by :func:`resolve_words`
      and never saved: the panel is the one place those words live.
    - ``panel`` set, no ``source``: lettering of that panel with words of its
      own (a sound effect, say); it moves with the panel.
    - no ``panel``: free lettering, belonging to no panel.
    """

    kind: str
    x: float
    y: float
    w: float
    h: float
    text: str = ""
    tail: Point | None = None
    font: str = ""  # empty: the layout's lettering font (the SFX font for sound effects)
    size: float | None = None
    bold: bool = False
    italic: bool = False
    align: str = "center"
    panel: str | None = None  # the panel whose words these are
    source: str = ""  # "caption" or "dialogue:N" when made from the story's text
    id: str = field(default_factory=_new_id)

    @property
    def rect(self) -> Rect:
        return Rect(self.x, self.y, self.w, self.h)

    @property
    def has_tail(self) -> bool:
        return self.kind in ("speech", "speech-box", "thought") and self.tail is not None

    @property
    def tied(self) -> bool:
        """Whether it shows its panel's words (a caption or a dialogue line) rather than words of its own."""
        return bool(self.panel and self.source)

    @property
    def free(self) -> bool:
        """Whether it belongs to no panel."""
        return not self.panel

    def to_dict(self) -> dict[str, Any]:
        data = {"id": self.id, "kind": self.kind, "x": self.x, "y": self.y, "w": self.w, "h": self.h,
                "text": self.text, "tail": None if self.tail is None else list(self.tail), "font": self.font,
                "size": self.size, "bold": self.bold, "italic": self.italic, "align": self.align,
                "panel": self.panel, "source": self.source}
        if self.tied:
            del data["text"]  # the panel's words: saved once, with the panel
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "a balloon") -> Balloon:
        kind = data.get("kind")
        if kind not in BALLOON_KINDS:
            raise LayoutError(f"{where} has an unknown kind {kind!r}")
        x, y, w, h = (_number(data.get(k), f"the {k} of {where}") for k in ("x", "y", "w", "h"))
        if w <= 0 or h <= 0:
            raise LayoutError(f"{where} has no area (width {w}, height {h})")
        tail = data.get("tail")
        size = data.get("size")
        if size is not None:
            size = _number(size, f"the lettering size of {where}")
            if size <= 0:
                raise LayoutError(f"the lettering size of {where} is {size}, but it must be more than 0")
        align = data.get("align", "center")
        if align not in ALIGNMENTS:
            raise LayoutError(f"{where} has an unknown alignment {align!r}")
        text = data.get("text", "")
        if not isinstance(text, str):
            raise LayoutError(f"the text of {where} is not text")
        panel = data.get("panel")
        if panel is not None and (not isinstance(panel, str) or not panel):
            raise LayoutError(f"{where} names its panel with something that is not an id")
        source = data.get("source") or ""
        if not isinstance(source, str) or (source and not SOURCE_PATTERN.fullmatch(source)):
            raise LayoutError(f'{where} takes its words from {source!r}; use "caption", "dialogue:N" or nothing')
        if source and panel is None:
            raise LayoutError(f"{where} takes its words from a panel's {source.split(':')[0]} but names no panel")
        # a balloon showing its panel's words has no text of its own: resolve_words fills it in
        return cls(kind=kind, x=x, y=y, w=w, h=h, text="" if source else text,
                   tail=None if tail is None else _points([tail], f"the tail of {where}", minimum=1)[0],
                   font=str(data.get("font", "")), size=size, bold=bool(data.get("bold", False)),
                   italic=bool(data.get("italic", False)), align=align, panel=panel,
                   source=source, id=_text_id(data, where))


@dataclass
class Page:
    """One page (or a two-page spread) with its frames in reading order and its balloons."""

    template: str = "custom"
    frames: list[Frame] = field(default_factory=list)
    balloons: list[Balloon] = field(default_factory=list)
    spread: bool = False  # twice the trim width; printed as two pages
    height: float | None = None  # webtoon strips only: the strip's height
    id: str = field(default_factory=_new_id)

    def frame_by_id(self, frame_id: str) -> Frame | None:
        return next((f for f in self.frames if f.id == frame_id), None)

    def balloon_by_id(self, balloon_id: str) -> Balloon | None:
        return next((b for b in self.balloons if b.id == balloon_id), None)

    def panels(self) -> list[str]:
        return [f.panel for f in self.frames if f.panel]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "template": self.template, "spread": self.spread, "height": self.height,
                "frames": [f.to_dict() for f in self.frames], "balloons": [b.to_dict() for b in self.balloons]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "a page") -> Page:
        if not isinstance(data, dict):
            raise LayoutError(f"{where} is not a group of named values")
        frames = data.get("frames", [])
        balloons = data.get("balloons", [])
        if not isinstance(frames, list) or not isinstance(balloons, list):
            raise LayoutError(f"the frames or balloons of {where} are not lists")
        height = data.get("height")
        if height is not None:
            height = _number(height, f"the height of {where}")
            if height <= 0:
                raise LayoutError(f"the height of {where} is {height}, but it must be more than 0")
        return cls(template=str(data.get("template", "custom")),
                   frames=[Frame.from_dict(_dict(f, f"frame {i} of {where}"), f"frame {i} of {where}")
                           for i, f in enumerate(frames, 1)],
                   balloons=[Balloon.from_dict(_dict(b, f"balloon {i} of {where}"), f"balloon {i} of {where}")
                             for i, b in enumerate(balloons, 1)],
                   spread=bool(data.get("spread", False)), height=height, id=_text_id(data, where))


@dataclass
class Layout:
    """All pages of a comic and what they share: size, reading direction, gutters, lettering."""

    size: str = "us-comic"
    direction: str = "ltr"  # "rtl" for manga: frames and pages read right to left
    gutter: float = 0.125 * INCH
    margin: float | None = None  # distance of the frames from the trim; None = the size's safe margin
    dpi: int | None = None  # None = the size's own DPI
    font: str = DEFAULT_FONT
    font_size: float = 9.0  # lettering size in points (comic lettering is usually 7 to 10 pt)
    pages: list[Page] = field(default_factory=list)

    @property
    def page_size(self) -> PageSize:
        return PAGE_SIZES[self.size]

    @property
    def rtl(self) -> bool:
        return self.direction == "rtl"

    @property
    def resolution(self) -> int:
        return self.dpi or self.page_size.dpi

    @property
    def frame_margin(self) -> float:
        return self.page_size.safe if self.margin is None else self.margin

    def page_width(self, page: Page) -> float:
        return self.page_size.width * (2 if page.spread else 1)

    def page_height(self, page: Page) -> float:
        return page.height if (self.page_size.strip and page.height) else self.page_size.height

    def trim_rect(self, page: Page) -> Rect:
        return Rect(0.0, 0.0, self.page_width(page), self.page_height(page))

    def bleed_rect(self, page: Page) -> Rect:
        b = self.page_size.bleed
        return Rect(-b, -b, self.page_width(page) + 2 * b, self.page_height(page) + 2 * b)

    def safe_rect(self, page: Page) -> Rect:
        return self.trim_rect(page).inset(self.page_size.safe)

    def content_rect(self, page: Page) -> Rect:
        """Where a template puts its frames."""
        return self.trim_rect(page).inset(self.frame_margin)

    def page_of_panel(self, panel_id: str) -> tuple[Page, Frame] | None:
        for page in self.pages:
            for frame in page.frames:
                if frame.panel == panel_id:
                    return page, frame
        return None

    def page_by_id(self, page_id: str) -> Page | None:
        return next((p for p in self.pages if p.id == page_id), None)

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "direction": self.direction, "gutter": self.gutter, "margin": self.margin,
                "dpi": self.dpi, "font": self.font, "font_size": self.font_size,
                "pages": [p.to_dict() for p in self.pages]}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Layout:
        """A layout from its JSON form; LayoutError says what is wrong."""
        if not data:
            return cls()
        if not isinstance(data, dict):
            raise LayoutError("the page layout is not a group of named values")
        size = data.get("size", "us-comic")
        if size not in PAGE_SIZES:
            raise LayoutError(f"the page size {size!r} is not one StoryStudio knows")
        direction = data.get("direction", "ltr")
        if direction not in ("ltr", "rtl"):
            raise LayoutError(f"the reading direction {direction!r} is neither ltr nor rtl")
        gutter = _number(data.get("gutter", 9.0), "the gutter")
        margin = data.get("margin")
        margin = None if margin is None else _number(margin, "the page margin")
        dpi = data.get("dpi")
        if dpi is not None and (not isinstance(dpi, int) or isinstance(dpi, bool) or not 36 <= dpi <= 1200):
            raise LayoutError(f"the resolution {dpi!r} is not a whole number of dots per inch from 36 to 1200")
        pages = data.get("pages", [])
        if not isinstance(pages, list):
            raise LayoutError("the pages are not a list")
        if gutter < 0 or (margin is not None and margin < 0):
            raise LayoutError("gutters and margins cannot be negative")
        return cls(size=size, direction=direction, gutter=gutter, margin=margin, dpi=dpi,
                   font=str(data.get("font", DEFAULT_FONT)),
                   font_size=_number(data.get("font_size", 9.0), "the lettering size"),
                   pages=[Page.from_dict(p, f"page {i}") for i, p in enumerate(pages, 1)])

    def copy(self) -> Layout:
        return copy.deepcopy(self)


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LayoutError(f"{where} is not a group of named values")
    return value


def _text_id(data: dict[str, Any], where: str) -> str:
    value = data.get("id") or _new_id()
    if not isinstance(value, str):
        raise LayoutError(f"the id of {where} is not text")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LayoutError(f"{what} is {value!r}, which is not a number")
    return float(value)


def _points(value: Any, where: str, minimum: int = 3) -> list[Point]:
    if not isinstance(value, list) or len(value) < minimum:
        raise LayoutError(f"{where} needs at least {minimum} corner point(s)")
    out = []
    for p in value:
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise LayoutError(f"{where} has a point that is not a pair of numbers")
        out.append((_number(p[0], f"a point of {where}"), _number(p[1], f"a point of {where}")))
    return out


# ---------------------------------------------------------------------------
# templates


@dataclass(frozen=True)
class Template:
    """A page pattern: rows top to bottom, each a height weight and its frames' width weights.

    ``slant`` tilts the borders between rows (in points, rising to the right);
    ``spread`` makes a two-page spread; ``strip`` stacks frames down a webtoon strip.
    """

    id: str
    name: str
    rows: tuple[tuple[float, tuple[float, ...]], ...]
    slant: float = 0.0
    spread: bool = False
    strip: bool = False

    @property
    def capacity(self) -> int:
        return sum(len(cols) for _, cols in self.rows)


def _t(id_: str, name: str, *rows: tuple[float, tuple[float, ...]], **kw: Any) -> Template:
    return Template(id_, name, tuple(rows), **kw)


TEMPLATES: dict[str, Template] = {
    t.id: t
    for t in (
        _t("splash", "Splash page (1)", (1, (1,))),
        _t("tiers-2", "Two tiers (2)", (1, (1,)), (1, (1,))),
        _t("tiers-3", "Three tiers (3)", (1, (1,)), (1, (1,)), (1, (1,))),
        _t("classic-1-1-2", "Classic rows 1-1-2 (4)", (1, (1,)), (1, (1,)), (1, (1, 1))),
        _t("grid-2x2", "Grid 2 x 2 (4)", (1, (1, 1)), (1, (1, 1))),
        _t("opener-1-2-2", "Opener: big panel, then 2-2 (5)", (1.4, (1,)), (1, (1, 1)), (1, (1, 1))),
        _t("rows-2-1-2", "Rows 2-1-2 (5)", (1, (3, 2)), (1, (1,)), (1, (2, 3))),
        _t("grid-2x3", "Six panels, 2 x 3 (6)", (1, (1, 1)), (1, (1, 1)), (1, (1, 1))),
        _t("classic-1-1-2-2", "Classic rows 1-1-2-2 (6)", (1, (1,)), (1, (1,)), (1, (1, 1)), (1, (1, 1))),
        _t("grid-3x3", "Nine panels, 3 x 3 (9)", (1, (1, 1, 1)), (1, (1, 1, 1)), (1, (1, 1, 1))),
        _t("action-slant", "Action: slanted tiers (3)", (1, (1,)), (1, (1,)), (1, (1,)), slant=0.06),
        _t("spread", "Two-page spread (5)", (1.3, (1,)), (1, (1, 1, 1, 1)), spread=True),
        _t("webtoon", "Webtoon strip", (1, (1,)), strip=True),
    )
}

#: What auto-layout picks for a page of N panels (cycled for variety).
AUTO_TEMPLATES: dict[int, tuple[str, ...]] = {
    1: ("splash",),
    2: ("tiers-2",),
    3: ("tiers-3", "action-slant"),
    4: ("classic-1-1-2", "grid-2x2"),
    5: ("opener-1-2-2", "rows-2-1-2"),
    6: ("grid-2x3", "classic-1-1-2-2"),
}
WEBTOON_SPACING = 120.0  # points between panels down a strip (scroll space for a beat)
WEBTOON_PER_PAGE = 6  # panels per strip page: a PDF page stays under 200 inches


def template_frames(layout: Layout, template: Template, page: Page, count: int | None = None) -> list[Frame]:
    """Empty frames for ``template`` on ``page`` in reading order (mirrored for right-to-left)."""
    area = layout.content_rect(page)
    g = layout.gutter
    frames: list[Frame] = []
    if template.strip:
        n = count or 1
        side = area.w
        y = layout.frame_margin
        for _ in range(n):
            frames.append(Frame.rect(area.x, y, side, side))
            y += side + WEBTOON_SPACING
        return frames
    total = sum(weight for weight, _ in template.rows)
    usable_h = area.h - g * (len(template.rows) - 1)
    y = area.y
    n_rows = len(template.rows)
    for r, (weight, cols) in enumerate(template.rows):
        h = usable_h * weight / total
        usable_w = area.w - g * (len(cols) - 1)
        col_total = sum(cols)
        x = area.x
        # a slanted border between this row and the next drops by ``tilt`` from left to right
        tilt_top = 0.0 if r == 0 else template.slant * area.w * (1 if r % 2 else -1)
        tilt_bottom = 0.0 if r == n_rows - 1 else template.slant * area.w * (1 if (r + 1) % 2 else -1)
        for c in cols:
            w = usable_w * c / col_total
            if tilt_top or tilt_bottom:
                def y_at(edge_y: float, tilt: float, px: float) -> float:
                    return edge_y + tilt * ((px - area.x) / area.w - 0.5)
                pts = [(x, y_at(y, tilt_top, x)), (x + w, y_at(y, tilt_top, x + w)),
                       (x + w, y_at(y + h, tilt_bottom, x + w)), (x, y_at(y + h, tilt_bottom, x))]
                frames.append(Frame(points=_round_pts(pts)))
            else:
                frames.append(Frame.rect(x, y, w, h))
            x += w + g
        y += h + g
    if layout.rtl:
        width = layout.page_width(page)
        for f in frames:
            f.points = mirror_points(f.points, width)
    return frames


def mirror_points(points: Iterable[Point], width: float) -> list[Point]:
    """Points mirrored left to right on a page ``width`` wide (how right-to-left pages are cut)."""
    return [(round(width - x, 3), round(y, 3)) for x, y in points]


def strip_height(layout: Layout, count: int) -> float:
    """The height of a webtoon strip page holding ``count`` square panels."""
    side = layout.page_width(Page()) - 2 * layout.frame_margin
    n = max(count, 1)
    return 2 * layout.frame_margin + n * side + (n - 1) * WEBTOON_SPACING


def apply_template(layout: Layout, page: Page, template_id: str) -> list[str]:
    """Re-cut ``page`` with a template, keeping its panels in reading order.

    Returns the panel ids that no longer fit (the template has fewer frames).
    """
    template = TEMPLATES.get(template_id)
    if template is None:
        raise LayoutError(f"there is no page template called {template_id!r}")
    if template.strip != layout.page_size.strip:
        raise LayoutError("the webtoon strip template only fits webtoon pages, and webtoon pages only fit it")
    panels = page.panels()
    old_frames = [f for f in page.frames if f.panel]
    page.spread = template.spread
    if template.strip:
        page.height = strip_height(layout, len(panels))
    frames = template_frames(layout, template, page, count=max(len(panels), 1))
    for frame, old in zip(frames, old_frames):
        frame.panel, frame.fit, frame.zoom, frame.pan = old.panel, old.fit, old.zoom, old.pan
    page.frames = frames
    page.template = template_id
    return panels[len(frames):]


# ---------------------------------------------------------------------------
# auto-layout


def split_counts(n: int, most: int = 6) -> list[int]:
    """Panels per page for ``n`` panels: as even as possible, at most ``most`` a page."""
    if n <= 0:
        return []
    pages = math.ceil(n / most)
    base, extra = divmod(n, pages)
    return [base + (1 if i < extra else 0) for i in range(pages)]


def auto_layout(panels: Sequence[Any], size: str = "us-comic", direction: str = "ltr",
                lettering: bool = True, layout: Layout | None = None, most_per_page: int = 6) -> Layout:
    """Place ``panels`` (objects with ``id``, ``caption`` and ``dialogue``) on pages in reading order.

    Pages hold as even a share of the panels as possible; each page's template
    is chosen by its panel count, alternating between the patterns for that
    count. With ``lettering``, each panel's caption becomes a caption box and
    each line of its dialogue a speech balloon pointing into the frame.
    ``layout`` carries the settings to keep (gutters, fonts); its pages are replaced.
    """
    if size not in PAGE_SIZES:
        raise LayoutError(f"the page size {size!r} is not one StoryStudio knows")
    out = copy.deepcopy(layout) if layout is not None else Layout()
    out.size, out.direction, out.pages = size, direction, []
    panels = list(panels)
    if out.page_size.strip:
        counts = split_counts(len(panels), WEBTOON_PER_PAGE)
    else:
        counts = split_counts(len(panels), max(1, min(most_per_page, 6)))
    used: dict[int, int] = {}
    start = 0
    for count in counts:
        chunk = panels[start:start + count]
        start += count
        if out.page_size.strip:
            template_id = "webtoon"
        else:
            choices = AUTO_TEMPLATES[count]
            template_id = choices[used.get(count, 0) % len(choices)]
            used[count] = used.get(count, 0) + 1
        page = Page(template=template_id)
        template = TEMPLATES[template_id]
        page.spread = template.spread
        if template.strip:
            page.height = strip_height(out, count)
        page.frames = template_frames(out, template, page, count=count)
        for frame, panel in zip(page.frames, chunk):
            frame.panel = panel.id
            if lettering:
                page.balloons.extend(lettering_for(out, frame, panel))
        out.pages.append(page)
    return out


def dialogue_lines(text: str) -> list[str]:
    """A panel's dialogue as the lines its balloons letter: one balloon a line, blank lines left out."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def estimate_text_box(text: str, font_size: float, max_width: float, aspect: float = 2.5) -> tuple[float, float]:
    """A first guess of the width and height a text needs, in a block about ``aspect`` times wider than tall.

    About half an em per character; only a starting size: the page renderer
    measures with the real font and shrinks the text to fit its balloon.
    """
    char_w = 0.5 * font_size
    line_h = 1.15 * font_size
    total = max(len(text), 1) * char_w
    width = min(max_width, max(math.sqrt(total * line_h * aspect), 3 * font_size))
    lines = max(1, math.ceil(total * 1.15 / max(width, 1.0)))  # wrapping wastes some of each line
    if lines == 1:
        width = min(width, total * 1.05)
    return width, lines * line_h


def lettering_for(layout: Layout, frame: Frame, panel: Any) -> list[Balloon]:
    """A caption box and speech balloons for a panel's words, placed inside its frame.

    Captions go to the first corner in reading order (top left, or top right
    for manga); balloons go down the frame, alternating sides, their tails
    pointing towards the middle of the frame.
    """
    b = frame.bounds
    pad = 6.0
    size = layout.font_size
    out: list[Balloon] = []
    y = b.y + pad
    caption = (getattr(panel, "caption", "") or "").strip()
    if caption:
        w, h = estimate_text_box(caption, size, b.w * 0.62, aspect=6.0)
        w, h = w + 2 * 5, h + 2 * 4
        x = b.right - pad - w if layout.rtl else b.x + pad
        out.append(Balloon("caption", round(x, 2), round(y, 2), round(w, 2), round(h, 2), text=caption,
                           panel=panel.id, source=CAPTION, align="left"))
        y += h + pad
    for i, line in enumerate(dialogue_lines(getattr(panel, "dialogue", "") or "")):
        w, h = estimate_text_box(line, size, b.w * 0.42)
        # an oval holds a text block in about its inner 1/sqrt(2), less the renderer's padding
        w, h = w * 1.45 + 10, h * 1.45 + 10
        w = min(w, b.w - 2 * pad)
        right_side = (i % 2 == 1) != layout.rtl
        x = b.right - pad - w if right_side else b.x + pad
        if y + h > b.bottom - pad:
            y = max(b.y + pad, b.bottom - pad - h)
        tail = (round(x + w * (0.35 if right_side else 0.65), 2), round(min(b.bottom - pad, y + h + 0.25 * b.h), 2))
        out.append(Balloon("speech", round(x, 2), round(y, 2), round(w, 2), round(h, 2), text=line, tail=tail,
                           panel=panel.id, source=dialogue_source(i)))
        y += h + pad * 0.5
    return out


def generation_size(aspect: float, pixels: int = 768 * 768, multiple: int = limits.PICTURE_MULTIPLE) -> tuple[int, int]:
    """A width and height with the frame's shape, about ``pixels`` in area, rounded to ``multiple``.

    Extreme shapes are clamped to 1:3 or 3:1 so the model stays in its comfort zone, and neither side
    passes ``limits.MAX_PICTURE_SIDE`` (a wide frame at a large size would otherwise ask for more).
    """
    aspect = max(1 / 3, min(3.0, aspect))
    w = math.sqrt(pixels * aspect)
    h = w / aspect
    shrink = min(1.0, limits.MAX_PICTURE_SIDE / max(w, h))
    w, h = w * shrink, h * shrink
    most = limits.MAX_PICTURE_SIDE // multiple * multiple
    return (min(most, max(multiple, round(w / multiple) * multiple)),
            min(most, max(multiple, round(h / multiple) * multiple)))


def page_pixels(size: str, spread: bool, height: float | None, dpi: float) -> float:
    """The longest side, in pixels and with its bleed, of a page drawn as a picture at ``dpi``."""
    page = PAGE_SIZES[size]
    longest = max(page.width * (2 if spread else 1), height if page.strip and height else page.height)
    return (longest + 2 * page.bleed) / INCH * dpi


def too_large_page(size: str, pages: Iterable[tuple[bool, float | None]], dpi: float) -> tuple[int, float] | None:
    """The first page (number, longest side in pixels) that would be drawn larger than
    ``limits.MAX_RASTER_SIDE`` at ``dpi``; ``pages`` gives each page's (spread, height). None when all fit."""
    for number, (spread, height) in enumerate(pages, 1):
        pixels = page_pixels(size, spread, height, dpi)
        if pixels > limits.MAX_RASTER_SIDE:
            return number, pixels
    return None


def raster_problem(layout: Layout, dpi: float | None = None) -> str | None:
    """What keeps ``layout``'s pages from being drawn at ``dpi`` (its own resolution by default), as a
    sentence without its full stop, naming the resolution that would fit; None when they can be."""
    resolution = dpi or layout.resolution
    found = too_large_page(layout.size, ((p.spread, p.height) for p in layout.pages), resolution)
    if found is None:
        return None
    number, pixels = found
    fits = int(resolution * limits.MAX_RASTER_SIDE / pixels)
    return (f"at {resolution:g} dpi page {number} would be {pixels:,.0f} pixels long, more than the "
            f"{limits.MAX_RASTER_SIDE:,} a page may have; choose {fits} dpi or less")


def reading_order(layout: Layout) -> list[str]:
    """Panel ids in the order a reader meets them, page by page."""
    return [panel for page in layout.pages for panel in page.panels()]


def printed_pages(layout: Layout) -> list[tuple[Page, Rect]]:
    """What a printer gets, in order: each page, or each half of a spread, with its trim rectangle.

    A spread prints as two pages; in a right-to-left book its right half comes first.
    """
    out: list[tuple[Page, Rect]] = []
    w, _ = layout.page_size.width, layout.page_size.height
    for page in layout.pages:
        h = layout.page_height(page)
        if page.spread:
            halves = [Rect(0, 0, w, h), Rect(w, 0, w, h)]
            if layout.rtl:
                halves.reverse()
            out.extend((page, half) for half in halves)
        else:
            out.append((page, Rect(0, 0, layout.page_width(page), h)))
    return out


def remove_panel_everywhere(layout: Layout, panel_id: str) -> None:
    """Take a panel off the pages (it was deleted, or its frame emptied or deleted).

    Its frames empty; the balloons that showed its words go (the words stay
    with the panel); lettering with words of its own stays on the page as
    free lettering, so nothing the user wrote disappears.
    """
    for page in layout.pages:
        for frame in page.frames:
            if frame.panel == panel_id:
                frame.panel = None
        page.balloons = [b for b in page.balloons if not (b.panel == panel_id and b.source)]
        for balloon in page.balloons:
            if balloon.panel == panel_id:
                balloon.panel = None


# ---------------------------------------------------------------------------
# words: a panel's caption and dialogue lines are the words its lettering shows
#
# A balloon that shows a panel's words names them (``source``) instead of
# keeping a copy of its own, so the page, the Panel tab, the animatic and the
# MP4 can never say different things. The functions below change words and
# lettering together; they work on a ``words`` map (panel id -> Words) that
# the caller writes back to its panels, so they stay pure and testable.

DEFAULT_WORDS = {"speech": "Hello!", "speech-box": "Hello!", "thought": "Hmm…", "caption": "Meanwhile…",
                 "sfx": "BOOM!"}
LETTERING_PAD = 6.0  # points between lettering and the edge of its frame


def dialogue_source(index: int) -> str:
    """The ``source`` of a balloon showing dialogue line ``index`` (from 0)."""
    return f"dialogue:{index}"


def source_line(source: str) -> int | None:
    """The dialogue line a ``source`` names; None for the caption or no source."""
    match = SOURCE_PATTERN.fullmatch(source or "")
    return int(match.group(1)) if match and match.group(1) is not None else None


def one_line(text: str) -> str:
    """Words as one line: a caption or a dialogue line holds no line breaks (the balloon wraps them)."""
    return " ".join(text.split())


@dataclass
class Words:
    """A panel's words as its lettering shows them: its caption and its dialogue lines."""

    caption: str = ""
    lines: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, panel: Any) -> Words:
        """The words of anything with ``caption`` and ``dialogue`` text (a project or engine panel)."""
        return cls((getattr(panel, "caption", "") or "").strip(), dialogue_lines(getattr(panel, "dialogue", "") or ""))

    @property
    def dialogue(self) -> str:
        """The dialogue as a panel keeps it: one line per balloon."""
        return "\n".join(self.lines)

    def get(self, source: str) -> str | None:
        """The words a balloon with this ``source`` shows; None when the panel has no such words."""
        if source == CAPTION:
            return self.caption or None
        line = source_line(source)
        return self.lines[line] if line is not None and line < len(self.lines) else None

    def sources(self) -> list[str]:
        """Every piece of the panel's words, caption first, as balloon sources."""
        return ([CAPTION] if self.caption else []) + [dialogue_source(i) for i in range(len(self.lines))]

    def copy(self) -> Words:
        return Words(self.caption, list(self.lines))


def words_of(panels: Iterable[Any]) -> dict[str, Words]:
    """Panel id -> its words."""
    return {panel.id: Words.of(panel) for panel in panels}


def _shows(balloon: Balloon, words: dict[str, Words]) -> bool:
    """Whether the balloon shows the words of a panel that exists."""
    return balloon.tied and balloon.panel in words


def resolve_words(layout: Layout, words: dict[str, Words]) -> None:
    """Fill in the text of every balloon that shows its panel's words (a copy; the panel keeps them).

    A balloon naming words its panel no longer has shows nothing; ``page_check``
    reports it and ``bring_lettering_in_step`` removes it.
    """
    for page in layout.pages:
        for balloon in page.balloons:
            if balloon.tied:
                panel_words = words.get(balloon.panel or "")
                balloon.text = (panel_words.get(balloon.source) if panel_words else None) or ""


def lettered(layout: Layout, panel_id: str) -> set[str]:
    """The sources of a panel's words that some balloon shows."""
    return {b.source for page in layout.pages for b in page.balloons if b.panel == panel_id and b.source}


def unlettered(layout: Layout, panel_id: str, words: Words) -> list[str]:
    """The sources of a panel's words that no balloon shows, in order (caption first)."""
    shown = lettered(layout, panel_id)
    return [source for source in words.sources() if source not in shown]


def _order_key(source: str) -> int:
    line = source_line(source)
    return -1 if line is None else line


def _insert_in_order(page: Page, balloon: Balloon) -> None:
    """Put a balloon showing a panel's words into the page's reading order: after the panel's balloon
    for the words before it (caption, then the lines), else before its first balloon, else last."""
    key = _order_key(balloon.source)
    same = [i for i, b in enumerate(page.balloons) if b.panel == balloon.panel]
    before = [i for i in same if page.balloons[i].source and _order_key(page.balloons[i].source) < key]
    if before:
        page.balloons.insert(before[-1] + 1, balloon)
    elif same:
        page.balloons.insert(same[0], balloon)
    else:
        page.balloons.append(balloon)


def lettering_box(layout: Layout, kind: str, text: str, area: Rect) -> tuple[float, float]:
    """A first width and height for lettering of ``kind`` with ``text`` inside a frame's ``area``."""
    size = layout.font_size
    pad = LETTERING_PAD
    if kind == "caption":
        w, h = estimate_text_box(text, size, area.w * 0.62, aspect=6.0)
        return w + 2 * 5, h + 2 * 4
    if kind == "sfx":
        return max(18.0, min(120.0, area.w - 2 * pad)), max(18.0, min(50.0, area.h - 2 * pad))
    w, h = estimate_text_box(text, size, area.w * 0.42)
    # an oval holds a text block in about its inner 1/sqrt(2), less the renderer's padding
    return min(w * 1.45 + 10, area.w - 2 * pad), h * 1.45 + 10


def _overlaps(a: Rect, b: Rect, gap: float = 2.0) -> bool:
    return a.x < b.right + gap and b.x < a.right + gap and a.y < b.bottom + gap and b.y < a.bottom + gap


def free_spot(page: Page, area: Rect, w: float, h: float, rtl: bool = False) -> tuple[float, float]:
    """Where a ``w`` x ``h`` box fits inside ``area`` without covering other lettering on the page:
    the first free place in reading order (rows from the top; from the right for manga). When
    nothing is free, the area's first corner."""
    pad = LETTERING_PAD
    w, h = min(w, max(area.w - 2 * pad, 1.0)), min(h, max(area.h - 2 * pad, 1.0))
    taken = [b.rect for b in page.balloons]
    step_x, step_y = max(6.0, w / 4), max(6.0, h / 3)
    columns = max(0, math.floor((area.w - 2 * pad - w) / step_x)) + 1
    y = area.y + pad
    while y + h <= area.bottom - pad + 1e-6:
        for c in range(columns):
            x = area.right - pad - w - c * step_x if rtl else area.x + pad + c * step_x
            if not any(_overlaps(Rect(x, y, w, h), other) for other in taken):
                return round(x, 2), round(y, 2)
        y += step_y
    x = area.right - pad - w if rtl else area.x + pad
    return round(x, 2), round(area.y + pad, 2)


def _tail_into(area: Rect, x: float, y: float, w: float, h: float) -> Point:
    """A tail tip inside the frame, below the balloon (above it when the balloon sits low)."""
    pad = LETTERING_PAD
    right_half = x + w / 2 > area.x + area.w / 2
    tx = x + w * (0.35 if right_half else 0.65)
    below = y + h + 0.25 * area.h
    if below <= area.bottom - pad:
        return round(tx, 2), round(below, 2)
    above = y - 0.25 * area.h
    if above >= area.y + pad:
        return round(tx, 2), round(above, 2)
    return round(tx, 2), round(min(area.bottom - pad, y + h + 12), 2)


def lettering_in_frame(layout: Layout, page: Page, area: Rect, kind: str, text: str, panel: str | None = None,
                       source: str = "") -> Balloon:
    """New lettering sized for its words and placed in a free spot inside ``area`` (a frame's bounds,
    or the page's content area for free lettering), its tail pointing into the area."""
    w, h = lettering_box(layout, kind, text, area)
    x, y = free_spot(page, area, w, h, rtl=layout.rtl)
    w, h = min(w, max(area.w - 2 * LETTERING_PAD, 18.0)), min(h, max(area.h - 2 * LETTERING_PAD, 18.0))
    balloon = Balloon(kind, x, y, round(w, 2), round(h, 2), text=text, panel=panel, source=source,
                      align="left" if kind == "caption" else "center")
    if kind in TALKING:
        balloon.tail = _tail_into(area, x, y, w, h)
    return balloon


def follow_words(layout: Layout, panel: Any, old: Words) -> None:
    """Keep a panel's lettering in step after its words changed elsewhere (the Panel tab, a script).

    A balloon keeps showing its line when the line survived (edited, or moved
    up or down by lines added or removed before it); the balloons of removed
    words go; new words get a balloon in the panel's frame, in reading order.
    """
    new = Words.of(panel)
    mapping: dict[int, int] = {}
    matcher = difflib.SequenceMatcher(a=old.lines, b=new.lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("equal", "replace"):  # a replaced line is the same line, edited
            for k in range(min(i2 - i1, j2 - j1)):
                mapping[i1 + k] = j1 + k
    for page in layout.pages:
        kept = []
        for balloon in page.balloons:
            if balloon.panel == panel.id and balloon.source:
                if balloon.source == CAPTION:
                    if not new.caption:
                        continue
                else:
                    line = source_line(balloon.source)
                    if line not in mapping:
                        continue
                    balloon.source = dialogue_source(mapping[line])
            kept.append(balloon)
        page.balloons = kept
    placed = layout.page_of_panel(panel.id)
    if placed is not None:
        page, frame = placed
        for source in unlettered(layout, panel.id, new):
            kind = "caption" if source == CAPTION else "speech"
            balloon = lettering_in_frame(layout, page, frame.bounds, kind, new.get(source) or "", panel.id, source)
            _insert_in_order(page, balloon)
    resolve_words(layout, {panel.id: new})


def bring_lettering_in_step(layout: Layout, words: dict[str, Words]) -> int:
    """Letter every word of the placed panels that no balloon shows, and remove balloons naming words
    their panel no longer has. Returns how many balloons were added or removed."""
    changes = 0
    for page in layout.pages:
        before = len(page.balloons)
        page.balloons = [b for b in page.balloons
                         if not (_shows(b, words) and words[b.panel].get(b.source) is None)]  # type: ignore[index]
        changes += before - len(page.balloons)
    for page in layout.pages:
        for frame in page.frames:
            if frame.panel in words:
                panel_words = words[frame.panel]
                for source in unlettered(layout, frame.panel, panel_words):
                    kind = "caption" if source == CAPTION else "speech"
                    _insert_in_order(page, lettering_in_frame(layout, page, frame.bounds, kind,
                                                              panel_words.get(source) or "", frame.panel, source))
                    changes += 1
    resolve_words(layout, words)
    return changes


def find_balloon(layout: Layout, balloon_id: str) -> tuple[Page, Balloon] | None:
    for page in layout.pages:
        for balloon in page.balloons:
            if balloon.id == balloon_id:
                return page, balloon
    return None


def set_lettering_text(layout: Layout, words: dict[str, Words], balloon_id: str, text: str) -> None:
    """New words for a balloon. A balloon showing its panel's words changes the panel's caption or
    dialogue line (line breaks become spaces: one balloon, one line); emptying it deletes those words."""
    found = find_balloon(layout, balloon_id)
    if found is None:
        return
    _, balloon = found
    if not _shows(balloon, words):
        balloon.text = text
        return
    panel_words = words[balloon.panel]  # type: ignore[index]
    text = one_line(text)
    if not text:
        delete_lettering(layout, words, {balloon_id})
        return
    if balloon.source == CAPTION:
        panel_words.caption = text
    else:
        line = source_line(balloon.source)
        if line is None or line >= len(panel_words.lines):
            panel_words.lines.append(text)
            balloon.source = dialogue_source(len(panel_words.lines) - 1)
        else:
            panel_words.lines[line] = text
    resolve_words(layout, words)


def delete_lettering(layout: Layout, words: dict[str, Words], balloon_ids: set[str]) -> None:
    """Delete balloons. One showing its panel's words takes them along: the caption empties, or the
    dialogue line goes and the panel's later lines move up, each staying in its own balloon."""
    gone: dict[str, set[int]] = {}
    captions: set[str] = set()
    for page in layout.pages:
        for balloon in page.balloons:
            if balloon.id in balloon_ids and _shows(balloon, words):
                if balloon.source == CAPTION:
                    captions.add(balloon.panel)  # type: ignore[arg-type]
                else:
                    gone.setdefault(balloon.panel, set()).add(source_line(balloon.source))  # type: ignore[arg-type]
        page.balloons = [b for b in page.balloons if b.id not in balloon_ids]
    for panel_id in captions:
        words[panel_id].caption = ""
    for panel_id, lines in gone.items():
        panel_words = words[panel_id]
        keep = [i for i in range(len(panel_words.lines)) if i not in lines]
        moved = {old: new for new, old in enumerate(keep)}
        panel_words.lines = [panel_words.lines[i] for i in keep]
        for page in layout.pages:
            kept = []
            for balloon in page.balloons:
                if balloon.panel == panel_id and source_line(balloon.source) is not None:
                    line = source_line(balloon.source)
                    if line not in moved:
                        continue  # a second balloon showing a deleted line
                    balloon.source = dialogue_source(moved[line])
                kept.append(balloon)
            page.balloons = kept
    for page in layout.pages:
        page.balloons = [b for b in page.balloons if not (b.panel in captions and b.source == CAPTION)]
    resolve_words(layout, words)


def add_lettering(layout: Layout, words: dict[str, Words], page: Page, kind: str, frame: Frame | None,
                  text: str = "") -> Balloon:
    """New lettering inside ``frame``, or free lettering (``frame`` None) in a free spot of the page.

    In a frame holding a panel it belongs to that panel and moves with it: a
    speech or thought balloon is a new line of the panel's dialogue; a caption
    box shows the panel's caption (made from its words if it has none yet;
    with words of its own when another box already shows it); a sound effect
    keeps words of its own.
    """
    if kind not in BALLOON_KINDS:
        raise LayoutError(f"there is no kind of lettering called {kind!r}")
    text = one_line(text or DEFAULT_WORDS[kind]) if kind != "sfx" else (text or DEFAULT_WORDS[kind])
    panel_id = frame.panel if frame is not None and frame.panel in words else None
    source = ""
    if panel_id is not None:
        panel_words = words[panel_id]
        if kind in TALKING:
            panel_words.lines.append(text)
            source = dialogue_source(len(panel_words.lines) - 1)
        elif kind == "caption" and CAPTION not in lettered(layout, panel_id):
            if not panel_words.caption:
                panel_words.caption = text
            text, source = panel_words.caption, CAPTION
    area = frame.bounds if frame is not None else layout.content_rect(page)
    balloon = lettering_in_frame(layout, page, area, kind, text, panel_id, source)
    if source:
        _insert_in_order(page, balloon)
    else:
        page.balloons.append(balloon)
    resolve_words(layout, words)
    return balloon


def make_panel_words(layout: Layout, words: dict[str, Words], balloon_id: str) -> str | None:
    """A panel's lettering with words of its own makes them the panel's words: a caption box its
    caption, a speech or thought balloon a dialogue line (the first one no balloon shows, else a new
    last line). Returns the balloon's new source, or None when it belongs to no panel or is a sound effect."""
    found = find_balloon(layout, balloon_id)
    if found is None:
        return None
    page, balloon = found
    if balloon.source or balloon.panel not in words or balloon.kind == "sfx":
        return None
    panel_words = words[balloon.panel]  # type: ignore[index]
    text = one_line(balloon.text)
    if balloon.kind == "caption":
        for other in page.balloons:  # one caption: a box that showed the old one now shows these words too
            if other.panel == balloon.panel and other.source == CAPTION:
                other.source = ""
                other.text = panel_words.caption
        panel_words.caption = text
        balloon.source = CAPTION
    else:
        missing = [s for s in unlettered(layout, balloon.panel, panel_words) if s != CAPTION]  # type: ignore[arg-type]
        if missing:
            panel_words.lines[source_line(missing[0])] = text  # type: ignore[index]
            balloon.source = missing[0]
        else:
            panel_words.lines.append(text)
            balloon.source = dialogue_source(len(panel_words.lines) - 1)
    resolve_words(layout, words)
    return balloon.source


def use_panel_words(layout: Layout, words: dict[str, Words], balloon_id: str) -> str | None:
    """A panel's lettering with words of its own shows the panel's words instead: a caption box its
    caption, a balloon the first dialogue line no balloon shows. Returns the source, or None if there
    are no such words (its own words then stay)."""
    found = find_balloon(layout, balloon_id)
    if found is None:
        return None
    _, balloon = found
    if balloon.source or balloon.panel not in words:
        return None
    missing = unlettered(layout, balloon.panel, words[balloon.panel])  # type: ignore[arg-type]
    wanted = [s for s in missing if (s == CAPTION) == (balloon.kind == "caption")]
    if not wanted:
        return None
    balloon.source = wanted[0]
    resolve_words(layout, words)
    return balloon.source


def set_lettering_panel(layout: Layout, balloon_id: str, panel_id: str | None) -> bool:
    """Make lettering with words of its own belong to a panel (it then moves with it) or to none.

    Balloons showing a panel's words always belong to that panel: False, nothing changes.
    """
    found = find_balloon(layout, balloon_id)
    if found is None or found[1].source:
        return False
    found[1].panel = panel_id
    return True


# ---------------------------------------------------------------------------
# page operations: what the canvas (and the command line) does to pages, as pure functions


def frame_at(page: Page, point: Point) -> Frame | None:
    """The frame under ``point``, else the nearest one (None on a page without frames)."""
    if not page.frames:
        return None
    inside = [f for f in page.frames if f.bounds.contains(point, slack=0.0)]
    if inside:
        return inside[0]

    def distance(frame: Frame) -> float:
        b = frame.bounds
        dx = max(b.x - point[0], 0.0, point[0] - b.right)
        dy = max(b.y - point[1], 0.0, point[1] - b.bottom)
        return math.hypot(dx, dy)
    return min(page.frames, key=distance)


def move_balloon(balloon: Balloon, rect: Rect) -> None:
    """Give the balloon a new box; when the box only moved (same size), the tail moves with it."""
    if balloon.tail is not None and abs(rect.w - balloon.w) < 1e-6 and abs(rect.h - balloon.h) < 1e-6:
        dx, dy = rect.x - balloon.x, rect.y - balloon.y
        balloon.tail = (round(balloon.tail[0] + dx, 2), round(balloon.tail[1] + dy, 2))
    balloon.x, balloon.y, balloon.w, balloon.h = (round(v, 2) for v in (rect.x, rect.y, rect.w, rect.h))


def change_balloon_kind(balloon: Balloon, kind: str) -> None:
    """Another kind of lettering with the same words; a kind with a tail gets one pointing down."""
    if kind not in BALLOON_KINDS:
        raise LayoutError(f"there is no kind of lettering called {kind!r}")
    balloon.kind = kind
    if kind in TALKING and balloon.tail is None:
        balloon.tail = (round(balloon.x + balloon.w / 2, 2), round(balloon.y + balloon.h + 30, 2))


def move_in_reading_order(page: Page, balloon_id: str, step: int) -> None:
    """Move a balloon ``step`` places earlier (negative) or later in the page's reading order."""
    balloons = page.balloons
    i = next((i for i, b in enumerate(balloons) if b.id == balloon_id), None)
    if i is None:
        return
    j = max(0, min(len(balloons) - 1, i + step))
    balloons.insert(j, balloons.pop(i))


def move_lettering(source: Page, target: Page, panel_id: str, old: Frame, new: Frame) -> None:
    """Carry a panel's lettering from its old frame to its new one, keeping its place in the frame."""
    ob, nb = old.bounds, new.bounds
    sx, sy = nb.w / ob.w if ob.w else 1.0, nb.h / ob.h if ob.h else 1.0
    moving = [b for b in source.balloons if b.panel == panel_id]
    if source is not target:
        source.balloons = [b for b in source.balloons if b.panel != panel_id]
        target.balloons.extend(moving)
    for b in moving:
        b.x = round(nb.x + (b.x - ob.x) * sx, 2)
        b.y = round(nb.y + (b.y - ob.y) * sy, 2)
        b.w, b.h = min(b.w, nb.w), min(b.h, nb.h)
        if b.tail:
            b.tail = (round(nb.x + (b.tail[0] - ob.x) * sx, 2), round(nb.y + (b.tail[1] - ob.y) * sy, 2))


def _crop(frame: Frame) -> tuple[str, float, Point]:
    return frame.fit, frame.zoom, frame.pan


def _set_crop(frame: Frame, crop: tuple[str, float, Point]) -> None:
    frame.fit, frame.zoom, frame.pan = crop


def place_panel(layout: Layout, page: Page, frame_id: str, panel: Any) -> None:
    """Put a panel into a frame. A panel already on a page leaves its old frame, which takes this
    frame's panel (a swap); lettering and crop go with their pictures. A panel new to the pages
    gets lettering for its words; a panel it pushes out leaves the pages."""
    target = page.frame_by_id(frame_id)
    if target is None:
        raise LayoutError("that frame is not on the page")
    old = layout.page_of_panel(panel.id)
    displaced = target.panel
    if old is not None:
        old_page, old_frame = old
        if old_frame.id == target.id:
            return
        old_frame.panel = displaced
        move_lettering(old_page, page, panel.id, old_frame, target)
        if displaced:
            move_lettering(page, old_page, displaced, target, old_frame)
        crop = _crop(old_frame)
        _set_crop(old_frame, _crop(target))
        _set_crop(target, crop)
        target.panel = panel.id
        return
    if displaced:
        remove_panel_everywhere(layout, displaced)
    target.panel = panel.id
    _set_crop(target, ("cover", 1.0, (0.0, 0.0)))
    page.balloons.extend(lettering_for(layout, target, panel))
    resolve_words(layout, {panel.id: Words.of(panel)})


def swap_frames(layout: Layout, source_page_id: str, source_frame_id: str, page: Page, frame_id: str,
                panels: Sequence[Any]) -> None:
    """Drag a frame's panel onto another frame: the two panels change places (with their lettering)."""
    source_page = layout.page_by_id(source_page_id)
    frame = source_page.frame_by_id(source_frame_id) if source_page else None
    panel = next((p for p in panels if frame is not None and p.id == frame.panel), None)
    if panel is None or source_frame_id == frame_id:
        return
    place_panel(layout, page, frame_id, panel)


def delete_frames(layout: Layout, page: Page, frame_ids: set[str]) -> None:
    """Delete frames from a page; their panels leave the pages (see remove_panel_everywhere)."""
    for frame in page.frames:
        if frame.id in frame_ids and frame.panel:
            remove_panel_everywhere(layout, frame.panel)
    page.frames = [f for f in page.frames if f.id not in frame_ids]
    page.template = "custom"


def empty_frame(layout: Layout, page: Page, frame_id: str) -> None:
    """Take the panel out of a frame (it leaves the pages; the frame stays)."""
    frame = page.frame_by_id(frame_id)
    if frame is not None and frame.panel:
        remove_panel_everywhere(layout, frame.panel)


def recut_page(layout: Layout, index: int, template_id: str) -> list[str]:
    """Cut page ``index`` again with a template. Its panels keep their order, crop and lettering; those
    that no longer fit go to a new page right after it. Returns their ids."""
    page = layout.pages[index]
    old = {f.panel: copy.deepcopy(f) for f in page.frames if f.panel}
    left_over = apply_template(layout, page, template_id)
    for frame in page.frames:
        if frame.panel in old:
            move_lettering(page, page, frame.panel, old[frame.panel], frame)
    if left_over:
        extra = Page(template="custom")
        layout.pages.insert(index + 1, extra)
        count = len(left_over)
        choice = next((t for t in ("splash", "tiers-2", "tiers-3", "grid-2x2", "rows-2-1-2", "grid-2x3",
                                   "grid-3x3") if TEMPLATES[t].capacity >= count), "grid-3x3")
        if layout.page_size.strip:
            choice = "webtoon"
        apply_template(layout, extra, choice)
        if layout.page_size.strip:
            extra.height = strip_height(layout, count)
            extra.frames = template_frames(layout, TEMPLATES[choice], extra, count=count)
        for frame, panel_id in zip(extra.frames, left_over):
            frame.panel = panel_id
            _set_crop(frame, _crop(old[panel_id]))
            move_lettering(page, extra, panel_id, old[panel_id], frame)
    return left_over


def recut_pages(layout: Layout, gutter: float | None = None, margin: float | None = None) -> None:
    """A new gutter or margin: every page cut from a template is cut again (hand-made pages keep their
    frames); panels keep their crop and their lettering moves with them."""
    if gutter is not None:
        layout.gutter = gutter
    if margin is not None:
        layout.margin = margin
    for page in layout.pages:
        if page.template not in TEMPLATES:
            continue
        old = {f.panel: copy.deepcopy(f) for f in page.frames if f.panel}
        apply_template(layout, page, page.template)
        for frame in page.frames:
            if frame.panel in old:
                move_lettering(page, page, frame.panel, old[frame.panel], frame)


def add_page(layout: Layout, at: int) -> Page:
    """A new page at position ``at``: six empty frames (one on a webtoon strip)."""
    template_id = "webtoon" if layout.page_size.strip else "grid-2x3"
    page = Page(template=template_id)
    if layout.page_size.strip:
        page.height = strip_height(layout, 1)
    page.frames = template_frames(layout, TEMPLATES[template_id], page, count=1)
    layout.pages.insert(at, page)
    return page


def mirror_pages(layout: Layout, direction: str) -> None:
    """Change the reading direction: every frame and balloon is mirrored across its page."""
    if direction not in ("ltr", "rtl"):
        raise LayoutError(f"the reading direction {direction!r} is neither ltr nor rtl")
    if direction == layout.direction:
        return
    layout.direction = direction
    for page in layout.pages:
        width = layout.page_width(page)
        for frame in page.frames:
            frame.points = mirror_points(frame.points, width)
        for b in page.balloons:
            b.x = round(width - b.x - b.w, 2)
            if b.tail:
                b.tail = (round(width - b.tail[0], 2), b.tail[1])


def rescale_pages(layout: Layout, size_id: str) -> None:
    """Another print size: frames and lettering scale with the page (strips change kind: see
    change_page_size)."""
    old, new = layout.page_size, PAGE_SIZES[size_id]
    sx, sy = new.width / old.width, new.height / old.height
    layout.size = size_id
    for page in layout.pages:
        for frame in page.frames:
            frame.points = [(round(x * sx, 3), round(y * sy, 3)) for x, y in frame.points]
        for b in page.balloons:
            b.x, b.y, b.w, b.h = round(b.x * sx, 2), round(b.y * sy, 2), round(b.w * sx, 2), round(b.h * sy, 2)
            if b.tail:
                b.tail = (round(b.tail[0] * sx, 2), round(b.tail[1] * sy, 2))


def change_page_size(layout: Layout, size_id: str, panels: Sequence[Any]) -> None:
    """Change the page size: printed sizes rescale the pages; a change between printed pages and a
    webtoon strip (pages of another kind) lays the placed panels (all, if none is placed) out again."""
    if size_id not in PAGE_SIZES:
        raise LayoutError(f"the page size {size_id!r} is not one StoryStudio knows")
    if size_id == layout.size:
        return
    if layout.page_size.strip != PAGE_SIZES[size_id].strip:
        order = reading_order(layout)
        by_id = {p.id: p for p in panels}
        placed = [by_id[i] for i in order if i in by_id] or list(panels)
        fresh = auto_layout(placed, size=size_id, direction=layout.direction, layout=layout)
        layout.__dict__.update(fresh.__dict__)
        return
    rescale_pages(layout, size_id)


@dataclass
class PageCheck:
    """How the pages stand against the story (numbers are the panels' places in the story, from 1)."""

    moved: list[int] = field(default_factory=list)  # placed panels out of story order
    unplaced: list[int] = field(default_factory=list)  # panels on no page (while others are)
    unlettered: list[int] = field(default_factory=list)  # placed panels with words no balloon shows
    stale_pages: list[int] = field(default_factory=list)  # page numbers (from 1) holding moved panels

    @property
    def follows_story(self) -> bool:
        return not self.moved and not self.unplaced

    def describe(self) -> str:
        """One plain sentence, or "" when the pages follow the story and show all its words."""
        def numbers(items: list[int]) -> str:
            shown = [str(n) for n in items[:6]] + (["…"] if len(items) > 6 else [])
            return (", ".join(shown[:-1]) + " and " + shown[-1]) if len(shown) > 1 else shown[0]
        parts = []
        if self.moved:
            parts.append(f"panel{'s' if len(self.moved) > 1 else ''} {numbers(self.moved)} "
                         f"{'are' if len(self.moved) > 1 else 'is'} no longer in story order")
        if self.unplaced:
            parts.append(f"panel{'s' if len(self.unplaced) > 1 else ''} {numbers(self.unplaced)} "
                         f"{'are' if len(self.unplaced) > 1 else 'is'} on no page")
        if self.unlettered:
            parts.append(f"some words of panel{'s' if len(self.unlettered) > 1 else ''} "
                         f"{numbers(self.unlettered)} have no balloon")
        if not parts:
            return ""
        text = "; ".join(parts)
        return "The pages do not follow the story: " + text + "." if self.moved or self.unplaced else \
            text[0].upper() + text[1:] + "."


def page_check(layout: Layout, panels: Sequence[Any]) -> PageCheck:
    """Whether the pages still follow the story's panel order, hold every panel and letter every word."""
    check = PageCheck()
    if not layout.pages:
        return check
    number = {p.id: i for i, p in enumerate(panels, 1)}
    placed = [pid for pid in reading_order(layout) if pid in number]
    story = [p.id for p in panels if p.id in set(placed)]
    if placed != story:
        matcher = difflib.SequenceMatcher(a=story, b=placed, autojunk=False)
        in_place = {story[i] for block in matcher.get_matching_blocks() for i in range(block.a, block.a + block.size)}
        check.moved = sorted(number[pid] for pid in placed if pid not in in_place)
        moved_ids = set(placed) - in_place
        check.stale_pages = [i for i, page in enumerate(layout.pages, 1) if moved_ids & set(page.panels())]
    if placed:
        check.unplaced = [number[p.id] for p in panels if p.id not in set(placed)]
    words = words_of(panels)
    for pid in placed:
        if unlettered(layout, pid, words[pid]):
            check.unlettered.append(number[pid])
    check.unlettered.sort()
    return check


def reflow(layout: Layout, panels: Sequence[Any]) -> None:
    """Put the panels back in story order, keeping the pages as the user made them.

    Every frame, in reading order, takes the next panel of the story (empty
    frames too); each panel's crop and lettering come along into its new
    frame, and a panel new to the pages gets lettering for its words. Panels
    beyond the last frame go on new pages cut as Lay Out Story would cut them.
    Free lettering stays where it is.
    """
    slots = [(page, frame) for page in layout.pages for frame in page.frames]
    by_id = {p.id: p for p in panels}
    before = {frame.panel: (page, copy.deepcopy(frame)) for page, frame in slots if frame.panel in by_id}
    carried: dict[str, list[Balloon]] = {}
    for page in layout.pages:
        for b in page.balloons:
            if b.panel in before:
                carried.setdefault(b.panel, []).append(b)  # type: ignore[arg-type]
        page.balloons = [b for b in page.balloons if b.panel not in before]
    for page, frame in slots:
        frame.panel = None
    order = list(panels)
    changed_pages: set[str] = set()
    for (page, frame), panel in zip(slots, order):
        frame.panel = panel.id
        if panel.id in before:
            old_page, old_frame = before[panel.id]
            _set_crop(frame, _crop(old_frame))
            holder = Page(balloons=carried.get(panel.id, []))
            move_lettering(holder, holder, panel.id, old_frame, frame)
            page.balloons.extend(holder.balloons)
            if old_page is not page or old_frame.bounds != frame.bounds:
                changed_pages.add(page.id)
        else:
            _set_crop(frame, ("cover", 1.0, (0.0, 0.0)))
            page.balloons.extend(lettering_for(layout, frame, panel))
            changed_pages.add(page.id)
    for page in layout.pages:
        if page.id in changed_pages:
            _sort_balloons(page)
    rest = order[len(slots):]
    if rest:
        more = auto_layout(rest, size=layout.size, direction=layout.direction, layout=layout)
        layout.pages.extend(more.pages)
    resolve_words(layout, words_of(panels))


def _sort_balloons(page: Page) -> None:
    """Reading order by frame: each panel's lettering in its frame's place (keeping its own order);
    free lettering by the frame it sits on."""
    index = {f.panel: i for i, f in enumerate(page.frames) if f.panel}

    def key(item: tuple[int, Balloon]) -> tuple[int, int]:
        n, b = item
        if b.panel in index:
            return index[b.panel], n  # type: ignore[index]
        frame = frame_at(page, (b.x + b.w / 2, b.y + b.h / 2))
        return (page.frames.index(frame) if frame is not None else len(page.frames)), n
    page.balloons = [b for _, b in sorted(enumerate(page.balloons), key=key)]


def _signature(layout: Layout) -> Any:
    """The layout without its ids: two layouts with the same signature look and read the same."""
    def strip(data: Any) -> Any:
        if isinstance(data, dict):
            return {k: strip(v) for k, v in data.items() if k != "id"}
        if isinstance(data, list):
            return [strip(v) for v in data]
        return data
    return strip(layout.to_dict())


def has_hand_edits(layout: Layout, panels: Sequence[Any]) -> bool:
    """Whether the pages differ from what Lay Out Story makes of their panels (moved or resized frames,
    other templates, lettering added, moved or deleted): then laying the story out again would lose work."""
    if not layout.pages:
        return False
    by_id = {p.id: p for p in panels}
    placed = [by_id[i] for i in reading_order(layout) if i in by_id]
    fresh = auto_layout(placed, size=layout.size, direction=layout.direction, layout=layout)
    return _signature(fresh) != _signature(layout)


# ---------------------------------------------------------------------------
# snapping (the canvas moves and resizes frames and balloons with it)


def snap_lines(layout: Layout, page: Page, exclude: str = "") -> tuple[list[float], list[float]]:
    """Vertical and horizontal lines an edge snaps to: trim, margins, other frames'
    edges and the lines one gutter away from them."""
    trim, content = layout.trim_rect(page), layout.content_rect(page)
    xs = [trim.x, trim.right, content.x, content.right]
    ys = [trim.y, trim.bottom, content.y, content.bottom]
    g = layout.gutter
    for frame in page.frames:
        if frame.id == exclude:
            continue
        b = frame.bounds
        xs += [b.x, b.right, b.x - g, b.right + g]
        ys += [b.y, b.bottom, b.y - g, b.bottom + g]
    return xs, ys


def snap(value: float, lines: Sequence[float], tolerance: float) -> float:
    """``value`` moved onto the nearest line within ``tolerance``, else unchanged."""
    best = min(lines, key=lambda line: abs(line - value), default=None)
    return best if best is not None and abs(best - value) <= tolerance else value


def snap_move(rect: Rect, xs: Sequence[float], ys: Sequence[float], tolerance: float) -> Rect:
    """A moved rectangle shifted so its nearest edge sits on a snap line (size unchanged)."""
    def shift(lo: float, hi: float, lines: Sequence[float]) -> float:
        options = [(abs(snap(lo, lines, tolerance) - lo), snap(lo, lines, tolerance) - lo),
                   (abs(snap(hi, lines, tolerance) - hi), snap(hi, lines, tolerance) - hi)]
        moved = [o for o in options if o[1] != 0]
        return min(moved)[1] if moved else 0.0
    return Rect(rect.x + shift(rect.x, rect.right, xs), rect.y + shift(rect.y, rect.bottom, ys), rect.w, rect.h)


def snap_resize(rect: Rect, edges: str, xs: Sequence[float], ys: Sequence[float], tolerance: float,
                minimum: float = 18.0) -> Rect:
    """A resized rectangle whose moving edges (any of "l", "r", "t", "b") snap to lines."""
    left, right, top, bottom = rect.x, rect.right, rect.y, rect.bottom
    if "l" in edges:
        left = min(snap(left, xs, tolerance), right - minimum)
    if "r" in edges:
        right = max(snap(right, xs, tolerance), left + minimum)
    if "t" in edges:
        top = min(snap(top, ys, tolerance), bottom - minimum)
    if "b" in edges:
        bottom = max(snap(bottom, ys, tolerance), top + minimum)
    return Rect(left, top, right - left, bottom - top)
