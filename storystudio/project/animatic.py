"""The animatic as data: each panel's camera move and caption, and the cuts between panels.

How long a panel holds is the panel's own ``duration`` (None: from the amount
of its words).

Times are seconds; the video is cut into whole frames at the animatic's frame
rate so that its length is the sum of the holds and transitions *to the
frame*: segment boundaries are rounded from the running total, never from each
segment alone, so rounding errors cannot add up.

Camera rectangles are in the picture's own coordinates, 0 to 1 on both axes
(x, y, width, height): (0, 0, 1, 1) is the whole picture.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import limits

Box = tuple[float, float, float, float]

FULL: Box = (0.0, 0.0, 1.0, 1.0)
SIZE_PRESETS: dict[str, tuple[int, int, str]] = {
    "1920x1080": (1920, 1080, "1920 x 1080 (Full HD)"),
    "1280x720": (1280, 720, "1280 x 720 (HD)"),
    "1080x1080": (1080, 1080, "1080 x 1080 (square)"),
    "1080x1920": (1080, 1920, "1080 x 1920 (vertical)"),
}
FRAME_RATES = (12, 24, 30)
FITS = {"letterbox": "Letterbox: whole picture", "crop": "Crop: fill the frame"}
EASINGS = ("linear", "ease-in-out", "ease-in", "ease-out")
CUT_KINDS = {"cut": "Cut", "crossfade": "Crossfade", "generated": "Generated transition"}
CAMERA_PRESETS: dict[str, tuple[Box, Box]] = {
    "still": (FULL, FULL),
    "zoom-in": (FULL, (0.12, 0.12, 0.76, 0.76)),
    "zoom-out": ((0.12, 0.12, 0.76, 0.76), FULL),
    "pan-right": ((0.0, 0.1, 0.8, 0.8), (0.2, 0.1, 0.8, 0.8)),
    "pan-left": ((0.2, 0.1, 0.8, 0.8), (0.0, 0.1, 0.8, 0.8)),
    "pan-down": ((0.1, 0.0, 0.8, 0.8), (0.1, 0.2, 0.8, 0.8)),
    "pan-up": ((0.1, 0.2, 0.8, 0.8), (0.1, 0.0, 0.8, 0.8)),
}


class AnimaticError(ValueError):
    """An animatic that cannot be made as it is; the message is a plain sentence."""


def ease(kind: str, t: float) -> float:
    t = min(max(t, 0.0), 1.0)
    if kind == "ease-in-out":
        return t * t * (3 - 2 * t)
    if kind == "ease-in":
        return t * t
    if kind == "ease-out":
        return 1 - (1 - t) * (1 - t)
    return t


def _box(value: Any, what: str) -> Box:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise AnimaticError(f"{what} is not four numbers (x, y, width, height)")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise AnimaticError(f"{what} holds {v!r}, which is not a number")
        out.append(float(v))
    x, y, w, h = out
    if w <= 0 or h <= 0 or x < -1e-6 or y < -1e-6 or x + w > 1 + 1e-6 or y + h > 1 + 1e-6:
        raise AnimaticError(f"{what} ({x:g}, {y:g}, {w:g}, {h:g}) does not lie inside the picture")
    return (x, y, w, h)


@dataclass
class CameraMove:
    """A Ken Burns move: the part of the picture shown at the start and at the end of the hold."""

    start: Box = FULL
    end: Box = FULL
    easing: str = "ease-in-out"

    @classmethod
    def preset(cls, name: str, easing: str = "ease-in-out") -> CameraMove:
        if name not in CAMERA_PRESETS:
            raise AnimaticError(f"there is no camera move called {name!r}")
        start, end = CAMERA_PRESETS[name]
        return cls(start, end, easing)

    @property
    def preset_name(self) -> str:
        for name, (start, end) in CAMERA_PRESETS.items():
            if _close(start, self.start) and _close(end, self.end):
                return name
        return "custom"

    def at(self, t: float) -> Box:
        """The rectangle shown at ``t`` (0 = start of the hold, 1 = its end), eased."""
        k = ease(self.easing, t)
        return tuple(a + (b - a) * k for a, b in zip(self.start, self.end))  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        return {"start": list(self.start), "end": list(self.end), "easing": self.easing}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> CameraMove:
        easing = data.get("easing", "ease-in-out")
        if easing not in EASINGS:
            raise AnimaticError(f"the camera move of {where} has an unknown easing {easing!r}")
        return cls(_box(data.get("start", FULL), f"the camera start of {where}"),
                   _box(data.get("end", FULL), f"the camera end of {where}"), easing)


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(abs(x - y) < 1e-6 for x, y in zip(a, b))


@dataclass
class Shot:
    """How one panel plays besides its duration (which the panel itself keeps): camera move, caption."""

    camera: CameraMove = field(default_factory=CameraMove)
    caption: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"camera": self.camera.to_dict(), "caption": self.caption}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> Shot:
        return cls(CameraMove.from_dict(data.get("camera") or {}, where), bool(data.get("caption", True)))


@dataclass
class Cut:
    """What happens after a panel: a cut, a crossfade, or a generated transition clip.

    A generated clip keeps its frames (images in the project's store), the
    panels it was made between and its parameters, so it can be made again
    like a panel; if the story is reordered so that another panel follows,
    the clip no longer fits and a crossfade plays instead until it is remade.
    """

    kind: str = "crossfade"
    duration: float = 0.5
    clip: list[str] = field(default_factory=list)  # image names of the generated frames
    clip_between: tuple[str, str] | None = None  # (panel before, panel after) the clip was made for
    clip_parameters: dict[str, Any] = field(default_factory=dict)

    def clip_fits(self, before: str, after: str) -> bool:
        return bool(self.clip) and self.clip_between == (before, after)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "duration": self.duration, "clip": list(self.clip),
                "clip_between": None if self.clip_between is None else list(self.clip_between),
                "clip_parameters": copy.deepcopy(self.clip_parameters)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> Cut:
        kind = data.get("kind", "crossfade")
        if kind not in CUT_KINDS:
            raise AnimaticError(f"the transition after {where} has an unknown kind {kind!r}")
        duration = data.get("duration", 0.5)
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration) \
                or duration < 0:
            raise AnimaticError(f"the transition after {where} lasts {duration!r}, not a number of seconds >= 0")
        clip = data.get("clip", [])
        if not isinstance(clip, list) or not all(isinstance(c, str) for c in clip):
            raise AnimaticError(f"the transition clip after {where} is not a list of picture names")
        between = data.get("clip_between")
        if between is not None and (not isinstance(between, list) or len(between) != 2):
            raise AnimaticError(f"the transition clip after {where} does not say which panels it joins")
        return cls(kind, float(duration), clip, None if between is None else (str(between[0]), str(between[1])),
                   dict(data.get("clip_parameters") or {}))


@dataclass
class Animatic:
    """The whole animatic: frame rate, size, fit, sound, captions, and per-panel shots and cuts."""

    fps: int = 24
    size: str = "1920x1080"
    fit: str = "letterbox"
    audio: str | None = None  # path of the user's sound file
    burn_captions: bool = True
    soft_subtitles: bool = False
    quality: int = 20  # x264 constant rate factor: lower is better and larger (18 to 28 is sensible)
    shots: dict[str, Shot] = field(default_factory=dict)  # by panel id
    cuts: dict[str, Cut] = field(default_factory=dict)  # by the id of the panel before the cut

    @property
    def resolution(self) -> tuple[int, int]:
        w, h, _ = SIZE_PRESETS[self.size]
        return w, h

    def shot(self, panel_id: str) -> Shot:
        return self.shots.get(panel_id) or Shot()

    def cut(self, panel_id: str) -> Cut:
        return self.cuts.get(panel_id) or Cut()

    def to_dict(self) -> dict[str, Any]:
        return {"fps": self.fps, "size": self.size, "fit": self.fit, "audio": self.audio,
                "burn_captions": self.burn_captions, "soft_subtitles": self.soft_subtitles,
                "quality": self.quality, "shots": {k: v.to_dict() for k, v in self.shots.items()},
                "cuts": {k: v.to_dict() for k, v in self.cuts.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Animatic:
        """An animatic from its JSON form ({} gives the defaults); AnimaticError says what is wrong."""
        if not data:
            return cls()
        if not isinstance(data, dict):
            raise AnimaticError("the animatic settings are not a group of named values")
        fps = data.get("fps", 24)
        if fps not in FRAME_RATES:
            raise AnimaticError(f"the frame rate {fps!r} is not one of {', '.join(map(str, FRAME_RATES))}")
        size = data.get("size", "1920x1080")
        if size not in SIZE_PRESETS:
            raise AnimaticError(f"the video size {size!r} is not one StoryStudio offers")
        fit = data.get("fit", "letterbox")
        if fit not in FITS:
            raise AnimaticError(f"the fit {fit!r} is neither letterbox nor crop")
        quality = data.get("quality", 20)
        if not isinstance(quality, int) or isinstance(quality, bool) or not 0 <= quality <= 51:
            raise AnimaticError(f"the video quality {quality!r} is not a whole number from 0 to 51")
        audio = data.get("audio")
        if audio is not None and not isinstance(audio, str):
            raise AnimaticError("the audio track is not a file path")
        shots, cuts = data.get("shots", {}), data.get("cuts", {})
        if not isinstance(shots, dict) or not isinstance(cuts, dict):
            raise AnimaticError("the animatic's shots or cuts are not groups of named values")
        return cls(fps=fps, size=size, fit=fit, audio=audio or None, burn_captions=bool(data.get("burn_captions", True)),
                   soft_subtitles=bool(data.get("soft_subtitles", False)), quality=quality,
                   shots={str(k): Shot.from_dict(v or {}, f"a panel's shot ({k[:8]})") for k, v in shots.items()},
                   cuts={str(k): Cut.from_dict(v or {}, f"a panel ({k[:8]})") for k, v in cuts.items()})

    def copy(self) -> Animatic:
        return copy.deepcopy(self)


# ---------------------------------------------------------------------------
# timing


def words_of(panel: Any) -> int:
    text = f"{getattr(panel, 'caption', '')} {getattr(panel, 'dialogue', '')}"
    return len(text.split())


def auto_duration(panel: Any) -> float:
    """Seconds a panel holds by default: time to read its words (about 3 a second), 2 s at least, 10 at most."""
    return round(min(10.0, max(2.0, 1.5 + words_of(panel) / 3.0)), 2)


def shot_duration(panel: Any) -> float:
    """The panel's own duration, or the automatic one when it has none."""
    duration = getattr(panel, "duration", None)
    return auto_duration(panel) if duration is None else float(duration)


@dataclass
class Segment:
    """A run of frames: a panel's hold, or the transition from ``panel`` to ``next_panel``."""

    kind: str  # "hold" or "transition"
    panel: str
    first: int  # index of the segment's first frame in the video
    frames: int
    start: float  # seconds
    end: float
    next_panel: str | None = None
    cut: Cut | None = None  # transitions only

    @property
    def last(self) -> int:
        return self.first + self.frames - 1


def timeline(animatic: Animatic, panels: Sequence[Any]) -> list[Segment]:
    """Holds and transitions in story order, with their frames. AnimaticError for unusable timings.

    A cut adds no frames; crossfades and generated transitions last their own
    duration, between the two holds.
    """
    if not panels:
        raise AnimaticError("the story has no panels to put in an animatic")
    spans: list[tuple[str, str, float, str | None, Cut | None]] = []
    for i, panel in enumerate(panels):
        seconds = shot_duration(panel)
        if seconds < limits.MIN_HOLD_SECONDS:
            raise AnimaticError(f"panel {i + 1} lasts {seconds:g} s; a panel must hold for at least "
                                f"{limits.MIN_HOLD_SECONDS:g} s")
        spans.append(("hold", panel.id, seconds, None, None))
        if i + 1 < len(panels):
            cut = animatic.cut(panel.id)
            if cut.kind != "cut" and cut.duration > 0:
                spans.append(("transition", panel.id, cut.duration, panels[i + 1].id, cut))
    total = sum(s[2] for s in spans)
    if total > limits.MAX_ANIMATIC_SECONDS:
        raise AnimaticError(f"the animatic would last {total:.0f} s; StoryStudio makes animatics of up to "
                            f"{limits.MAX_ANIMATIC_SECONDS / 60:.0f} minutes")
    segments = []
    clock = 0.0
    for kind, panel_id, seconds, next_id, cut in spans:
        first = round(clock * animatic.fps)
        end = clock + seconds
        frames = round(end * animatic.fps) - first
        if frames < 1:
            if kind == "hold":
                raise AnimaticError(f"a panel holds for less than one frame at {animatic.fps} fps")
            clock = end
            continue
        segments.append(Segment(kind, panel_id, first, frames, clock, end, next_id, cut))
        clock = end
    return segments


def total_frames(segments: Sequence[Segment]) -> int:
    return segments[-1].first + segments[-1].frames if segments else 0


def subtitle_cues(animatic: Animatic, panels: Sequence[Any], segments: Sequence[Segment]) -> list[tuple[float, float, str]]:
    """(start s, end s, text) for each hold whose panel shows its words: its caption and dialogue."""
    by_id = {p.id: p for p in panels}
    cues = []
    for seg in segments:
        if seg.kind != "hold" or not animatic.shot(seg.panel).caption:
            continue
        panel = by_id[seg.panel]
        text = "\n".join(t for t in (panel.caption.strip(), panel.dialogue.strip()) if t)
        if text:
            cues.append((seg.first / animatic.fps, (seg.first + seg.frames) / animatic.fps, text))
    return cues


def srt(cues: Sequence[tuple[float, float, str]]) -> str:
    """SubRip text for the cues."""
    def stamp(seconds: float) -> str:
        ms = round(seconds * 1000)
        h, ms = divmod(ms, 3_600_000)
        m, ms = divmod(ms, 60_000)
        s, ms = divmod(ms, 1000)
        return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"

    blocks = [f"{i}\n{stamp(a)} --> {stamp(b)}\n{text}\n" for i, (a, b, text) in enumerate(cues, 1)]
    return "\n".join(blocks)
