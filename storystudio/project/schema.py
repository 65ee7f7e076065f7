"""The ``project.json`` of a ``.storystudio`` file, as a declarative schema (pydantic): every field's type,
range and meaning, in one place.

The loader validates each document against :class:`ProjectDocument` before anything is built from it,
so that what it accepts can be drawn, laid out and exported; :func:`problem` turns the first thing
wrong into one plain sentence. docs/FILE-FORMAT.md is written from these classes
(``reference.file_format_markdown``), so the format's description cannot drift from the check.

Adding a field (for example a panel's character regions, a character's photos or poses):

1. Give it a type, a default (older files do not have it, and must still load) and a ``description`` in
   the class of its owner here (``Panel``, ``Character``, ...). Numbers get their range and lists their
   length from ``limits.py`` (a new limit is a new constant there, with a comment saying why: it is
   documented from that comment); a new group of named values is a new ``Part`` subclass.
2. Write and read it in the matching class's ``to_dict``/``from_dict`` (``model.py``, ``layout.py`` or
   ``animatic.py``), with the same default. tests/project/test_schema.py fails while ``to_dict`` writes a
   name this schema does not know (such names would be loaded unchecked).
3. Set it in ``real_project()`` of tests/project_mutants.py, so that the fuzzers damage it too, and add a
   plain-words name for it to ``_NAMES``/``_ITEMS`` below when ``where()`` would not say it well.
4. Run ``python tools/write_reference_docs.py`` (docs/FILE-FORMAT.md and docs/project.schema.json;
   tests/project/test_reference_docs.py fails while they are stale).

A rule that needs several fields (an index into a list, an id that must name a panel) is a
``model_validator`` of the class that holds them all. A change that older files cannot simply default
is a new ``SCHEMA_VERSION`` and a migration in ``fileio.MIGRATIONS`` (tests/project/data keeps an old
file that must still load).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..resources_path import resource
from . import limits
from .animatic import CUT_KINDS, EASINGS, FRAME_RATES, SIZE_PRESETS
from .animatic import FITS as VIDEO_FITS
from .layout import ALIGNMENTS, BALLOON_KINDS, PAGE_SIZES, SOURCE_PATTERN, too_large_page
from .layout import FITS as FRAME_FITS
from .story import DEFAULT_PHOTO_STRENGTH

#: What an image file name in the store may look like: a plain file name, no folders.
IMAGE_NAME = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}\.png"
#: The samplers a project may name (the engine maps each to a diffusers scheduler; a test keeps them equal).
SCHEDULER_IDS = ("ddim", "euler", "euler_a", "dpm++_2m", "unipc")
DEVICES = r"auto|cpu|mps|cuda(:[0-9]{1,2})?"
DTYPES = ("auto", "fp16", "bf16", "fp32", "float16", "bfloat16", "float32")

# ---- building blocks ----------------------------------------------------------------------------------

Text = Annotated[str, Field(max_length=limits.MAX_TEXT_CHARS)]
ShortText = Annotated[str, Field(max_length=200)]
Stamp = Annotated[str, Field(max_length=64, description="a time, ISO 8601")]
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]*\S[^\x00-\x1f]*$",
                          description="a stable identifier (32 hex digits when made by StoryStudio)")]
ImageName = Annotated[str, Field(pattern=f"^{IMAGE_NAME}$", description="a file name in the archive's images/")]
Coordinate = Annotated[float, Field(ge=-limits.MAX_PAGE_POINTS, le=limits.MAX_PAGE_POINTS)]
Point = tuple[Coordinate, Coordinate]
Extent = Annotated[float, Field(gt=0, le=limits.MAX_PAGE_POINTS)]
Unit = Annotated[float, Field(ge=0, le=1)]
Side = Annotated[int, Field(ge=limits.MIN_PICTURE_SIDE, le=limits.MAX_PICTURE_SIDE, multiple_of=limits.PICTURE_MULTIPLE)]
Seed = Annotated[int, Field(ge=0, le=limits.MAX_SEED)]
FilePath = Annotated[str, Field(max_length=4096, pattern=r"^[^\x00]*$")]


class Part(BaseModel):
    """Every part of the document: strict JSON types (no "5" for 5, no true for 1), finite numbers only,
    and names it does not know ignored (a newer file of the same schema number may add some)."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


