"""The animatic as frames and as an MP4 file.

``AnimaticRenderer`` draws any frame of a project's animatic (holds with
their camera moves and burned-in captions, crossfades, generated transition
clips); the in-app preview and the MP4 export both use it. ``export_mp4``
pipes the frames to ffmpeg (from imageio-ffmpeg) as H.264 in yuv420p with
``+faststart``, then, when there is an audio track or soft subtitles, muxes
them in a second ffmpeg pass that pads or trims the audio to the video's
exact length (``-shortest`` is not used: with a shorter audio track it ends
the file early).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..project.animatic import Animatic, AnimaticError, Segment, srt, subtitle_cues, timeline, total_frames
from ..project.model import Project
from ..resources_path import resource

Progress = Callable[[int, int, str], None]
Cancel = Callable[[], bool]


class VideoExportError(Exception):
    """An animatic that cannot be exported; the message is one plain sentence."""


class VideoExportCancelled(Exception):
    """The user stopped the export; nothing was written."""


@dataclass
class VideoResult:
    path: Path
    frames: int
    fps: int
    seconds: float
    warnings: list[str] = field(default_factory=list)


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


# ---------------------------------------------------------------------------
# frames


@lru_cache(maxsize=8)
def _caption_font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(resource("fonts", "comic-neue", "ComicNeue-Bold.otf")), size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.splitlines():
        words = paragraph.split()
        line = ""
        for word in words:
            trial = f"{line} {word}".strip()
            if not line or draw.textlength(trial, font=font) <= width:
                line = trial
            else:
                lines.append(line)
                line = word
        if line:
            lines.append(line)
    return lines


def caption_overlay(text: str, size: tuple[int, int]) -> Image.Image:
    """A transparent layer with the text in a dark translucent box along the bottom of the frame."""
    w, h = size
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    if not text.strip():
        return layer
    draw = ImageDraw.Draw(layer)
    font = _caption_font(max(14, round(min(w, h) * 0.045)))
    lines = _wrap(draw, text, font, int(w * 0.8))
    line_h = round(font.size * 1.25)
    box_h = line_h * len(lines) + font.size
    widest = max(draw.textlength(line, font=font) for line in lines)
    box_w = int(widest + font.size * 1.5)
    x0, y0 = (w - box_w) // 2, h - box_h - round(h * 0.05)
    draw.rounded_rectangle([x0, y0, x0 + box_w, y0 + box_h], radius=font.size // 2, fill=(0, 0, 0, 165))
    y = y0 + font.size // 2
    for line in lines:
        draw.text(((w - draw.textlength(line, font=font)) / 2, y), line, font=font, fill=(255, 255, 255, 255))
        y += line_h
    return layer


def framed(image: Image.Image, box: tuple[float, float, float, float], size: tuple[int, int], fit: str) -> Image.Image:
    """The ``box`` part of ``image`` (0..1 coordinates) placed in a frame of ``size``: letterboxed or cropped."""
    w, h = size
    bx, by, bw, bh = box
    src = (bx * image.width, by * image.height, (bx + bw) * image.width, (by + bh) * image.height)
    sw, sh = src[2] - src[0], src[3] - src[1]
    if fit == "crop":  # shrink the source box to the frame's shape, around its centre
        target = w / h
        if sw / sh > target:
            cx, new = (src[0] + src[2]) / 2, sh * target
            src = (cx - new / 2, src[1], cx + new / 2, src[3])
        else:
            cy, new = (src[1] + src[3]) / 2, sw / target
            src = (src[0], cy - new / 2, src[2], cy + new / 2)
        return image.resize((w, h), Image.Resampling.BICUBIC, box=src)
    scale = min(w / sw, h / sh)
    pw, ph = max(1, round(sw * scale)), max(1, round(sh * scale))
    frame = Image.new("RGB", size, (0, 0, 0))
    frame.paste(image.resize((pw, ph), Image.Resampling.BICUBIC, box=src), ((w - pw) // 2, (h - ph) // 2))
    return frame


class AnimaticRenderer:
    """Every frame of a project's animatic, at the animatic's size or a smaller preview size."""

    def __init__(self, project: Project, animatic: Animatic | None = None, size: tuple[int, int] | None = None):
        self.project = project
        self.animatic = animatic or project.animatic
        self.size = size or self.animatic.resolution
        self.panels = {p.id: p for p in project.panels}
        self.numbers = {p.id: i for i, p in enumerate(project.panels, 1)}
        self.segments: list[Segment] = timeline(self.animatic, project.panels)
        self.frame_count = total_frames(self.segments)
        self._pictures: dict[str, Image.Image] = {}
        self._captions: dict[str, Image.Image] = {}
        self._clips: dict[str, list[Image.Image]] = {}
        self.missing = [self.numbers[p.id] for p in project.panels if p.chosen_version is None]

    @property
    def seconds(self) -> float:
        return self.frame_count / self.animatic.fps

    def segment_at(self, index: int) -> Segment:
        for seg in self.segments:
            if seg.first <= index <= seg.last:
                return seg
        raise IndexError(f"frame {index} is outside the animatic (0 to {self.frame_count - 1})")

    def picture(self, panel_id: str) -> Image.Image:
        """The panel's chosen picture, or a slate saying it has none yet (never silently blank)."""
        if panel_id not in self._pictures:
            panel = self.panels[panel_id]
            version = panel.chosen_version
            data = self.project.images.get(version.image) if version else None
            if data:
                self._pictures[panel_id] = Image.open(io.BytesIO(data)).convert("RGB")
            else:
                slate = Image.new("RGB", (960, 540), (38, 40, 46))
                draw = ImageDraw.Draw(slate)
                font = _caption_font(34)
                text = f"Panel {self.numbers[panel_id]}: no picture yet\n\n{panel.prompt}"
                y = 120
                for line in _wrap(draw, text, font, 820):
                    draw.text((70, y), line, font=font, fill=(220, 220, 225))
                    y += 44
                self._pictures[panel_id] = slate
        return self._pictures[panel_id]

    def _caption(self, panel_id: str) -> Image.Image | None:
        if not self.animatic.burn_captions or not self.animatic.shot(panel_id).caption:
            return None
        if panel_id not in self._captions:
            panel = self.panels[panel_id]
            text = "\n".join(t for t in (panel.caption.strip(), panel.dialogue.strip()) if t)
            self._captions[panel_id] = caption_overlay(text, self.size)
        return self._captions[panel_id]

    def hold_frame(self, panel_id: str, t: float, captions: bool = True) -> Image.Image:
        """The panel at ``t`` (0..1) of its hold: its camera move, and its caption."""
        frame = framed(self.picture(panel_id), self.animatic.shot(panel_id).camera.at(t), self.size, self.animatic.fit)
        overlay = self._caption(panel_id) if captions else None
        if overlay is not None:
            frame = Image.alpha_composite(frame.convert("RGBA"), overlay).convert("RGB")
        return frame

    def _clip(self, seg: Segment) -> list[Image.Image] | None:
        cut = seg.cut
        if cut is None or cut.kind != "generated" or not cut.clip_fits(seg.panel, seg.next_panel or ""):
            return None
        key = "|".join(cut.clip)
        if key not in self._clips:
            frames = []
            for name in cut.clip:
                data = self.project.images.get(name)
                if data is None:
                    return None
                frames.append(Image.open(io.BytesIO(data)).convert("RGB"))
            self._clips[key] = frames
        return self._clips[key]

    def frame(self, index: int) -> Image.Image:
        seg = self.segment_at(index)
        local = index - seg.first
        t = local / (seg.frames - 1) if seg.frames > 1 else 0.0
        if seg.kind == "hold":
            return self.hold_frame(seg.panel, t)
        clip = self._clip(seg)
        if clip is not None:  # the generated frames, stretched over the transition's length
            source = clip[min(len(clip) - 1, round(t * (len(clip) - 1)))]
            return framed(source, (0.0, 0.0, 1.0, 1.0), self.size, "crop")
        # a crossfade from the end of one camera move to the start of the next (captions stay in the holds)
        mix = (local + 0.5) / seg.frames
        a, b = (np.asarray(k, dtype=np.float32) for k in self.transition_keyframes(seg.panel,
                                                                                 seg.next_panel or seg.panel))
        return Image.fromarray(np.round(a * (1 - mix) + b * mix).astype(np.uint8))

    def transition_keyframes(self, before: str, after: str) -> tuple[Image.Image, Image.Image]:
        """The two pictures a transition joins: the end of one panel's hold and the start of the next's."""
        return self.hold_frame(before, 1.0, captions=False), self.hold_frame(after, 0.0, captions=False)


