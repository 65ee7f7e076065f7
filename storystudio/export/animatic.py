"""The animatic as frames and as an MP4 file.

``AnimaticRenderer`` draws any frame of a project's animatic (holds with
their camera moves and burned-in captions, crossfades, generated transition
clips) with QPainter; the in-app preview and the MP4 export both use it, so
the preview shows the file's frames. ``export_mp4`` pipes the frames, straight
from their memory, to ffmpeg (the binary imageio-ffmpeg ships) as raw 32-bit
pixels in Qt's own format (``FRAME_PIX_FMT``), which converts them to yuv420p
and encodes H.264 with ``+faststart`` (see ``X264_OPTIONS``); then, when
there is an audio track or soft subtitles, it muxes them in a second ffmpeg
pass that pads or trims the audio to the video's exact length (``-shortest``
is not used: with a shorter audio track it ends the file early).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from PySide6.QtCore import QPoint, QRectF, Qt
from PySide6.QtGui import QImage, QPainter

from ..project.animatic import Animatic, AnimaticError, Segment, srt, subtitle_cues, timeline, total_frames
from ..project.model import Project
from ..resources_path import resource
from .page_render import decode_picture, to_qimage

Progress = Callable[[int, int, str], None]
#: Frames are drawn in Qt's own painting format (32 bits a pixel, 0xffRRGGBB), which QPainter draws into
#: fastest, and reach ffmpeg as they are: in memory the bytes are B, G, R, 255 on a little-endian machine.
FRAME_FORMAT = QImage.Format_RGB32
FRAME_PIX_FMT = "bgr0" if sys.byteorder == "little" else "0rgb"
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


def framed(image: QImage, box: tuple[float, float, float, float], size: tuple[int, int], fit: str) -> QImage:
    """The ``box`` part of ``image`` (0..1 coordinates) placed in a frame of ``size``: letterboxed or cropped.

    Drawn with Qt's smooth (bilinear) transform from a fractional source
    rectangle, so a slow camera move glides instead of stepping pixel by pixel.
    """
    w, h = size
    bx, by, bw, bh = box
    iw, ih = image.width(), image.height()
    src = QRectF(bx * iw, by * ih, bw * iw, bh * ih)
    out = QImage(w, h, FRAME_FORMAT)
    if fit == "crop":  # shrink the source box to the frame's shape, around its centre; it covers the frame,
        # so the frame is not cleared first
        target = QRectF(0, 0, w, h)
        if src.width() / src.height() > w / h:
            new = src.height() * w / h
            src = QRectF(src.center().x() - new / 2, src.y(), new, src.height())
        else:
            new = src.width() * h / w
            src = QRectF(src.x(), src.center().y() - new / 2, src.width(), new)
    else:
        out.fill(Qt.black)
        scale = min(w / src.width(), h / src.height())
        pw, ph = max(1, round(src.width() * scale)), max(1, round(src.height() * scale))
        target = QRectF((w - pw) // 2, (h - ph) // 2, pw, ph)
    painter = QPainter(out)
    painter.setRenderHint(QPainter.SmoothPixmapTransform, True)
    painter.drawImage(target, image, src)
    painter.end()
    return out


def to_pil(image: QImage) -> Image.Image:
    """A QImage as an RGB PIL picture (a copy)."""
    return Image.fromarray(frame_array(image))


def frame_array(image: QImage) -> np.ndarray:
    """A frame's pixels as a height x width x 3 array of bytes, red first (a copy)."""
    rgb = image if image.format() == QImage.Format_RGB888 else image.convertToFormat(QImage.Format_RGB888)
    rows = np.frombuffer(rgb.constBits(), np.uint8, count=rgb.sizeInBytes()).reshape(rgb.height(), rgb.bytesPerLine())
    return rows[:, : 3 * rgb.width()].reshape(rgb.height(), rgb.width(), 3).copy()