class ImageVersion(Part):
    """A picture in the image store with the parameters that made it."""

    image: ImageName
    parameters: dict[str, Any] = Field(default_factory=dict, description="free-form generation parameters")
    created: Stamp = ""


# ---- settings, cast and panels --------------------------------------------------------------------------


class Settings(Part):
    """How the project's pictures are generated (the engine's GenerationSettings take these)."""

    model: FilePath = Field("", description="a model id or path; empty until one is chosen")
    style: ShortText | None = Field(None, description="a style of resources/styles.json (case and spaces forgiven)")
    width: Side = Field(768, description="picture width in pixels")
    height: Side = Field(768, description="picture height in pixels")
    steps: Annotated[int, Field(ge=1, le=limits.MAX_STEPS)] = Field(35, description="denoising steps")
    guidance: Annotated[float, Field(ge=0, le=limits.MAX_GUIDANCE)] = Field(5.0, description="classifier-free guidance")
    seed: Seed = Field(0, description="the story seed; each panel's seed derives from it")
    rate: Unit = Field(0.5, description="consistency strength: share of tokens borrowed between images")
    id_length: Annotated[int, Field(ge=1, le=limits.MAX_ID_LENGTH)] = Field(4, description="reference images per character")
    scheduler: Literal[SCHEDULER_IDS] = Field("ddim", description="the sampler")  # type: ignore[valid-type]
    freeu: bool = Field(True, description="FreeU on")
    regions: bool = Field(True, description="characters kept apart in shared panels (one region each); false: "
                                            "every character's looks act on the whole panel")
    negative_prompt: Text = ""
    device: Annotated[str, Field(pattern=f"^({DEVICES})$")] = Field("auto", description="where pictures are drawn")
    dtype: Literal[DTYPES] = Field("auto", description="number precision")  # type: ignore[valid-type]
    control_strength: Annotated[float, Field(ge=0, le=limits.MAX_CONTROL_STRENGTH)] = Field(
        1.0, description="how strongly a panel's pose holds (the ControlNet's conditioning scale)")
    control_start: Unit = Field(0.0, description="the fraction of the steps after which poses act")
    control_end: Unit = Field(1.0, description="the fraction of the steps up to which poses act")

    @model_validator(mode="after")
    def _control_range(self) -> Settings:
        if self.control_start >= self.control_end:
            raise ValueError("let poses act from a start before their end (control_start < control_end)")
        return self

    @field_validator("style")
    @classmethod
    def _known_style(cls, value: str | None) -> str | None:
        if value and _style_key(value) not in style_keys():
            raise ValueError(f"names no style StoryStudio has ({limits.quote(value)})")
        return value


class Character(Part):
    """A member of the cast, with its photo and the reference pictures drawn for it."""

    id: Id
    name: Annotated[str, Field(max_length=limits.MAX_NAME_CHARS)] = Field(
        description="what its [Name] tags say in the prompts")
    description: Text = Field(description="what [Name] stands for in a prompt")
    photo: ImageName | None = Field(None, description="a reference photo the user gave")
    photo_strength: Annotated[float, Field(ge=0, le=limits.MAX_PHOTO_STRENGTH)] = Field(
        DEFAULT_PHOTO_STRENGTH, description="how strongly the photo steers its look (0: not at all)")
    locked: bool = Field(False, description="the user keeps its references as they are")
    references: Annotated[list[ImageVersion], Field(max_length=limits.MAX_VERSIONS)] = Field(
        default_factory=list, description="reference pictures drawn for it")
    chosen_references: Annotated[list[Annotated[int, Field(ge=0)]], Field(max_length=limits.MAX_VERSIONS)] = Field(
        default_factory=list, description="indices into references, in the order picked")

    @model_validator(mode="after")
    def _chosen_exist(self) -> Character:
        for index in self.chosen_references:
            if index >= len(self.references):
                raise ValueError(f"picks reference {index + 1}, but it has {len(self.references)}")
        return self


