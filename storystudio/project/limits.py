"""Every limit StoryStudio puts on what it is given, each one constant in this one place.

They are checked before any work starts (a model load, a render, an export),
by the script reader, the project loader, the generation settings and the
command line, so that bad or hostile input gets one plain sentence instead of
exhausting the machine. docs/LIMITS.md lists them with their reasons; a test
checks that it names every one.

No Qt, no torch: the GUI thread, the loader and the command line import this.
"""

from __future__ import annotations

import math

# ---- pictures the engine draws -------------------------------------------------------------------

#: The smallest side of a generated picture, in pixels (the VAE and UNet need a few latent pixels).
MIN_PICTURE_SIDE = 64

#: The side each model family was trained at. Far above it a model repeats its subject (two heads,
#: tiled scenes) and the memory of attention grows with the square of the number of pixels.
NATIVE_SIDE = {"sd15": 512, "sd2": 768, "sdxl": 1024}

#: How far above its training size a family may draw: twice on each side (four times the pixels).
MAX_SIDE_FACTOR = 2

#: The largest side of a generated picture when the model family is not known yet (SDXL's limit).
MAX_PICTURE_SIDE = MAX_SIDE_FACTOR * max(NATIVE_SIDE.values())

#: A panel's own size (and the project's picture size) is a multiple of this: what every family's UNet
#: can draw (SD1.5 and SD2.x need 64, SDXL 32); the app's size boxes step by it.
PICTURE_MULTIPLE = 64

#: Denoising steps. Past about 150 the picture no longer changes, only the time grows (and the
#: schedulers cannot take more than the 1000 steps the models were trained with).
MAX_STEPS = 150

#: Classifier-free guidance. Above about 30 every model draws burnt, saturated noise.
MAX_GUIDANCE = 30.0

#: A story seed (and a panel's variation number): the app's seed box holds numbers up to 2^31 - 1.
MAX_SEED = 2**31 - 1

#: Reference images per character: they are drawn together, so memory grows with their number.
MAX_ID_LENGTH = 8

#: Pictures denoised together in one call (0 chooses from the free GPU memory).
MAX_BATCH_SIZE = 16

#: How strongly a character's reference photo steers its look. IP-Adapter face models copy the photo
#: ever more literally up to about 1; past 2 the text no longer changes anything but noise.
MAX_PHOTO_STRENGTH = 2.0

#: Character boxes on one panel: one per character it shows; each one is one more attention call per
#: layer when the panel is drawn.
MAX_REGIONS = 8

# ---- a story ---------------------------------------------------------------------------------------

#: Panels in one story or project: render names them panel-001 ... panel-999, about 170 pages.
MAX_PANELS = 999

#: Characters in one cast: each one that appears keeps a bank of its references in memory while the
#: story is drawn (several GiB at full size, see PERFORMANCE.md).
MAX_CHARACTERS = 50

#: A character's name, in characters (it is typed as a [Name] tag in every panel).
MAX_NAME_CHARS = 100

#: One line of a story script, and one prompt: the text encoder reads 77 tokens (about 300
#: characters), so this leaves room for the caption while keeping a damaged file from stalling the reader.
MAX_LINE_CHARS = 2000

#: Any other text (a title, a description, a caption, dialogue, a negative prompt, lettering).
MAX_TEXT_CHARS = 10_000

#: A story script file: 999 panels of 1000 characters each.
MAX_SCRIPT_BYTES = 1_000_000

#: Problems listed for one script; the rest are counted ("... and 12 more").
MAX_SCRIPT_PROBLEMS = 20

# ---- messages ----------------------------------------------------------------------------------------

#: The longest excerpt of a bad value that a message quotes (a 100 KB value is never repeated back).
MAX_QUOTE_CHARS = 40

# ---- project files -------------------------------------------------------------------------------------

#: Zip-bomb guards: the most one archive member, and all of them together, may unpack to.
MAX_MEMBER_BYTES = 200 * 1024**2
MAX_TOTAL_BYTES = 4 * 1024**3

#: project.json itself (a project of 999 panels with long texts is a few MB).
MAX_DOCUMENT_BYTES = 32 * 1024**2

#: How deeply project.json may nest lists and groups (the format needs 6 levels; a picture's
#: free-form generation parameters a few more).
MAX_JSON_DEPTH = 32

