"""Poses as data: an OpenPose body skeleton per character, where it sits in a panel, and the picture a
ControlNet reads from it.

The skeleton is OpenPose's 18-keypoint body model in its own (COCO) order, the one the OpenPose
ControlNets were trained on. "Right" and "left" are the person's own sides, so a figure facing the
viewer has its right shoulder on the left of the picture. A joint may be missing (``None``): OpenPose
leaves out what it does not see, and so may the user.

Rendering follows the convention of the OpenPose annotator that made the ControlNets' training
pictures (as ``controlnet_aux`` draws it): a black picture; each of the 17 limbs an ellipse filled
with 60 % of its colour, then each joint a filled disc in its full colour, one person after another.
The stick's half width and the disc's radius are 4 pixels at 512 pixels and grow with the picture.
``docs/ENGINE.md`` lists the joints and colours.

Nothing here imports Qt or torch; the pose editor (``ui/pose_editor.py``) and the engine both call it.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageChops, ImageDraw, UnidentifiedImageError

#: The 18 body keypoints in OpenPose's COCO order (index = position in a skeleton).
KEYPOINTS: tuple[str, ...] = (
    "nose", "neck",
    "right shoulder", "right elbow", "right wrist",
    "left shoulder", "left elbow", "left wrist",
    "right hip", "right knee", "right ankle",
    "left hip", "left knee", "left ankle",
    "right eye", "left eye", "right ear", "left ear",
)

#: The limbs drawn, as pairs of keypoint indices, in drawing order; limb i has colour ``COLOURS[i]``.
LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7),
    (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
    (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)

#: Colour of keypoint i (and of limb i), RGB.
COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)

LIMB_SHADE = 0.6  # limbs are drawn in this fraction of their colour
BASE_SIDE = 512  # the annotator's working size, at which sticks and discs are BASE_WIDTH pixels
BASE_WIDTH = 4
MIRRORED = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16)  # index of each joint's other side

# Pose images users import: the picture a ControlNet reads must be a drawing on black.
MIN_POSE_SIDE = 32
MAX_POSE_SIDE = 8192
MAX_POSE_BYTES = 64 * 2**20
DARK = 40  # a pixel whose channels are all below this is background

Point = tuple[float, float]
Box = tuple[float, float, float, float]  # left, top, right, bottom as fractions of the panel (0..1)
WHOLE_PANEL: Box = (0.0, 0.0, 1.0, 1.0)


class PoseError(ValueError):
    """A pose or pose image that cannot be used; the message says why in plain words."""


def _check_box(box: Any, what: str) -> Box:
    try:
        left, top, right, bottom = (float(v) for v in box)
    except (TypeError, ValueError):
        raise PoseError(f"{what} is not a box (left, top, right, bottom).") from None
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in (left, top, right, bottom)):
        raise PoseError(f"{what} reaches outside the panel; its sides must lie between 0 and 1.")
    if right - left < 0.02 or bottom - top < 0.02:
        raise PoseError(f"{what} is too small to hold a pose.")
    return (left, top, right, bottom)


@dataclass(frozen=True)
class Skeleton:
    """An OpenPose body skeleton: 18 joints, each ``(x, y)`` in its box (0..1, y down) or ``None``."""

    points: tuple[Point | None, ...]

    def __post_init__(self) -> None:
        if len(self.points) != len(KEYPOINTS):
            raise PoseError(f"A pose has {len(KEYPOINTS)} joints, not {len(self.points)}.")
        for name, point in zip(KEYPOINTS, self.points):
            if point is None:
                continue
            if len(point) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                          and math.isfinite(v) and 0.0 <= v <= 1.0 for v in point):
                raise PoseError(f"The {name} of a pose is not a point inside its box ({point!r}).")
        # kept to the precision a project file stores, so that a saved pose reads back equal
        object.__setattr__(self, "points", tuple(None if p is None else (round(float(p[0]), 5), round(float(p[1]), 5))
                                                 for p in self.points))

    @classmethod
    def standing(cls) -> Skeleton:
        """A figure standing upright, facing the viewer, filling its box."""
        return cls(PRESETS["standing"])

    def moved(self, joint: int, x: float, y: float) -> Skeleton:
        """This skeleton with one joint at ``(x, y)``, kept inside the box."""
        points = list(self.points)
        points[joint] = (min(1.0, max(0.0, float(x))), min(1.0, max(0.0, float(y))))
        return Skeleton(tuple(points))

    def without(self, joint: int) -> Skeleton:
        """This skeleton with one joint left out (OpenPose's "not seen")."""
        points = list(self.points)
        points[joint] = None
        return Skeleton(tuple(points))

    def mirrored(self) -> Skeleton:
        """The same pose seen in a mirror: left and right swap sides and names."""
        return Skeleton(tuple(None if self.points[j] is None else (1.0 - self.points[j][0], self.points[j][1])
                              for j in MIRRORED))

    def to_list(self) -> list[list[float] | None]:
        return [None if p is None else [p[0], p[1]] for p in self.points]

    @classmethod
    def from_list(cls, data: Any) -> Skeleton:
        if not isinstance(data, list):
            raise PoseError("A pose's joints are not a list of points.")
        points: list[Point | None] = []
        for item in data:
            if item is None:
                points.append(None)
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                points.append((item[0], item[1]))
            else:
                raise PoseError(f"A joint of a pose is not a point ({str(item)[:40]}).")
        return cls(tuple(points))


#: Ready-made skeletons the editor offers (facing the viewer: the person's right is the picture's left).
PRESETS: dict[str, tuple[Point | None, ...]] = {
    "standing": (
        (0.50, 0.11), (0.50, 0.22), (0.38, 0.22), (0.34, 0.38), (0.31, 0.53), (0.62, 0.22), (0.66, 0.38),
        (0.69, 0.53), (0.43, 0.52), (0.42, 0.72), (0.41, 0.93), (0.57, 0.52), (0.58, 0.72), (0.59, 0.93),
        (0.48, 0.09), (0.52, 0.09), (0.45, 0.10), (0.55, 0.10),
    ),
    "arms up": (
        (0.50, 0.16), (0.50, 0.27), (0.38, 0.27), (0.30, 0.15), (0.28, 0.03), (0.62, 0.27), (0.70, 0.15),
        (0.72, 0.03), (0.43, 0.56), (0.42, 0.75), (0.41, 0.95), (0.57, 0.56), (0.58, 0.75), (0.59, 0.95),
        (0.48, 0.14), (0.52, 0.14), (0.45, 0.15), (0.55, 0.15),
    ),
    "walking": (
        (0.51, 0.11), (0.50, 0.22), (0.39, 0.23), (0.35, 0.38), (0.36, 0.52), (0.61, 0.22), (0.66, 0.37),
        (0.69, 0.50), (0.44, 0.52), (0.38, 0.71), (0.31, 0.91), (0.56, 0.52), (0.60, 0.72), (0.66, 0.90),
        (0.49, 0.09), (0.53, 0.09), (0.46, 0.10), (0.56, 0.10),
    ),
    "sitting": (
        (0.50, 0.14), (0.50, 0.27), (0.38, 0.27), (0.35, 0.44), (0.42, 0.58), (0.62, 0.27), (0.65, 0.44),
        (0.58, 0.58), (0.43, 0.60), (0.30, 0.66), (0.30, 0.92), (0.57, 0.60), (0.70, 0.66), (0.70, 0.92),
        (0.48, 0.12), (0.52, 0.12), (0.45, 0.13), (0.55, 0.13),
    ),
}


PRESET_ASPECT = 0.6  # width / height of the box the presets are drawn for


def preset(name: str, box: Box = WHOLE_PANEL, panel_size: tuple[int, int] = (1, 1)) -> Skeleton:
    """A ready-made skeleton for ``box`` of a panel of ``panel_size``, keeping a person's proportions: in a
    box wider than a standing figure it is narrowed about the middle, in a narrower one shortened."""
    width = (box[2] - box[0]) * panel_size[0]
    height = (box[3] - box[1]) * panel_size[1]
    aspect = width / height if height > 0 else PRESET_ASPECT
    sx, sy = (PRESET_ASPECT / aspect, 1.0) if aspect > PRESET_ASPECT else (1.0, aspect / PRESET_ASPECT)
    return Skeleton(tuple(None if p is None else (0.5 + (p[0] - 0.5) * sx, 0.5 + (p[1] - 0.5) * sy)
                          for p in PRESETS[name]))


def joint_pixels(skeleton: Skeleton, box: Box, size: tuple[int, int]) -> list[tuple[float, float] | None]:
    """Where each joint of ``skeleton`` placed in ``box`` falls on a picture of ``size`` (width, height)."""
    width, height = size
    left, top, right, bottom = box
    return [None if p is None else ((left + p[0] * (right - left)) * width, (top + p[1] * (bottom - top)) * height)
            for p in skeleton.points]


def box_point(box: Box, size: tuple[int, int], x: float, y: float) -> Point:
    """The box coordinates (0..1, unclamped) of the picture pixel ``(x, y)``: the inverse of ``joint_pixels``."""
    width, height = size
    left, top, right, bottom = box
    return ((x / width - left) / (right - left), (y / height - top) / (bottom - top))


def nearest_joint(skeleton: Skeleton, box: Box, size: tuple[int, int], x: float, y: float,
                  reach: float) -> int | None:
    """The joint nearest the pixel ``(x, y)`` within ``reach`` pixels, or ``None`` (what a click picks)."""
    best, best_distance = None, reach
    for index, point in enumerate(joint_pixels(skeleton, box, size)):
        if point is None:
            continue
        distance = math.hypot(point[0] - x, point[1] - y)
        if distance <= best_distance:
            best, best_distance = index, distance
    return best


def stroke_width(size: tuple[int, int]) -> int:
    """Half width of a limb and radius of a joint, in pixels, on a picture of ``size``."""
    return max(1, round(BASE_WIDTH * min(size) / BASE_SIDE))


def _limb_polygon(a: tuple[float, float], b: tuple[float, float], half_width: float) -> list[tuple[float, float]]:
    """The outline of the ellipse that joins ``a`` and ``b``: half its length long, ``half_width`` wide."""
    cx, cy = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
    length = math.hypot(a[0] - b[0], a[1] - b[1]) / 2
    angle = math.atan2(a[1] - b[1], a[0] - b[0])
    cos, sin = math.cos(angle), math.sin(angle)
    outline = []
    for degree in range(0, 360, 5):
        t = math.radians(degree)
        ex, ey = length * math.cos(t), half_width * math.sin(t)
        outline.append((cx + ex * cos - ey * sin, cy + ex * sin + ey * cos))
    return outline


def draw_skeleton(canvas: Image.Image, skeleton: Skeleton, box: Box = WHOLE_PANEL) -> None:
    """Draw one person's skeleton onto an RGB ``canvas``: limbs first, then joints, in OpenPose's colours."""
    draw = ImageDraw.Draw(canvas)
    width = stroke_width(canvas.size)
    points = joint_pixels(skeleton, box, canvas.size)
    for index, (a, b) in enumerate(LIMBS):
        if points[a] is None or points[b] is None:
            continue
        shade = tuple(int(c * LIMB_SHADE) for c in COLOURS[index])
        draw.polygon(_limb_polygon(points[a], points[b], width), fill=shade)
    for index, point in enumerate(points):
        if point is None:
            continue
        x, y = point
        draw.ellipse((x - width, y - width, x + width, y + width), fill=COLOURS[index])


def render_skeletons(size: tuple[int, int], placed: Iterable[tuple[Skeleton, Box]]) -> Image.Image:
    """The OpenPose picture of ``size`` (width, height) showing every ``(skeleton, box)``, on black."""
    canvas = Image.new("RGB", (int(size[0]), int(size[1])), (0, 0, 0))
    for skeleton, box in placed:
        draw_skeleton(canvas, skeleton, box)
    return canvas


# ---- imported pose images ---------------------------------------------------------------------------

def read_guide_image(data: bytes, kind: str = "pose", name: str = "The pose image") -> Image.Image:
    """An imported guide picture (RGB): an OpenPose skeleton for ``pose``, any picture for ``depth`` (near is
    bright) and ``lineart`` (white lines on black); a PoseError says in plain words why it cannot be one."""
    image = _read_picture(data, name)
    if kind == "pose":
        _check_skeleton_picture(image, name)
    return image


def read_pose_image(data: bytes, name: str = "The pose image") -> Image.Image:
    """An imported OpenPose picture (RGB), or a PoseError saying in plain words why it cannot be one."""
    return read_guide_image(data, "pose", name)


def _read_picture(data: bytes, name: str) -> Image.Image:
    if len(data) > MAX_POSE_BYTES:
        raise PoseError(f"{name} is larger than {MAX_POSE_BYTES // 2**20} MB; a guide picture is much smaller.")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            if max(opened.size) > MAX_POSE_SIDE:
                raise PoseError(f"{name} is {opened.size[0]}x{opened.size[1]} pixels; at most "
                                f"{MAX_POSE_SIDE} pixels a side are read.")
            opened.load()
            image = opened.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, PoseError):
            raise
        raise PoseError(f"{name} is not a picture StoryStudio can read (PNG or JPEG).") from None
    if min(image.size) < MIN_POSE_SIDE:
        raise PoseError(f"{name} is only {image.size[0]}x{image.size[1]} pixels; a guide needs at least "
                        f"{MIN_POSE_SIDE} pixels a side.")
    return image