class Region(Part):
    """Where one character stands in a panel that shows several."""

    character: Annotated[str, Field(max_length=limits.MAX_NAME_CHARS)] = Field(
        description="the character's name; a name the panel does not tag is ignored")
    box: tuple[Unit, Unit, Unit, Unit] = Field(
        description="left, top, right, bottom as fractions of the panel's width and height")

    @model_validator(mode="after")
    def _inside(self) -> Region:
        left, top, right, bottom = self.box
        if not (left < right and top < bottom):
            raise ValueError("has a box whose left side is not before its right or whose top is not above its bottom")
        return self


JointPoint = tuple[Unit, Unit]


class Pose(Part):
    """One character's pose in a panel (a ControlNet OpenPose guide): a skeleton drawn in the pose editor,
    or an imported OpenPose picture."""

    character: Annotated[str, Field(max_length=limits.MAX_NAME_CHARS)] = Field(
        "", description="the character's name as tagged in the panel; empty: a pose of the whole panel")
    skeleton: Annotated[list[JointPoint | None], Field(min_length=18, max_length=18)] | None = Field(
        None, description="OpenPose's 18 body joints in COCO order, each [x, y] in its box (0..1) or null (not "
                          "shown); see docs/ENGINE.md")
    image: ImageName | None = Field(None, description="an imported OpenPose picture (a skeleton on black)")
    box: tuple[Unit, Unit, Unit, Unit] | None = Field(
        None, description="left, top, right, bottom in the panel (0..1); null: the character's region, else its "
                          "column in the order of the tags")

    @model_validator(mode="after")
    def _drawn_or_imported(self) -> Pose:
        if (self.skeleton is None) == (self.image is None):
            raise ValueError("is either drawn (a skeleton) or imported (a picture), not both or neither")
        if self.box is not None and (self.box[2] - self.box[0] < 0.02 or self.box[3] - self.box[1] < 0.02):
            raise ValueError("has a box too small to hold a pose")
        return self


class Panel(Part):
    """One panel: what it shows, its words and its picture versions."""

    id: Id
    prompt: Text = Field(description="what it shows, with [Name] tags for the cast; no [NC]")
    caption: Text = Field("", description="the caption its lettering and the animatic show")
    dialogue: Text = Field("", description="its dialogue, one balloon a line")
    variation: Seed = Field(0, description="seed variation: each new number draws another picture")
    versions: Annotated[list[ImageVersion], Field(max_length=limits.MAX_VERSIONS)] = Field(default_factory=list)
    chosen: Annotated[int, Field(ge=0)] | None = Field(None, description="index into versions")
    duration: Annotated[float, Field(gt=0, le=limits.MAX_HOLD_SECONDS)] | None = Field(
        None, description="seconds in the animatic; null: from the amount of its words")
    size: tuple[Side, Side] | None = Field(None, description="width and height to draw it at (its frame's shape)")
    regions: Annotated[list[Region], Field(max_length=limits.MAX_REGIONS)] | None = Field(
        None, description="each character's box when it shows several (later boxes in front); null: side by "
                          "side in the order of the tags")
    poses: Annotated[list[Pose], Field(max_length=limits.MAX_POSES)] = Field(
        default_factory=list, description="a pose per character (ControlNet OpenPose guides)")

    @model_validator(mode="after")
    def _chosen_exists(self) -> Panel:
        if self.chosen is not None and self.chosen >= len(self.versions):
            raise ValueError(f"picks picture version {self.chosen + 1}, but it has {len(self.versions)}")
        return self


# ---- pages -------------------------------------------------------------------------------------------------