def frame_bytes(image: QImage) -> bytes | memoryview:
    """A frame's pixels as ffmpeg reads them (:data:`FRAME_PIX_FMT`), straight from the frame's memory."""
    if image.format() != FRAME_FORMAT:  # a frame of another format (not drawn by the renderer)
        image = image.convertToFormat(FRAME_FORMAT)
    return image.constBits()  # 32-bit rows are never padded


class AnimaticRenderer:
    """Every frame of a project's animatic, at the animatic's size or a smaller preview size.

    The preview player and the MP4 export both draw their frames with
    :meth:`frame`, so what plays in the window is what the file holds. Frames
    are QImages (:data:`FRAME_FORMAT`) painted with QPainter; a hold whose
    camera does not move is drawn once, and a transition's two keyframes once,
    so a still shot costs one frame's work however long it lasts.
    """

    def __init__(self, project: Project, animatic: Animatic | None = None, size: tuple[int, int] | None = None):
        self.project = project
        self.animatic = animatic or project.animatic
        self.size = size or self.animatic.resolution
        self.panels = {p.id: p for p in project.panels}
        self.numbers = {p.id: i for i, p in enumerate(project.panels, 1)}
        self.segments: list[Segment] = timeline(self.animatic, project.panels)
        self.frame_count = total_frames(self.segments)
        self._starts = [seg.first for seg in self.segments]
        self._pictures: dict[str, QImage] = {}
        self._captions: dict[str, tuple[QImage, QPoint] | None] = {}
        self._clips: dict[str, list[QImage]] = {}
        self._keyframes: dict[tuple[str, str], tuple[QImage, QImage]] = {}
        self._recent: OrderedDict[tuple, QImage] = OrderedDict()  # the last few hold frames drawn
        self.missing = [self.numbers[p.id] for p in project.panels if p.chosen_version is None]

    @property
    def seconds(self) -> float:
        return self.frame_count / self.animatic.fps

    def segment_at(self, index: int) -> Segment:
        if not 0 <= index < self.frame_count:
            raise IndexError(f"frame {index} is outside the animatic (0 to {self.frame_count - 1})")
        return self.segments[bisect_right(self._starts, index) - 1]

    def picture(self, panel_id: str) -> QImage:
        """The panel's chosen picture, or a slate saying it has none yet (never silently blank)."""
        if panel_id not in self._pictures:
            panel = self.panels[panel_id]
            version = panel.chosen_version
            data = self.project.images.get(version.image) if version else None
            image = decode_picture(data)
            if image.isNull():
                slate = Image.new("RGB", (960, 540), (38, 40, 46))
                draw = ImageDraw.Draw(slate)
                font = _caption_font(34)
                text = f"Panel {self.numbers[panel_id]}: no picture yet\n\n{panel.prompt}"
                y = 120
                for line in _wrap(draw, text, font, 820):
                    draw.text((70, y), line, font=font, fill=(220, 220, 225))
                    y += 44
                image = to_qimage(slate)
            elif image.format() not in (QImage.Format_RGB32, QImage.Format_ARGB32_Premultiplied):
                image = image.convertToFormat(QImage.Format_ARGB32_Premultiplied if image.hasAlphaChannel()
                                              else QImage.Format_RGB32)
            self._pictures[panel_id] = image
        return self._pictures[panel_id]

    def _caption(self, panel_id: str) -> tuple[QImage, QPoint] | None:
        """The panel's caption box as a small premultiplied image and where it goes, or None."""
        if not self.animatic.burn_captions or not self.animatic.shot(panel_id).caption:
            return None
        if panel_id not in self._captions:
            panel = self.panels[panel_id]
            text = "\n".join(t for t in (panel.caption.strip(), panel.dialogue.strip()) if t)
            layer = caption_overlay(text, self.size)
            box = layer.getchannel("A").getbbox()
            self._captions[panel_id] = None if box is None else (to_qimage(layer.crop(box)), QPoint(box[0], box[1]))
        return self._captions[panel_id]

    def hold_frame(self, panel_id: str, t: float, captions: bool = True) -> QImage:
        """The panel at ``t`` (0..1) of its hold: its camera move, and its caption."""
        box = self.animatic.shot(panel_id).camera.at(t)

        def draw() -> QImage:
            frame = framed(self.picture(panel_id), box, self.size, self.animatic.fit)
            overlay = self._caption(panel_id) if captions else None
            if overlay is not None:
                painter = QPainter(frame)
                painter.drawImage(overlay[1], overlay[0])
                painter.end()
            return frame
        return self._recent_frame((panel_id, tuple(round(v, 7) for v in box), captions), draw)

    def _recent_frame(self, key: tuple, draw: Callable[[], QImage]) -> QImage:
        """The frame drawn for ``key`` a moment ago (a still shot, a clip frame held), else a new one."""
        frame = self._recent.get(key)
        if frame is not None:
            self._recent.move_to_end(key)
            return frame
        frame = self._recent[key] = draw()
        if len(self._recent) > 4:
            self._recent.popitem(last=False)
        return frame

    def _clip(self, seg: Segment) -> list[QImage] | None:
        """A generated transition's pictures, decoded (at the size they were made), or None."""
        cut = seg.cut
        if cut is None or cut.kind != "generated" or not cut.clip_fits(seg.panel, seg.next_panel or ""):
            return None
        key = "|".join(cut.clip)
        if key not in self._clips:
            frames = []
            for name in cut.clip:
                data = self.project.images.get(name)
                image = decode_picture(data)
                if image.isNull():
                    return None
                frames.append(image)
            self._clips[key] = frames
        return self._clips[key]

    def frame(self, index: int) -> QImage:
        """Frame ``index`` of the animatic (:data:`FRAME_FORMAT`, the renderer's size). Do not paint on it: it
        may be shared."""
        seg = self.segment_at(index)
        local = index - seg.first
        t = local / (seg.frames - 1) if seg.frames > 1 else 0.0
        if seg.kind == "hold":
            return self.hold_frame(seg.panel, t)
        clip = self._clip(seg)
        if clip is not None:  # the generated frames, stretched over the transition's length
            k = min(len(clip) - 1, round(t * (len(clip) - 1)))
            return self._recent_frame(("clip", id(clip), k),
                                      lambda: framed(clip[k], (0.0, 0.0, 1.0, 1.0), self.size, "crop"))
        # a crossfade from the end of one camera move to the start of the next (captions stay in the holds)
        mix = (local + 0.5) / seg.frames
        before, after = self._transition(seg.panel, seg.next_panel or seg.panel)
        out = before.copy()
        painter = QPainter(out)
        painter.setOpacity(mix)
        painter.drawImage(0, 0, after)
        painter.end()
        return out

    def frame_array(self, index: int) -> np.ndarray:
        """Frame ``index`` as a height x width x 3 array of bytes (a copy)."""
        return frame_array(self.frame(index))

    def _transition(self, before: str, after: str) -> tuple[QImage, QImage]:
        key = (before, after)
        if key not in self._keyframes:
            self._keyframes[key] = (self.hold_frame(before, 1.0, captions=False).copy(),
                                    self.hold_frame(after, 0.0, captions=False).copy())
        return self._keyframes[key]

    def transition_keyframes(self, before: str, after: str) -> tuple[Image.Image, Image.Image]:
        """The two pictures a transition joins: the end of one panel's hold and the start of the next's."""
        a, b = self._transition(before, after)
        return to_pil(a), to_pil(b)


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
    warnings: list[str] = []
    if renderer.missing:
        warnings.append(f"panel(s) {', '.join(map(str, renderer.missing))} have no picture yet and show a slate.")
    stale = [seg for seg in renderer.segments if seg.kind == "transition" and seg.cut and seg.cut.kind == "generated"
             and not seg.cut.clip_fits(seg.panel, seg.next_panel or "")]
    if stale:
        warnings.append(f"{len(stale)} generated transition(s) are not made yet (or no longer fit) and play as "
                        "crossfades.")

    with tempfile.TemporaryDirectory(prefix="storystudio-mp4-", dir=target.parent) as tmp:
        video = Path(tmp) / "video.mp4"
        _encode(renderer, video, animatic, progress, cancel)
        final = video
        if animatic.audio or animatic.soft_subtitles:
            final = Path(tmp) / "muxed.mp4"
            _mux(video, final, renderer, animatic, project)
        part = target.with_name(target.name + ".part")
        try:
            os.replace(final, part)
            os.replace(part, target)
        except OSError as exc:
            raise VideoExportError(f"could not write {target} ({exc.strerror or exc}).") from None
        finally:  # a full disk, or Ctrl+C between the two moves: no .part is left behind
            part.unlink(missing_ok=True)
    return VideoResult(target, total, animatic.fps, total / animatic.fps, warnings)