# ---------------------------------------------------------------------------
# MP4


def probe(path: str | os.PathLike[str]) -> str:
    """What ffmpeg says about a media file (its stream list), as text."""
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return result.stderr


def check_audio(path: str | os.PathLike[str]) -> None:
    """VideoExportError unless ffmpeg can decode an audio stream from ``path``."""
    p = Path(path)
    if not p.is_file():
        raise VideoExportError(f"the audio file {p} does not exist.")
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-v", "error", "-i", str(p), "-t", "1", "-vn",
                             "-f", "null", "-"], capture_output=True, text=True)
    if result.returncode != 0 or "Audio:" not in probe(p):
        raise VideoExportError(f"the audio file {p.name} cannot be read as sound; use a WAV, MP3, OGG, FLAC or "
                               "M4A file.")


def export_mp4(project: Project, path: str | os.PathLike[str], *, progress: Progress | None = None,
               cancel: Cancel | None = None, animatic: Animatic | None = None) -> VideoResult:
    """Write the animatic as an MP4 (H.264, yuv420p, +faststart), with its audio and subtitles if set."""
    import imageio_ffmpeg

    animatic = animatic or project.animatic
    target = Path(path)
    if target.is_dir():
        raise VideoExportError(f"{target} is a folder; give a file name to export to.")
    if not target.parent.is_dir():
        raise VideoExportError(f"the folder {target.parent} does not exist.")
    try:
        renderer = AnimaticRenderer(project, animatic)
    except AnimaticError as exc:
        raise VideoExportError(str(exc)) from None
    w, h = renderer.size
    if w % 2 or h % 2:
        raise VideoExportError(f"the video size {w}x{h} must be even in both directions for H.264.")
    if animatic.audio:
        check_audio(animatic.audio)
    total = renderer.frame_count
    warnings = []
    if renderer.missing:
        warnings.append(f"panel(s) {', '.join(map(str, renderer.missing))} have no picture yet and show a slate.")
    stale = [seg for seg in renderer.segments if seg.kind == "transition" and seg.cut and seg.cut.kind == "generated"
             and not seg.cut.clip_fits(seg.panel, seg.next_panel or "")]
    if stale:
        warnings.append(f"{len(stale)} generated transition(s) are not made yet (or no longer fit) and play as "
                        "crossfades.")

    with tempfile.TemporaryDirectory(prefix="storystudio-mp4-", dir=target.parent) as tmp:
        video = Path(tmp) / "video.mp4"
        writer = imageio_ffmpeg.write_frames(
            str(video), (w, h), fps=animatic.fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
            quality=None, macro_block_size=2, ffmpeg_log_level="error",
            output_params=["-crf", str(animatic.quality), "-preset", "medium", "-movflags", "+faststart"])
        writer.send(None)
        try:
            for index in range(total):
                if cancel is not None and cancel():
                    raise VideoExportCancelled
                writer.send(np.ascontiguousarray(np.asarray(renderer.frame(index), dtype=np.uint8)))
                if progress is not None and (index % 8 == 0 or index == total - 1):
                    progress(index + 1, total, f"frame {index + 1} of {total}")
        except BaseException:
            writer.close()
            raise
        writer.close()
        final = video
        if animatic.audio or animatic.soft_subtitles:
            final = Path(tmp) / "muxed.mp4"
            _mux(video, final, renderer, animatic, project)
        part = target.with_name(target.name + ".part")
        try:
            os.replace(final, part)
            os.replace(part, target)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise VideoExportError(f"could not write {target} ({exc.strerror or exc}).") from None
    return VideoResult(target, total, animatic.fps, total / animatic.fps, warnings)


