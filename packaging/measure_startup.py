"""Time from launch to the window: the pip install's ``storystudio`` against the bundle, side by side.

    python3 packaging/measure_startup.py --pip .venv/bin/storystudio --bundle dist/storystudio/storystudio --runs 7

Each run starts the program with STORYSTUDIO_SMOKE_TEST=1 and a fresh home folder, and stops the clock when
it prints that its window is shown (``run_app`` prints it from the event loop's first turn after
``show()``). The two programs take turns, so that whatever else the machine does falls on both alike.
With a DISPLAY (e.g. under Xvfb) the window is a real X11 one; without, Qt's offscreen platform is used.
Prints every run and the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time


def launch_seconds(program: str, timeout: float = 120) -> float:
    with tempfile.TemporaryDirectory(prefix="storystudio-startup-") as home:
        env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=f"{home}/.config", XDG_DATA_HOME=f"{home}/.local/share",
                   STORYSTUDIO_SMOKE_TEST="1")
        env.pop("STORYSTUDIO_DATA_DIR", None)
        if not env.get("DISPLAY"):
            env["QT_QPA_PLATFORM"] = "offscreen"
        started = time.perf_counter()
        child = subprocess.Popen([program], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
        try:
            for line in child.stdout:
                if line.startswith("StoryStudio window:"):
                    return time.perf_counter() - started
            raise SystemExit(f"{program} ended without opening its window (exit code {child.wait()}).")
        finally:
            child.wait(timeout)  # it closes itself once its worker has warmed up


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pip", required=True, help="the pip install's storystudio script")
    parser.add_argument("--bundle", required=True, help="the bundle's storystudio program")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"pip": [], "bundle": []}
    launch_seconds(args.pip), launch_seconds(args.bundle)  # one unmeasured run each: the disk cache
    for n in range(args.runs):
        for name, program in (("pip", args.pip), ("bundle", args.bundle)):
            times[name].append(launch_seconds(program))
        print(f"run {n + 1}: pip {times['pip'][-1]:.2f} s, bundle {times['bundle'][-1]:.2f} s", flush=True)
    pip, bundle = statistics.median(times["pip"]), statistics.median(times["bundle"])
    platform = "X11 (" + os.environ["DISPLAY"] + ")" if os.environ.get("DISPLAY") else "offscreen"
    print(f"launch to window, median of {args.runs} ({platform}): pip {pip:.2f} s, bundle {bundle:.2f} s, "
          f"bundle/pip {bundle / pip:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