class Frame(Part):
    """A panel slot on a page: a polygon (points in points, from the page's top-left trim corner)."""

    id: Id | None = None
    points: Annotated[list[Point], Field(min_length=3, max_length=limits.MAX_FRAME_POINTS)]
    panel: Id | None = Field(None, description="the panel it shows (a deleted one shows as an empty frame)")
    fit: Literal[FRAME_FITS] = "cover"  # type: ignore[valid-type]
    zoom: Annotated[float, Field(ge=1, le=limits.MAX_ZOOM)] = 1.0
    pan: tuple[Annotated[float, Field(ge=-1, le=1)], Annotated[float, Field(ge=-1, le=1)]] = (0.0, 0.0)


class Balloon(Part):
    """Lettering: a speech or thought balloon, a caption box or sound-effect text."""

    id: Id | None = None
    kind: Literal[tuple(BALLOON_KINDS)]  # type: ignore[valid-type]
    x: Coordinate
    y: Coordinate
    w: Extent
    h: Extent
    text: Text = Field("", description="its own words (none when it shows its panel's: see source)")
    tail: Point | None = None
    font: ShortText = ""
    size: Annotated[float, Field(gt=0, le=limits.MAX_FONT_POINTS)] | None = None
    bold: bool = False
    italic: bool = False
    align: Literal[ALIGNMENTS] = "center"  # type: ignore[valid-type]
    panel: Id | None = Field(None, description="the panel whose lettering it is; null: free lettering")
    source: Annotated[str, Field(pattern=f"^({SOURCE_PATTERN.pattern})?$")] = Field(
        "", description='"caption" or "dialogue:N": it shows that word of its panel')

    @model_validator(mode="after")
    def _source_has_a_panel(self) -> Balloon:
        if self.source and self.panel is None:
            raise ValueError(f"takes its words from a panel's {self.source.split(':')[0]} but names no panel")
        return self


class Page(Part):
    id: Id | None = None
    template: ShortText = "custom"
    frames: Annotated[list[Frame], Field(max_length=limits.MAX_FRAMES_PER_PAGE)] = Field(default_factory=list)
    balloons: Annotated[list[Balloon], Field(max_length=limits.MAX_BALLOONS_PER_PAGE)] = Field(
        default_factory=list, description="in reading order")
    spread: bool = Field(False, description="a two-page spread, printed as two pages")
    height: Extent | None = Field(None, description="webtoon strips only: the strip's height")