#: How x264 encodes. The "superfast" preset made leaner still (no sub-pixel motion refinement, no
#: partitions, 8x8 transforms, B-frames, adaptive quantisation or weighted prediction): on two cores it
#: encodes 1080p as fast as "ultrafast" and keeps CABAC and the deblocking filter, so at the same
#: quality (CRF) its files are about a third smaller than ultrafast's, with the same SSIM as "veryfast"
#: (measured in docs/ANIMATIC.md with benchmarks/animatic_export.py).
X264_OPTIONS = ["-preset", "superfast",
                "-x264-params", "subme=0:partitions=none:8x8dct=0:bframes=0:aq-mode=0:weightp=0"]


def encoder_command(path: Path, size: tuple[int, int], fps: int, quality: int) -> list[str]:
    """ffmpeg reading raw frames (:data:`FRAME_PIX_FMT`) from its standard input and writing H.264 (yuv420p,
    +faststart)."""
    w, h = size
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", FRAME_PIX_FMT, "-s", f"{w}x{h}", "-r", str(fps), "-i", "pipe:0",
            "-an", "-c:v", "libx264", *X264_OPTIONS, "-crf", str(quality), "-pix_fmt", "yuv420p",
            "-movflags", "+faststart", str(path)]


#: How much a pipe to ffmpeg holds where the system lets us choose (Linux): a 1080p frame is 8 MB, and with
#: the default 64 KiB the two processes take turns about 130 times a frame, which costs system time on both
#: sides (piping 240 frames to ffmpeg alone: about 0.3 s of 8 s CPU less; docs/ANIMATIC.md).
PIPE_BYTES = 1 << 20


