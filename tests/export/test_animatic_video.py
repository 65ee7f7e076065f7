"""The animatic renderer and the MP4 export, read back with ffmpeg."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import wave

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from helpers import flat_png
from storystudio.export import animatic
from storystudio.export.animatic import (
    AnimaticRenderer,
    VideoExportCancelled,
    VideoExportError,
    export_mp4,
    ffmpeg_exe,
    frame_array,
    framed,
    read_back,
)
from storystudio.project.animatic import Animatic, AnimaticError, CameraMove, Cut, Shot
from storystudio.project.model import Project

RED, GREEN, BLUE = (200, 30, 30), (30, 160, 60), (40, 70, 210)


def gradient_png() -> bytes:
    """A picture whose every part differs, so a camera move shows in the frames."""
    x = np.linspace(0, 255, 240)
    gx, gy = np.meshgrid(x, x)
    rgb = np.stack([gx, gy, np.full((240, 240), 90.0)], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def project() -> Project:
    project = Project.example()
    project.panels = project.panels[:3]
    for panel in project.panels:
        panel.dialogue = ""  # the caption box alone: these tests look above it
    project.add_version(project.panels[0].id, gradient_png(), {})
    for panel, colour in zip(project.panels[1:], (GREEN, BLUE)):
        project.add_version(panel.id, flat_png(colour), {})
    for panel in project.panels:
        panel.duration = 1.0
    a = project.animatic
    a.size, a.fps = "1280x720", 12
    a.shots[project.panels[0].id] = Shot(CameraMove.preset("zoom-in", "ease-in-out"))
    return project


def tone(path, seconds: float) -> str:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        samples = (np.sin(np.arange(int(16000 * seconds)) * 0.05) * 8000).astype(np.int16)
        out.writeframes(samples.tobytes())
    return str(path)


def decoded_seconds(path, stream: str) -> float:
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", stream, "-f", "null", "-"],
                            capture_output=True, text=True)
    h, m, s = re.findall(r"time=(\d+):(\d+):([\d.]+)", result.stderr)[-1]
    return int(h) * 3600 + int(m) * 60 + float(s)


def decoded_frames(path) -> list[np.ndarray]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return [np.frombuffer(f, np.uint8).reshape(h, w, 3).astype(np.int16) for f in reader]


def test_mp4_length_size_rate_audio_and_subtitles(project, tmp_path):
    project.animatic.audio = tone(tmp_path / "short.wav", 1.5)  # shorter than the pictures: padded
    project.animatic.soft_subtitles = True
    result = export_mp4(project, tmp_path / "a.mp4")
    info = read_back(tmp_path / "a.mp4")
    expected_frames = round((3 * 1.0 + 2 * 0.5) * 12)  # three holds and two half-second crossfades
    assert result.frames == info["frames"] == expected_frames
    assert info["size"] == (1280, 720) and info["fps"] == 12 and info["seconds"] == pytest.approx(4.0)
    assert info["h264"] and info["yuv420p"] and info["audio"] and info["subtitles"]
    assert decoded_seconds(tmp_path / "a.mp4", "0:a") == pytest.approx(4.0, abs=0.05)  # padded to the video
    subs = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(tmp_path / "a.mp4"), "-map", "0:s", "-f", "srt",
                           "-"], capture_output=True, text=True).stdout
    assert project.panels[0].caption in subs and "00:00:00,000 --> 00:00:01,000" in subs
    with open(tmp_path / "a.mp4", "rb") as handle:  # +faststart: the index (moov) comes before the data (mdat)
        head = handle.read(4096)
    assert b"moov" in head
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "short.wav"]


def test_long_audio_is_cut_to_the_video(project, tmp_path):
    project.animatic.audio = tone(tmp_path / "long.wav", 9.0)
    export_mp4(project, tmp_path / "a.mp4")
    assert decoded_seconds(tmp_path / "a.mp4", "0:a") == pytest.approx(4.0, abs=0.05)


def test_frames_decode_to_the_panels_and_the_crossfade_blend(project, tmp_path):
    project.animatic.burn_captions = False
    export_mp4(project, tmp_path / "a.mp4")
    frames = decoded_frames(tmp_path / "a.mp4")
    # the second hold (frames 18 to 29) is the flat green panel, letterboxed between black bars
    assert np.abs(frames[24][360, 640] - GREEN).max() <= 6
    assert np.abs(frames[24][360, 20]).max() <= 6
    # the crossfade from green to blue (frames 30 to 35): its middle is half of each
    middle = (frames[32][360, 640] + frames[33][360, 640]) / 2
    assert np.abs(middle - (np.array(GREEN) + BLUE) / 2).max() <= 8


def test_camera_move_frames_follow_the_eased_rectangles(project):
    renderer = AnimaticRenderer(project, size=(320, 180))
    first = renderer.segments[0]
    picture = renderer.picture(project.panels[0].id)
    move = project.animatic.shot(project.panels[0].id).camera
    frames = [renderer.frame_array(first.first + k).astype(np.int16) for k in range(first.frames)]
    for k in (0, 3, first.frames - 1):
        t = k / (first.frames - 1)
        expected = framed(picture, move.at(t), (320, 180), "letterbox")
        without_caption = frame_array(expected).astype(np.int16)[:100]  # the caption sits at the bottom
        assert np.abs(frames[k][:100] - without_caption).max() <= 1
    moved = np.abs(frames[0][:100, 60:260] - frames[-1][:100, 60:260])  # inside the picture, above the caption
    assert moved.mean() > 5  # it really moves
    # eased: the first steps move less than the middle ones
    steps = [np.abs(frames[k + 1][:100] - frames[k][:100]).mean() for k in range(first.frames - 1)]
    assert steps[0] < steps[len(steps) // 2]


def test_generated_clip_plays_in_its_transition(project):
    a, b = project.panels[0].id, project.panels[1].id
    clip = [project.add_image(flat_png(c)) for c in ((250, 250, 0), (0, 250, 250))]
    project.animatic.cuts[a] = Cut("generated", 1.0, clip, (a, b))
    renderer = AnimaticRenderer(project, size=(320, 180))
    seg = renderer.segments[1]
    assert seg.kind == "transition" and seg.frames == 12
    assert tuple(renderer.frame_array(seg.first)[90, 160]) == (250, 250, 0)
    assert tuple(renderer.frame_array(seg.last)[90, 160]) == (0, 250, 250)
    # after a reorder the clip no longer joins these panels: a crossfade plays instead
    project.panels[1], project.panels[2] = project.panels[2], project.panels[1]
    renderer = AnimaticRenderer(project, size=(320, 180))
    assert tuple(renderer.frame_array(renderer.segments[1].first)[90, 160]) != (250, 250, 0)


def test_panel_without_picture_shows_a_slate_and_is_reported(project, tmp_path):
    project.panels[1].chosen = None
    result = export_mp4(project, tmp_path / "a.mp4")
    assert result.warnings == ["panel(s) 2 have no picture yet and show a slate."]


def test_bad_inputs_get_plain_errors_and_write_nothing(project, tmp_path):
    (tmp_path / "noise.mp3").write_text("not sound at all")
    project.animatic.audio = str(tmp_path / "noise.mp3")
    with pytest.raises(VideoExportError, match="noise.mp3 cannot be read as sound"):
        export_mp4(project, tmp_path / "a.mp4")
    project.animatic.audio = str(tmp_path / "missing.wav")
    with pytest.raises(VideoExportError, match="does not exist"):
        export_mp4(project, tmp_path / "a.mp4")
    project.animatic.audio = None
    project.panels[1].duration = 0.0
    with pytest.raises(VideoExportError, match="panel 2 lasts 0 s"):
        export_mp4(project, tmp_path / "a.mp4")
    with pytest.raises(AnimaticError, match="video size '1281x721'"):
        Animatic.from_dict({"size": "1281x721"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise.mp3"]


def test_cancel_mid_export_leaves_nothing(project, tmp_path):
    seen = []
    with pytest.raises(VideoExportCancelled):
        export_mp4(project, tmp_path / "a.mp4", progress=lambda done, total, what: seen.append(done),
                   cancel=lambda: len(seen) >= 2)
    assert seen and seen[-1] < 48
    assert list(tmp_path.iterdir()) == []


def test_every_frame_of_the_mp4_is_the_frame_the_renderer_draws(project, tmp_path):
    """Read back frame by frame: each decoded frame matches the renderer's (H.264 loses a little), in order."""
    project.animatic.shots[project.panels[1].id] = Shot(CameraMove.preset("pan-right"))
    result = export_mp4(project, tmp_path / "a.mp4")
    frames = decoded_frames(tmp_path / "a.mp4")
    renderer = AnimaticRenderer(project)
    assert len(frames) == result.frames == renderer.frame_count
    errors = []
    for index, decoded in enumerate(frames):
        drawn = renderer.frame_array(index).astype(np.int16)
        errors.append(np.abs(decoded - drawn).mean())
    assert max(errors) < 2.5, max(errors)
    # where one drawn frame differs from the next, the decoded frame is its own, not its neighbour
    drawn = [renderer.frame_array(i).astype(np.int16) for i in range(len(frames))]
    changing = [i for i in range(len(frames) - 1) if np.abs(drawn[i] - drawn[i + 1]).mean() > 4]
    assert len(changing) >= 10  # the zoom, the pan and the crossfades
    for i in changing:
        assert errors[i] < np.abs(frames[i] - drawn[i + 1]).mean() / 2
    # the picture is there: the middle of the green panel's hold is green
    green = next(seg for seg in renderer.segments if seg.kind == "hold" and seg.panel == project.panels[1].id)
    assert np.abs(frames[green.first + 6][200, 640] - GREEN).max() <= 8