class Layout(Part):
    """The comic's pages and what they share."""

    size: Literal[tuple(PAGE_SIZES)] = "us-comic"  # type: ignore[valid-type]
    direction: Literal["ltr", "rtl"] = "ltr"
    gutter: Annotated[float, Field(ge=0, le=limits.MAX_GUTTER_POINTS)] = 9.0
    margin: Annotated[float, Field(ge=0, le=limits.MAX_MARGIN_POINTS)] | None = None
    dpi: Annotated[int, Field(ge=limits.MIN_DPI, le=limits.MAX_DPI)] | None = None
    font: ShortText = "Comic Neue"
    font_size: Annotated[float, Field(gt=0, le=limits.MAX_FONT_POINTS)] = 9.0
    pages: Annotated[list[Page], Field(max_length=limits.MAX_PAGES)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _pages_can_be_drawn(self) -> Layout:
        dpi = self.dpi or PAGE_SIZES[self.size].dpi
        found = too_large_page(self.size, ((page.spread, page.height) for page in self.pages), dpi)
        if found is not None:
            number, pixels = found
            raise ValueError(f"draws page {number} {pixels:,.0f} pixels long at {dpi} dpi, more than the "
                             f"{limits.MAX_RASTER_SIDE:,} pixels a page may have")
        return self


# ---- the animatic -------------------------------------------------------------------------------------------


def _inside_picture(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x, y, w, h = box
    if w <= 0 or h <= 0 or x + w > 1 + 1e-6 or y + h > 1 + 1e-6:  # the message follows "the start of ..."
        raise ValueError(f"is ({x:g}, {y:g}, {w:g}, {h:g}), which does not lie inside the picture")
    return box


Box = Annotated[tuple[Unit, Unit, Unit, Unit], Field(description="x, y, width, height; 0 to 1 of the picture")]


class Camera(Part):
    start: Box = (0.0, 0.0, 1.0, 1.0)
    end: Box = (0.0, 0.0, 1.0, 1.0)
    easing: Literal[EASINGS] = "ease-in-out"  # type: ignore[valid-type]

    @field_validator("start", "end")
    @classmethod
    def _inside(cls, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        return _inside_picture(box)


class Shot(Part):
    """How one panel plays: its camera move and whether its words show."""

    camera: Camera | None = None
    caption: bool = True


class Cut(Part):
    """What happens after a panel: a cut, a crossfade, or a generated transition clip."""

    kind: Literal[tuple(CUT_KINDS)] = "crossfade"  # type: ignore[valid-type]
    duration: Annotated[float, Field(ge=0, le=limits.MAX_TRANSITION_SECONDS)] = 0.5
    clip: Annotated[list[ImageName], Field(max_length=limits.MAX_CLIP_FRAMES)] = Field(
        default_factory=list, description="the generated frames")
    clip_between: tuple[Id, Id] | None = Field(None, description="the panels the clip was made between")
    clip_parameters: dict[str, Any] | None = None


class Animatic(Part):
    fps: Literal[FRAME_RATES] = 24  # type: ignore[valid-type]
    size: Literal[tuple(SIZE_PRESETS)] = "1920x1080"  # type: ignore[valid-type]
    fit: Literal[tuple(VIDEO_FITS)] = "letterbox"  # type: ignore[valid-type]
    audio: FilePath | None = Field(None, description="the user's sound file")
    burn_captions: bool = True
    soft_subtitles: bool = False
    quality: Annotated[int, Field(ge=0, le=51)] = Field(20, description="x264 constant rate factor")
    shots: Annotated[dict[Id, Shot | None], Field(max_length=limits.MAX_PANELS)] = Field(
        default_factory=dict, description="by panel id")
    cuts: Annotated[dict[Id, Cut | None], Field(max_length=limits.MAX_PANELS)] = Field(
        default_factory=dict, description="by the id of the panel before the cut")


# ---- the whole document -------------------------------------------------------------------------------------


class ProjectDocument(Part):
    """``project.json``: the format's name and number, then the project."""

    format: Literal["storystudio-project"] = Field(description="says what the file is")
    schema_: Annotated[int, Field(alias="schema", ge=1)] = Field(
        description="the format's number (older ones are upgraded, newer ones refused)")
    id: Id
    title: Text = ""
    created: Stamp = ""
    modified: Stamp = ""
    settings: Settings = Field(default_factory=Settings)
    characters: Annotated[list[Character], Field(max_length=limits.MAX_CHARACTERS)] = Field(default_factory=list)
    panels: Annotated[list[Panel], Field(max_length=limits.MAX_PANELS)] = Field(default_factory=list)
    layout: Layout = Field(default_factory=Layout)
    animatic: Animatic = Field(default_factory=Animatic)

    @model_validator(mode="after")
    def _ids_are_unique(self) -> ProjectDocument:
        for what, items in (("character", self.characters), ("panel", self.panels)):
            seen: set[str] = set()
            for number, item in enumerate(items, 1):
                if item.id in seen:
                    raise ValueError(f"has two {what}s with the same id ({limits.quote(item.id)}; {what} {number} "
                                     "is the second)")
                seen.add(item.id)
        return self

    def images(self) -> dict[str, str]:
        """Image name -> who uses it first ("panel 2", "Mira's photo")."""
        users: dict[str, str] = {}
        for number, character in enumerate(self.characters, 1):
            who = character.name.strip() or f"character {number}"
            if character.photo is not None:
                users.setdefault(character.photo, f"{who}'s photo")
            for index, version in enumerate(character.references, 1):
                users.setdefault(version.image, f"{who}'s reference {index}")
        for number, panel in enumerate(self.panels, 1):
            for version in panel.versions:
                users.setdefault(version.image, f"panel {number}")
            for pose in panel.poses:
                if pose.image is not None:
                    users.setdefault(pose.image, f"a pose in panel {number}")
        for cut in self.animatic.cuts.values():
            for name in cut.clip if cut else ():
                users.setdefault(name, "a transition clip")
        return users

    def shown_images(self) -> set[str]:
        """The pictures exports and the animatic draw: chosen versions and references, photos, clips."""
        shown = {p.versions[p.chosen].image for p in self.panels if p.chosen is not None}
        for character in self.characters:
            shown.update(character.references[i].image for i in character.chosen_references)
            if character.photo:
                shown.add(character.photo)
        for cut in self.animatic.cuts.values():
            shown.update(cut.clip if cut else ())
        return shown


# ---- catalogs the schema names ------------------------------------------------------------------------------


def _style_key(name: str) -> str:
    return "".join(name.lower().split())


@cache
def style_keys() -> frozenset[str]:
    """The styles of resources/styles.json, as the engine matches them (case and spaces forgiven)."""
    data = json.loads(resource("styles.json").read_text(encoding="utf-8"))
    return frozenset(_style_key(style["name"]) for style in data["styles"])


# ---- plain sentences for what is wrong ------------------------------------------------------------------------

_ITEMS = {"characters": "character", "panels": "panel", "pages": "page", "frames": "frame", "balloons": "balloon",
          "versions": "version", "references": "reference", "points": "point", "chosen_references": "choice",
          "clip": "clip frame", "regions": "character box", "poses": "pose",
          "skeleton": "joint"}
_KEYED = {"shots": "the shot of panel", "cuts": "the transition after panel"}
_NAMES = {"schema_": "format number", "schema": "format number", "chosen": "chosen version", "id_length": "number of reference images", "w": "width", "h": "height",
          "x": "left edge", "y": "top edge", "dpi": "resolution", "fps": "frame rate", "clip_between": "clip's panels"}


_CONTAINERS = {"settings": "the settings", "layout": "the page layout", "animatic": "the animatic",
               "camera": "the camera move"}


def where(loc: tuple[Any, ...]) -> str:
    """A location in the document, in words: ("panels", 2, "versions", 0, "image") -> "the image of version 1
    of panel 3"."""
    owners: list[str] = []
    field = ""
    parts = list(loc)
    if len(parts) >= 3 and parts[-3] in ("points", "skeleton") and isinstance(parts[-1], int):
        parts = parts[:-1]  # "point 3 of frame 1", not its x or y
    i = 0
    while i < len(parts):
        part = parts[i]
        last = i == len(parts) - 1
        if part in _ITEMS and not last and isinstance(parts[i + 1], int):
            owners.insert(0, f"{_ITEMS[part]} {parts[i + 1] + 1}")
            i += 2
            continue
        if part in _KEYED and not last:
            owners.insert(0, f"{_KEYED[part]} {limits.quote(str(parts[i + 1]), 12)}")
            i += 2
            continue
        if part in _CONTAINERS and (part in ("settings", "camera") or i + 1 >= len(parts) - 1):
            owners.insert(0, _CONTAINERS[part])  # "the gutter of the page layout", but "frame 1 of page 2"
        elif last:
            field = f"item {part + 1}" if isinstance(part, int) else _NAMES.get(part, str(part).replace("_", " "))
        i += 1
    place = " of ".join(owners) if owners else "the project"
    return f"the {field} of {place}" if field else place


#: What a field of a fixed form should look like, for the message when it does not.
_FORMS = {"image": "should be a plain picture file name (like img-1.png)", "photo": "should be a plain picture "
          "file name (like img-1.png)", "id": "is not an id", "panel": "is not a panel's id",
          "source": 'should be "caption", "dialogue:N" or nothing', "device": "should be auto, cpu, mps or cuda"}
#: Pairs and boxes: a mistake inside one is told for the whole.
_PAIRS = {"size": "should be a width and a height in whole pixels", "pan": "should be two numbers",
          "tail": "should be a point (two numbers)", "start": "should be four numbers (x, y, width, height)",
          "end": "should be four numbers (x, y, width, height)", "clip_between": "should be two panel ids",
          "box": "should be four numbers from 0 to 1 (left, top, right, bottom)"}


def _expected(error: dict[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    words = {
        "string_type": "should be text", "int_type": "should be a whole number", "int_from_float":
        "should be a whole number", "float_type": "should be a number", "bool_type": "should be true or false",
        "list_type": "should be a list", "tuple_type": "should be a list", "dict_type": "should be a group of named "
        "values", "model_type": "should be a group of named values", "model_attributes_type": "should be a group "
        "of named values", "finite_number": "should be a finite number", "missing": "is missing", "none_required":
        "should be empty", "string_pattern_mismatch": "is not of the right form",
    }
    if kind in words:
        return words[kind]
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than", "multiple_of"):
        bound = next(iter(ctx.values()))
        phrase = {"greater_than_equal": "at least", "greater_than": "more than", "less_than_equal": "at most",
                  "less_than": "less than", "multiple_of": "a multiple of"}[kind]
        return f"must be {phrase} {bound:,}" if isinstance(bound, int) else f"must be {phrase} {bound:g}"
    if kind == "string_too_long":
        return f"is longer than the {ctx.get('max_length', 0):,} characters it may have"
    if kind == "string_too_short":
        return "is empty"
    if kind == "too_long":
        return f"has more than the {ctx.get('max_length', 0):,} items it may have"
    if kind == "too_short":
        return f"has fewer than the {ctx.get('min_length', 0)} items it needs"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}"
    if kind == "value_error":
        return str(ctx.get("error", error.get("msg", ""))).removeprefix("Value error, ")
    return "is not valid"


def problem(exc: ValidationError) -> str:
    """The first thing wrong with a document, as a phrase: 'the caption of panel 3 should be text, not 12'."""
    error = exc.errors(include_url=False)[0]
    loc = tuple(p for p in error["loc"] if p not in ("tuple", "list", "dict", "function-after"))
    expected = _expected(error)
    shape = error["type"] in ("int_type", "float_type", "string_type", "too_long", "too_short", "tuple_type",
                              "list_type")
    pair = next((loc[:k + 1] for k in range(len(loc) - 1, -1, -1) if loc[k] in _PAIRS), None)
    if pair is not None and len(pair) < len(loc) and error["type"] == "missing":
        shape = True  # a pair with an item too few
    if pair is not None and (shape or len(pair) == len(loc)):
        if shape:
            value = error.get("input")
            return f"{where(pair)} {_PAIRS[pair[-1]]}" + (
                "" if isinstance(value, (list, dict)) or len(pair) < len(loc) else f", not {limits.quote(value)}")
    if error["type"] == "string_pattern_mismatch" and loc and loc[-1] in _FORMS:
        return f"{where(loc)} {_FORMS[loc[-1]]}, not {limits.quote(error.get('input'))}"
    if pair is not None and len(pair) < len(loc):
        loc = pair  # "the size of panel 2 must be at least 64": name the pair, not its item
    if error["type"] == "value_error":  # our own rules: a predicate for the place they concern
        return f"{where(loc)} {expected}"
    if error["type"] == "missing" and loc:
        field = where(loc[-1:]).removeprefix("the ").removesuffix(" of the project")
        return f"{where(loc[:-1])} has no {field}"
    value = error.get("input")
    quiet = error["type"] in ("missing", "string_too_short") or isinstance(value, (dict, list))
    shown = "" if quiet else f", not {limits.quote(value)}"
    return f"{where(loc)} {expected}{shown}"


def validated(doc: Any) -> ProjectDocument:
    """The document checked against the schema; ValidationError when it does not fit."""
    return ProjectDocument.model_validate_json(json.dumps(doc, allow_nan=False))