def _check_skeleton_picture(image: Image.Image, name: str) -> None:
    small = image.copy()
    small.thumbnail((128, 128))
    raw = small.tobytes()
    dark = sum(1 for i in range(0, len(raw), 3) if max(raw[i:i + 3]) < DARK) / (len(raw) // 3)
    if dark < 0.5:
        raise PoseError(f"{name} does not look like an OpenPose skeleton (coloured sticks on a black background); "
                        "draw the pose in the pose editor, or use a picture an OpenPose tool made.")
    if dark > 0.9999:
        raise PoseError(f"{name} is all black: it shows no skeleton.")


def pose_png(data: bytes, name: str = "The pose image", kind: str = "pose") -> bytes:
    """An imported guide picture checked and stored as PNG bytes (what the project keeps)."""
    image = read_guide_image(data, kind, name)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def fit_into(image: Image.Image, box: Box, size: tuple[int, int]) -> tuple[Image.Image, tuple[int, int]]:
    """``image`` scaled to fit inside ``box`` of a picture of ``size`` (its shape kept, centred), and where."""
    width, height = size
    left, top, right, bottom = (round(box[0] * width), round(box[1] * height), round(box[2] * width),
                                round(box[3] * height))
    room_w, room_h = max(1, right - left), max(1, bottom - top)
    scale = min(room_w / image.width, room_h / image.height)
    fitted = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                          Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BILINEAR)
    return fitted, (left + (room_w - fitted.width) // 2, top + (room_h - fitted.height) // 2)


# ---- what the engine draws with -----------------------------------------------------------------------

@dataclass(frozen=True)
class Guide:
    """One control picture of a panel, as the engine receives it: what it is (``pose``, ``depth``,
    ``lineart``) and how to draw it at any size: imported pictures (PNG bytes) and skeletons, each
    in its box. Every part of a pose guide lands on one black picture: OpenPose shows several people
    in one picture."""

    kind: str = "pose"
    skeletons: tuple[tuple[Skeleton, Box], ...] = ()
    images: tuple[tuple[bytes, Box], ...] = field(default=(), repr=False)

    def render(self, size: tuple[int, int]) -> Image.Image:
        """The control picture at ``size`` (width, height): imported pictures in their boxes (a pose fitted,
        its shape kept; a depth map or line art stretched over the box: it is the panel's composition;
        overlaps keep the brighter pixel), then the skeletons drawn over them."""
        canvas = Image.new("RGB", (int(size[0]), int(size[1])), (0, 0, 0))
        for data, box in self.images:
            picture = read_guide_image(data, self.kind)
            if self.kind == "pose":
                fitted, corner = fit_into(picture, box, canvas.size)
            else:
                left, top = round(box[0] * canvas.width), round(box[1] * canvas.height)
                right, bottom = round(box[2] * canvas.width), round(box[3] * canvas.height)
                fitted = picture.resize((max(1, right - left), max(1, bottom - top)), Image.Resampling.BILINEAR)
                corner = (left, top)
            layer = Image.new("RGB", canvas.size, (0, 0, 0))
            layer.paste(fitted, corner)
            canvas = ImageChops.lighter(canvas, layer)
        for skeleton, box in self.skeletons:
            draw_skeleton(canvas, skeleton, box)
        return canvas

    @property
    def empty(self) -> bool:
        return not self.skeletons and not self.images


def picture_digest(image: Image.Image) -> str:
    """sha256 of a control picture's pixels (with its size): what the PNG parameters record."""
    digest = hashlib.sha256(f"{image.width}x{image.height}:".encode())
    digest.update(image.convert("RGB").tobytes())
    return digest.hexdigest()


# ---- a panel's poses in the project ---------------------------------------------------------------------

def default_box(index: int, count: int) -> Box:
    """Where the ``index``-th of ``count`` characters stands when nobody drew a region: side by side in the
    order of the tags, the first on the left, each in an equal column."""
    count = max(1, count)
    return (index / count, 0.0, (index + 1) / count, 1.0)


@dataclass
class PanelPose:
    """One character's pose in one panel: drawn (a skeleton) or imported (an OpenPose picture in the
    project's image store), placed in ``box``; without a box, in the character's region of the panel."""

    character: str  # the character's name as tagged; "" for a pose of the whole panel (e.g. an imported group)
    skeleton: Skeleton | None = None
    image: str | None = None  # file name in Project.images
    box: Box | None = None

    def __post_init__(self) -> None:
        if (self.skeleton is None) == (self.image is None):
            raise PoseError("A pose is either drawn (a skeleton) or imported (a picture), not both or neither.")
        if self.box is not None:
            self.box = _check_box(self.box, "The box of a pose")

    def to_dict(self) -> dict[str, Any]:
        return {
            "character": self.character,
            "skeleton": None if self.skeleton is None else self.skeleton.to_list(),
            "image": self.image,
            "box": None if self.box is None else [round(v, 5) for v in self.box],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PanelPose:
        skeleton, image, character = data.get("skeleton"), data.get("image"), data.get("character", "")
        if not isinstance(character, str) or not (image is None or isinstance(image, str)):
            raise PoseError("A pose names its character and its picture in words.")
        return cls(
            character=character,
            skeleton=None if skeleton is None else Skeleton.from_list(skeleton),
            image=image,
            box=None if data.get("box") is None else tuple(data["box"]),
        )


def place(poses: Sequence[PanelPose], characters: Sequence[str],
          regions: dict[str, Box] | None = None) -> list[tuple[PanelPose, Box]]:
    """Each pose with the box it is drawn in.

    A pose's own box wins; else the character's region (``regions``: a panel's per-character boxes,
    where the panel has them); else its column among the panel's tagged ``characters``
    (:func:`default_box`); a pose of the whole panel, or of a character no longer tagged, fills the panel.
    """
    regions = regions or {}
    placed = []
    for pose in poses:
        if pose.box is not None:
            box = pose.box
        elif pose.character in regions:
            box = regions[pose.character]
        elif pose.character and pose.character in characters:
            box = default_box(list(characters).index(pose.character), len(characters))
        else:
            box = WHOLE_PANEL
        placed.append((pose, box))
    return placed


def guide_of(poses: Sequence[PanelPose], characters: Sequence[str], images: dict[str, bytes],
             regions: dict[str, Box] | None = None) -> Guide | None:
    """The pose guide the engine draws a panel with (``None`` when the panel has no pose)."""
    skeletons, pictures = [], []
    for pose, box in place(poses, characters, regions):
        if pose.skeleton is not None:
            skeletons.append((pose.skeleton, box))
        elif pose.image in images:
            pictures.append((images[pose.image], box))
    if not skeletons and not pictures:
        return None
    return Guide("pose", tuple(skeletons), tuple(pictures))