def _mux(video: Path, out: Path, renderer: AnimaticRenderer, animatic: Animatic, project: Project) -> None:
    seconds = f"{renderer.frame_count / animatic.fps:.6f}"
    cmd = [ffmpeg_exe(), "-hide_banner", "-v", "error", "-y", "-i", str(video)]
    maps = ["-map", "0:v:0"]
    codecs = ["-c:v", "copy"]
    inputs = 1
    if animatic.audio:
        cmd += ["-i", str(animatic.audio)]
        maps += ["-map", f"{inputs}:a:0"]
        # pad a short track with silence and cut a long one: the file lasts exactly as long as the pictures
        codecs += ["-c:a", "aac", "-b:a", "192k", "-af", "apad"]
        inputs += 1
    if animatic.soft_subtitles:
        cues = subtitle_cues(animatic, project.panels, renderer.segments)
        subs = video.with_name("captions.srt")
        subs.write_text(srt(cues), encoding="utf-8")
        cmd += ["-i", str(subs)]
        maps += ["-map", f"{inputs}:s:0"]
        codecs += ["-c:s", "mov_text", "-metadata:s:s:0", "language=eng"]
        inputs += 1
    cmd += maps + codecs + ["-t", seconds, "-movflags", "+faststart", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "unknown error"
        raise VideoExportError(f"ffmpeg could not add the sound or subtitles ({reason}).")


def read_back(path: str | os.PathLike[str]) -> dict:
    """What an MP4 holds: frame count, size, fps, duration and its stream kinds (for checks and tests)."""
    import imageio_ffmpeg

    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    info = probe(path)
    size = re.search(r"Video: .*?, (\d+)x(\d+)", info)
    fps = re.search(r"(\d+(?:\.\d+)?) fps", info)
    return {"frames": frames, "seconds": seconds,
            "size": (int(size.group(1)), int(size.group(2))) if size else None,
            "fps": float(fps.group(1)) if fps else None,
            "audio": "Audio:" in info, "subtitles": "Subtitle:" in info, "h264": "Video: h264" in info,
            "yuv420p": "yuv420p" in info}
