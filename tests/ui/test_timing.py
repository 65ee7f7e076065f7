"""Measured speeds, estimates and time left (pure)."""

from __future__ import annotations

import pytest

from storystudio.ui.timing import (
    SpeedTable,
    StepClock,
    estimate_text,
    human_duration,
    remaining_picture_steps,
    speed_key,
)


def test_speed_table_measures_blends_and_scales():
    table = SpeedTable({"CPU|sd15|512x512": 2.0, "junk": "x", "CPU|sd15|64x64": -1})
    assert table.data == {"CPU|sd15|512x512": 2.0}  # unreadable entries are dropped
    assert table.lookup("CPU", "sd15", 512, 512).exact
    rough = table.lookup("CPU", "sd15", 1024, 512)
    assert not rough.exact and rough.seconds_per_step == pytest.approx(4.0)  # twice the pixels
    assert table.lookup("CPU", "sdxl", 512, 512) is None and table.lookup("GPU", "sd15", 512, 512) is None
    assert table.record("CPU", "sd15", 512, 512, 4.0) == pytest.approx(3.0)  # blended with the old figure
    assert SpeedTable(table.data).lookup("CPU", "sd15", 512, 512).seconds_per_step == pytest.approx(3.0)
    assert speed_key("CPU", "sd15", 512, 512) == "CPU|sd15|512x512"


def test_step_clock_counts_steps_inside_a_batch_only():
    clock = StepClock()
    clock.tick(["a", "b"], 1, 10.0)  # the first step of a batch holds its prompt encoding: not counted
    assert clock.rate() is None
    clock.tick(["a", "b"], 2, 12.0)
    clock.tick(["a", "b"], 3, 14.0)
    clock.tick(["c"], 1, 30.0)  # a new batch: the gap (decoding, the next encoding) is not a step
    assert clock.rate() == pytest.approx(1.0)  # 4 s for 2 steps of 2 pictures


def test_remaining_and_words():
    assert remaining_picture_steps(done=2, total=5, batch=2, step=3, steps=10) == 7 * 2 + 1 * 10
    assert remaining_picture_steps(5, 5, 0, 0, 10) == 0
    assert human_duration(3) == "a few seconds" and human_duration(42) == "about 40 s"
    assert human_duration(185) == "about 3 min" and human_duration(4300) == "about 1 h 12 min"
    assert "No time estimate yet" in estimate_text(8, 20, None, "CPU")
    table = SpeedTable({"CPU|sd15|512x512": 1.5})
    text = estimate_text(8, 20, table.lookup("CPU", "sd15", 512, 512), "CPU")
    assert text == "8 picture(s) × 20 steps: about 4 min on CPU"
    assert "roughly" in estimate_text(8, 20, table.lookup("CPU", "sd15", 768, 768), "CPU")
    assert estimate_text(0, 20, None, "CPU") == ""
