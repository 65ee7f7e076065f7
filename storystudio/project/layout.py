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
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

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

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "x": self.x, "y": self.y, "w": self.w, "h": self.h,
                "text": self.text, "tail": None if self.tail is None else list(self.tail), "font": self.font,
                "size": self.size, "bold": self.bold, "italic": self.italic, "align": self.align,
                "panel": self.panel, "source": self.source}

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
        return cls(kind=kind, x=x, y=y, w=w, h=h, text=text,
                   tail=None if tail is None else _points([tail], f"the tail of {where}", minimum=1)[0],
                   font=str(data.get("font", "")), size=size, bold=bool(data.get("bold", False)),
                   italic=bool(data.get("italic", False)), align=align, panel=data.get("panel"),
                   source=str(data.get("source", "")), id=_text_id(data, where))


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
            f.points = _round_pts((width - x, y) for x, y in f.points)
    return frames


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


def _dialogue_lines(text: str) -> list[str]:
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
                           panel=panel.id, source="caption", align="left"))
        y += h + pad
    for i, line in enumerate(_dialogue_lines(getattr(panel, "dialogue", "") or "")):
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
                           panel=panel.id, source=f"dialogue:{i}"))
        y += h + pad * 0.5
    return out


def generation_size(aspect: float, pixels: int = 768 * 768, multiple: int = 64) -> tuple[int, int]:
    """A width and height with the frame's shape, about ``pixels`` in area, rounded to ``multiple``.

    Extreme shapes are clamped to 1:3 or 3:1 so the model stays in its comfort zone.
    """
    aspect = max(1 / 3, min(3.0, aspect))
    w = math.sqrt(pixels * aspect)
    h = w / aspect
    return (max(multiple, round(w / multiple) * multiple), max(multiple, round(h / multiple) * multiple))


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
    """Empty the frames and drop the generated lettering of a deleted panel."""
    for page in layout.pages:
        for frame in page.frames:
            if frame.panel == panel_id:
                frame.panel = None
        page.balloons = [b for b in page.balloons if not (b.panel == panel_id and b.source)]


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