def test_still_shots_are_drawn_once(project, monkeypatch):
    from storystudio.export import animatic as module

    drawn = []
    real = module.framed
    monkeypatch.setattr(module, "framed", lambda *a, **k: drawn.append(1) or real(*a, **k))
    project.animatic.shots.clear()  # every panel still: three holds, two crossfades
    renderer = AnimaticRenderer(project, size=(320, 180))
    for index in range(renderer.frame_count):
        renderer.frame(index)
    assert renderer.frame_count == 48 and len(drawn) <= 3 + 2 * 2  # each hold once, each crossfade's two ends once


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pipe sizes are set on Linux only")
def test_the_pipe_to_ffmpeg_holds_a_megabyte(project, tmp_path, monkeypatch):
    """A 1080p frame is 8 MB: a wider pipe saves the two processes many turns (docs/ANIMATIC.md)."""
    import fcntl

    read, write = os.pipe()
    try:
        assert animatic.widen_pipe(write) >= animatic.PIPE_BYTES
        assert fcntl.fcntl(write, fcntl.F_GETPIPE_SZ) >= animatic.PIPE_BYTES
    finally:
        os.close(read)
        os.close(write)
    widened = []
    real = animatic.widen_pipe
    monkeypatch.setattr(animatic, "widen_pipe", lambda fd: widened.append(fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ))
                        or real(fd))
    export_mp4(project, tmp_path / "a.mp4")
    assert widened and (tmp_path / "a.mp4").stat().st_size > 0  # the export's own pipe, before it was widened
