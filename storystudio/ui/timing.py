"""How long drawing takes on this computer (no Qt): measured speeds, estimates, time left.

A job's speed is measured from its own progress: the time between two
progress reports, divided by the picture-steps done between them, is the
seconds one picture needs for one step. That figure is kept per device,
model family (sd15, sdxl) and picture size, in the preferences; an estimate
for another size of the same device and family scales it by the pixel count
(and says it is rougher). Without any figure there is no estimate, and the app
says so instead of guessing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: How much a new measurement counts against what was measured before (speeds drift with drivers, heat).
NEW_WEIGHT = 0.5


def speed_key(device: str, arch: str, width: int, height: int) -> str:
    return f"{device}|{arch}|{int(width)}x{int(height)}"


def _parse(key: str) -> tuple[str, str, int, int] | None:
    try:
        device, arch, size = key.rsplit("|", 2)
        w, h = size.split("x")
        return device, arch, int(w), int(h)
    except ValueError:
        return None


@dataclass(frozen=True)
class Speed:
    seconds_per_step: float  # one picture, one denoising step
    exact: bool  # measured at this very size (False: scaled from another size)


class SpeedTable:
    """Measured seconds per picture-step, by ``speed_key``; a plain dict, so it lives in the preferences."""

    def __init__(self, data: dict | None = None):
        self.data: dict[str, float] = {}
        for key, value in (data or {}).items():
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                continue
            if seconds > 0 and math.isfinite(seconds) and _parse(str(key)):
                self.data[str(key)] = seconds

    def record(self, device: str, arch: str, width: int, height: int, seconds: float) -> float:
        key = speed_key(device, arch, width, height)
        old = self.data.get(key)
        value = seconds if old is None else (1 - NEW_WEIGHT) * old + NEW_WEIGHT * seconds
        self.data[key] = value
        return value

    def lookup(self, device: str, arch: str, width: int, height: int) -> Speed | None:
        exact = self.data.get(speed_key(device, arch, width, height))
        if exact is not None:
            return Speed(exact, True)
        pixels = width * height
        nearest = None
        for key, seconds in self.data.items():
            parsed = _parse(key)
            if parsed is None or parsed[:2] != (device, arch):
                continue
            distance = abs(math.log(parsed[2] * parsed[3] / pixels))
            if nearest is None or distance < nearest[0]:
                nearest = (distance, seconds * pixels / (parsed[2] * parsed[3]))
        return Speed(nearest[1], False) if nearest else None


class StepClock:
    """Measures one job's seconds per picture-step from its progress reports.

    Each report says how many picture-steps of the whole job are done; a story's references and
    panel batches advance together, so reports of different batches interleave. The time before
    the first report (model warm-up, prompt encoding) is not counted; a report that moved
    nothing leaves its time to the next one that does.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.picture_steps = 0
        self._last: tuple[int, float] | None = None

    def tick(self, work_done: int, now: float) -> None:
        if self._last is not None:
            last_done, last_time = self._last
            if work_done <= last_done:  # nothing moved: its time counts with the next step that does
                return
            if now > last_time:
                self.seconds += now - last_time
                self.picture_steps += work_done - last_done
        self._last = (work_done, now)

    def rate(self, minimum_steps: int = 2) -> float | None:
        if self.picture_steps < minimum_steps or self.seconds <= 0:
            return None
        return self.seconds / self.picture_steps


def human_duration(seconds: float) -> str:
    """'under a minute', 'about 40 s', 'about 3 min', 'about 1 h 10 min'."""
    s = max(0, round(seconds))
    if s < 5:
        return "a few seconds"
    if s < 60:
        return f"about {int(round(s, -1)) if s >= 15 else s} s"
    minutes = round(s / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60} min" if minutes % 60 else f"about {minutes // 60} h"


def estimate_text(pictures: int, steps: int, speed: Speed | None, device: str) -> str:
    """What the app says before a job of ``pictures`` pictures starts."""
    if pictures <= 0:
        return ""
    if speed is None:
        return ("No time estimate yet: the first pictures measure how fast this computer draws "
                "(later jobs get an estimate).")
    rough = "" if speed.exact else ", roughly: measured at another size"
    return (f"{pictures} picture(s) × {steps} steps: {human_duration(pictures * steps * speed.seconds_per_step)} "
            f"on {device}{rough}")
