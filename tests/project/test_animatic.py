"""Animatic timing, camera moves and subtitles (pure data)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from storystudio.project.animatic import (
    FULL,
    Animatic,
    AnimaticError,
    CameraMove,
    Cut,
    Shot,
    auto_duration,
    ease,
    srt,
    subtitle_cues,
    timeline,
    total_frames,
)


def panels(*durations, caption="", dialogue=""):
    return [SimpleNamespace(id=f"p{i}", caption=caption, dialogue=dialogue, duration=d)
            for i, d in enumerate(durations)]


def test_duration_follows_the_words():
    assert auto_duration(SimpleNamespace(caption="", dialogue="")) == 2.0
    long = SimpleNamespace(caption=" ".join(["word"] * 21), dialogue="")
    assert auto_duration(long) == pytest.approx(1.5 + 7.0)
    assert auto_duration(SimpleNamespace(caption="w " * 200, dialogue="")) == 10.0


@pytest.mark.parametrize("fps", [12, 24, 30])
def test_length_is_the_sum_of_holds_and_transitions_to_the_frame(fps):
    story = panels(1.37, 2.0, 0.77, 3.3)
    animatic = Animatic(fps=fps)
    animatic.cuts["p0"] = Cut("crossfade", 0.41)
    animatic.cuts["p1"] = Cut("cut")
    animatic.cuts["p2"] = Cut("generated", 0.66)
    segments = timeline(animatic, story)
    seconds = 1.37 + 2.0 + 0.77 + 3.3 + 0.41 + 0.66
    assert total_frames(segments) == round(seconds * fps)
    assert [s.kind for s in segments] == ["hold", "transition", "hold", "hold", "transition", "hold"]
    for a, b in zip(segments, segments[1:]):  # back to back, no gaps or overlaps
        assert b.first == a.first + a.frames
    assert segments[1].panel == "p0" and segments[1].next_panel == "p1" and segments[1].cut.kind == "crossfade"


def test_auto_and_default_cuts():
    story = panels(None, None, caption="A short caption here.")
    segments = timeline(Animatic(fps=24), story)
    # default cut is a half-second crossfade
    assert [s.frames for s in segments] == [round(auto_duration(story[0]) * 24), 12, round(auto_duration(story[1]) * 24)]


def test_bad_timings_are_refused_in_plain_words():
    with pytest.raises(AnimaticError, match="panel 2 lasts 0 s"):
        timeline(Animatic(), panels(2.0, 0.0))
    with pytest.raises(AnimaticError, match="no panels"):
        timeline(Animatic(), [])
    with pytest.raises(AnimaticError, match="up to 10 minutes"):
        timeline(Animatic(), panels(*[10.0] * 61))


def test_camera_move_interpolates_with_easing():
    move = CameraMove(FULL, (0.2, 0.2, 0.6, 0.6), "linear")
    assert move.at(0) == FULL and move.at(1) == pytest.approx((0.2, 0.2, 0.6, 0.6))
    assert move.at(0.5) == pytest.approx((0.1, 0.1, 0.8, 0.8))
    eased = CameraMove(FULL, (0.2, 0.2, 0.6, 0.6), "ease-in-out")
    assert eased.at(0.25)[0] < move.at(0.25)[0]  # slower at the start
    assert eased.at(0.5) == pytest.approx(move.at(0.5))
    assert ease("ease-in", 0.5) == 0.25 and ease("ease-out", 0.5) == 0.75
    assert CameraMove.preset("zoom-in").preset_name == "zoom-in"
    assert CameraMove((0, 0, 0.5, 0.5), FULL).preset_name == "custom"


def test_subtitles_follow_the_holds():
    story = panels(2.0, 3.0, caption="Night fell.", dialogue="Who's there?")
    animatic = Animatic(fps=24)
    animatic.shots["p1"] = Shot(caption=False)
    segments = timeline(animatic, story)
    cues = subtitle_cues(animatic, story, segments)
    assert cues == [(0.0, 2.0, "Night fell.\nWho's there?")]
    assert srt(cues) == "1\n00:00:00,000 --> 00:00:02,000\nNight fell.\nWho's there?\n"


def test_round_trip_and_errors():
    animatic = Animatic(fps=30, size="1080x1080", fit="crop", audio="/a.ogg", soft_subtitles=True, quality=23)
    animatic.shots["x"] = Shot(CameraMove.preset("pan-left", "linear"), caption=False)
    animatic.cuts["x"] = Cut("generated", 1.25, ["img-a.png"], ("x", "y"), {"seed": 3})
    assert Animatic.from_dict(animatic.to_dict()) == animatic
    assert Animatic.from_dict({}) == Animatic()
    for bad, message in (({"fps": 25}, "frame rate 25"), ({"size": "640x480"}, "video size"),
                         ({"cuts": {"x": {"kind": "wipe"}}}, "unknown kind 'wipe'"),
                         ({"shots": {"x": {"camera": {"start": [0, 0, 2, 1]}}}}, "does not lie inside"),
                         ({"quality": 99}, "quality 99")):
        with pytest.raises(AnimaticError, match=message):
            Animatic.from_dict(bad)
