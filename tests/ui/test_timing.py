"""Measured speeds, estimates and time left (pure)."""

from __future__ import annotations

import pytest

from storystudio.ui.timing import (
    SpeedTable,
    StepClock,
    estimate_text,
    human_duration,
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


def test_step_clock_measures_picture_steps_between_reports():
    clock = StepClock()
    clock.tick(4, 10.0)  # the time before the first report (warm-up, prompt encoding) is not counted
    assert clock.rate() is None
    clock.tick(6, 12.0)  # references and a panel batch report in turn: 2 picture-steps in 2 s
    clock.tick(6, 13.0)  # a report that moved nothing adds no time
    clock.tick(8, 15.0)
    assert clock.picture_steps == 4 and clock.rate() == pytest.approx((2 + 3) / 4)


def test_remaining_and_words():
    assert human_duration(3) == "a few seconds" and human_duration(42) == "about 40 s"
    assert human_duration(185) == "about 3 min" and human_duration(4300) == "about 1 h 12 min"
    assert "No time estimate yet" in estimate_text(8, 20, None, "CPU")
    table = SpeedTable({"CPU|sd15|512x512": 1.5})
    text = estimate_text(8, 20, table.lookup("CPU", "sd15", 512, 512), "CPU")
    assert text == "8 picture(s) × 20 steps: about 4 min on CPU"
    assert "roughly" in estimate_text(8, 20, table.lookup("CPU", "sd15", 768, 768), "CPU")
    assert estimate_text(0, 20, None, "CPU") == ""
