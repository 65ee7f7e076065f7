"""How fast the animatic exports to MP4, against real time.

Builds the example story (8 panels, its captions and dialogue) with textured
stand-in pictures (smooth noise and gradients at 768 x 768: like painted
pictures, they cost the H.264 encoder real work), then exports it with
``export_mp4`` at the chosen size and frame rate, once with the animatic as a
new project has it (still shots, half-second crossfades) and once with a
camera move on every panel (every frame differs). For each run it prints the
frames, the video's length, the wall time, the CPU time of this process (the
frames are drawn here) and of ffmpeg (colour conversion and H.264), and the
speed as a multiple of real time.

On a machine shared with other work the wall time says little; the CPU times
say what the export costs. ``idle estimate`` is the wall time the same CPU
work needs on two otherwise idle cores: the larger of the drawing process's
CPU time and half of all CPU time.

    python benchmarks/animatic_export.py                       # 1920x1080, 24 fps, both cases
    python benchmarks/animatic_export.py --size 1280x720 --cases moves --repeat 3
    python benchmarks/animatic_export.py --json benchmarks/results/animatic_export.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from storystudio.export import animatic as animatic_export
from storystudio.export.animatic import export_mp4, read_back
from storystudio.project.animatic import SIZE_PRESETS, CameraMove, Shot
from storystudio.project.model import Project

MOVES = ["zoom-in", "pan-right", "zoom-out", "pan-left", "zoom-in", "pan-down", "zoom-out", "pan-up"]


def stand_in_picture(seed: int, size: int = 768) -> bytes:
    """A textured picture: a colour gradient under blurred noise at a few scales (PNG bytes)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([120 + 100 * x, 90 + 120 * y, 160 - 80 * x * y], axis=-1)
    for scale, amount in ((96, 60.0), (24, 30.0), (4, 12.0)):
        noise = Image.fromarray(rng.integers(0, 255, (size // scale + 2, size // scale + 2), dtype=np.uint8))
        noise = noise.resize((size, size), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(1))
        base += (np.asarray(noise, dtype=np.float64)[..., None] - 128) / 128 * amount * rng.uniform(0.6, 1.0, 3)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def project(case: str, size: str, fps: int) -> Project:
    p = Project.example()
    for i, panel in enumerate(p.panels):
        p.add_version(panel.id, stand_in_picture(i), {"stand-in": True})
    p.animatic.size, p.animatic.fps = size, fps
    if case == "moves":
        for panel, move in zip(p.panels, MOVES):
            p.animatic.shots[panel.id] = Shot(CameraMove.preset(move))
    return p


def cpu_times() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def run(case: str, size: str, fps: int, folder: Path) -> dict:
    p = project(case, size, fps)
    target = folder / f"{case}.mp4"
    load = os.getloadavg()[0]
    own0, kids0 = cpu_times()
    start = time.perf_counter()
    result = export_mp4(p, target)
    wall = time.perf_counter() - start
    own1, kids1 = cpu_times()
    own, kids = own1 - own0, kids1 - kids0
    info = read_back(target)
    assert info["frames"] == result.frames, (info, result)
    idle = max(own, (own + kids) / 2)
    return {"case": case, "size": size, "fps": fps, "frames": result.frames, "video_s": round(result.seconds, 2),
            "wall_s": round(wall, 2), "x_real_time": round(result.seconds / wall, 2),
            "draw_cpu_s": round(own, 2), "ffmpeg_cpu_s": round(kids, 2),
            "idle_estimate_s": round(idle, 2), "x_real_time_idle_estimate": round(result.seconds / idle, 2),
            "load_before": round(load, 2), "mb": round(target.stat().st_size / 1e6, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1920x1080", choices=list(SIZE_PRESETS))
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--cases", default="default,moves")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--encoders", default="export", help="x264 settings to compare, comma-separated: export "
                        "(the export's own X264_OPTIONS), or an x264 preset name (medium, veryfast, ultrafast...)")
    parser.add_argument("--json", type=Path, help="also write the runs to this JSON file")
    args = parser.parse_args(argv)
    own = getattr(animatic_export, "X264_OPTIONS", None)  # absent before the export had its own settings
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    runs = []
    with tempfile.TemporaryDirectory(prefix="storystudio-bench-") as tmp:
        for _ in range(args.repeat):
            for case in args.cases.split(","):
                for preset in args.encoders.split(","):
                    if own is not None:
                        animatic_export.X264_OPTIONS = own if preset == "export" else ["-preset", preset]
                    row = {**run(case, args.size, args.fps, Path(tmp)), "encoder": preset}
                    runs.append(row)
                    print(f"{row['case']:8s} {preset:9s} {row['size']} {row['fps']} fps: {row['frames']} frames, "
                          f"{row['video_s']} s of video in {row['wall_s']} s wall = {row['x_real_time']}x real time; "
                          f"CPU: drawing {row['draw_cpu_s']} s, ffmpeg {row['ffmpeg_cpu_s']} s; idle estimate "
                          f"{row['idle_estimate_s']} s = {row['x_real_time_idle_estimate']}x; load before "
                          f"{row['load_before']}; {row['mb']} MB", flush=True)
    if args.repeat > 1:
        for case in args.cases.split(","):
            for preset in args.encoders.split(","):
                rows = [r for r in runs if r["case"] == case and r["encoder"] == preset]
                print(f"{case:8s} {preset:9s} median of {len(rows)}: {statistics.median(r['x_real_time'] for r in rows)}x "
                      f"wall, {statistics.median(r['x_real_time_idle_estimate'] for r in rows)}x idle estimate")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                                                     "platform": platform.platform()}, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