#: The longest side of a picture stored in a project. StoryStudio draws at most 2048; 4096 leaves room
#: for pictures made elsewhere, and a decoded picture stays under 64 MB (Qt refuses pictures over 256 MB).
MAX_IMAGE_SIDE = 4096

#: Picture versions of one panel, and reference pictures of one character: each is a picture in the file.
MAX_VERSIONS = 1000

#: Poses of one panel: one per character of the largest cast, and one for the whole panel.
MAX_POSES = MAX_CHARACTERS + 1

#: How strongly a pose (a ControlNet guide) may hold: the range A1111 and ComfyUI offer; past 2 the
#: ControlNet's residuals swamp the picture.
MAX_CONTROL_STRENGTH = 2.0

#: Pages, frames on one page, lettering on one page, and corners of one frame.
MAX_PAGES = 999
MAX_FRAMES_PER_PAGE = 64
MAX_BALLOONS_PER_PAGE = 200
MAX_FRAME_POINTS = 32

#: How far from a page's corner anything on it may lie, in points: 200 inches, the largest page PDF
#: readers open (a webtoon strip page of six panels is about 70 inches tall).
MAX_PAGE_POINTS = 14_400.0

#: How far a frame may zoom into its picture (the Pages tab stops at 8).
MAX_ZOOM = 8.0

#: Gutters between frames and the margin of the frames from the trim, in points (the Pages tab's limits:
#: the frames of a template keep a positive size on every page size).
MAX_GUTTER_POINTS = 72.0
MAX_MARGIN_POINTS = 144.0

#: Lettering size in points (comic lettering is 7 to 10 pt; a sound effect may be huge).
MAX_FONT_POINTS = 288.0

#: Page raster resolution (PNG and CBZ pages, pictures inside a PDF).
MIN_DPI = 36
MAX_DPI = 1200

#: The longest side, in pixels, of a page drawn as a picture (Qt cannot paint much larger ones): a
#: resolution that would pass it for the tallest page is refused, naming the resolution that fits.
MAX_RASTER_SIDE = 32_000

# ---- the animatic ------------------------------------------------------------------------------------------

#: A panel's hold, in seconds: shorter ones flash by unread.
MIN_HOLD_SECONDS = 0.5
#: The longest hold of one panel, and the longest transition.
MAX_HOLD_SECONDS = 120.0
MAX_TRANSITION_SECONDS = 10.0
#: The whole animatic: ten minutes.
MAX_ANIMATIC_SECONDS = 600.0
#: Frames of one generated transition clip.
MAX_CLIP_FRAMES = 600


def max_picture_side(family: str | None) -> int:
    """The largest side a model family may draw (the largest of all when the family is not known)."""
    native = NATIVE_SIDE.get(family or "")
    return MAX_SIDE_FACTOR * native if native else MAX_PICTURE_SIDE


def picture_size_problem(width: int, height: int, family: str | None = None) -> str | None:
    """Why a generated picture cannot be ``width`` x ``height`` for this family, or None."""
    if width < MIN_PICTURE_SIDE or height < MIN_PICTURE_SIDE:
        return f"the picture must be at least {MIN_PICTURE_SIDE}x{MIN_PICTURE_SIDE} pixels"
    most = max_picture_side(family)
    if width > most or height > most:
        if family in NATIVE_SIDE:
            return (f"{_FAMILY_NAMES.get(family, family)} models draw at most {most} pixels a side (twice the "
                    f"{NATIVE_SIDE[family]} they were trained at)")
        return f"pictures may be at most {most} pixels a side"
    return None


_FAMILY_NAMES = {"sd15": "SD1.5", "sd2": "SD2.x", "sdxl": "SDXL"}


def quote(value: object, limit: int = MAX_QUOTE_CHARS) -> str:
    """A short, printable excerpt of a bad value for a message: ``"abc..."`` for text, the number for a number.

    Control characters (a NUL of a UTF-16 file, line breaks) are shown as spaces, and at most
    ``limit`` characters of the value are kept.
    """
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int) and value.bit_length() > 64:
        return f"a number with about {int(value.bit_length() * 0.30103) + 1} digits"  # str() of it may be refused
    if isinstance(value, (int, float)):
        text = repr(value)
        return text if len(text) <= limit else text[:limit] + "..."
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a group of named values"
    text = "".join(c if c.isprintable() else " " for c in str(value)[: limit + 1])
    return f'"{text[:limit]}..."' if len(text) > limit else f'"{text}"'