def widen_pipe(fd: int) -> int | None:
    """Make the pipe ``fd`` hold :data:`PIPE_BYTES`; returns its new size, or None where that cannot be set
    (not Linux, or a lower system limit: the default size works too, a little slower)."""
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setsize is None:  # not Linux
        return None
    try:
        return fcntl.fcntl(fd, setsize, PIPE_BYTES)
    except OSError:
        return None


def _encode(renderer: AnimaticRenderer, video: Path, animatic: Animatic, progress: Progress | None,
            cancel: Cancel | None) -> None:
    """Pipe every frame to ffmpeg straight from the frame's memory (a still frame is not drawn again)."""
    total = renderer.frame_count
    process = subprocess.Popen(encoder_command(video, renderer.size, animatic.fps, animatic.quality),
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stdin is not None and process.stderr is not None
    widen_pipe(process.stdin.fileno())
    try:
        for index in range(total):
            if cancel is not None and cancel():
                raise VideoExportCancelled
            process.stdin.write(frame_bytes(renderer.frame(index)))
            if progress is not None and (index % 8 == 0 or index == total - 1):
                progress(index + 1, total, f"frame {index + 1} of {total}")
        process.stdin.close()
        errors = process.stderr.read().decode("utf-8", "replace")
        if process.wait() != 0:
            raise VideoExportError(f"ffmpeg could not write the video ({_last_line(errors)}).")
    except BrokenPipeError:
        process.wait()
        errors = process.stderr.read().decode("utf-8", "replace")
        raise VideoExportError(f"ffmpeg stopped writing the video ({_last_line(errors)}).") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no reason given"


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
