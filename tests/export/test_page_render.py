"""Lettering layout and the shared page painter."""

from __future__ import annotations

import math

import pytest
from PySide6.QtGui import QColor

from storystudio.export.page_render import (
    MIN_TEXT,
    RenderOptions,
    balloon_path,
    fit_text,
    page_region,
    panel_images,
    picture_placement,
    register_fonts,
    render_region,
)
from storystudio.project.layout import Balloon, Frame, Layout

LONG = ("We kept the light burning through the whole storm, and when the morning came the ships "
        "were safe in the harbour, every one of them.")


def inside_ellipse(balloon: Balloon, x: float, y: float) -> bool:
    a, b = balloon.w / 2, balloon.h / 2
    cx, cy = balloon.x + a, balloon.y + b
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0 + 1e-9


def test_bundled_fonts_are_registered(qt_gui):
    families = register_fonts()
    assert {"Comic Neue", "Bebas Neue", "Tomson Talks"} <= set(families)


def test_short_text_keeps_the_lettering_size(qt_gui):
    layout = Layout(font_size=9.0)
    fit = fit_text(Balloon("speech", 0, 0, 120, 60, text="Hello there!"), layout)
    assert fit.size == 9.0 and not fit.overflow
    assert [line for line, _ in fit.lines] == ["Hello there!"]


def test_long_text_wraps_inside_the_oval_and_shrinks(qt_gui):
    layout = Layout(font_size=9.0)
    balloon = Balloon("speech", 10, 20, 110, 70, text=LONG)
    fit = fit_text(balloon, layout)
    assert MIN_TEXT <= fit.size < 9.0 and not fit.overflow
    assert " ".join(line for line, _ in fit.lines).split() == LONG.split()  # every word, in order
    assert len(fit.lines) > 2
    for _, box in fit.lines:  # every line's box lies inside the ellipse
        for x, y in ((box.left(), box.top()), (box.right(), box.bottom()), (box.left(), box.bottom())):
            assert inside_ellipse(balloon, x, y)
    # a wider balloon needs fewer lines at a bigger size
    wide = fit_text(Balloon("speech", 10, 20, 260, 90, text=LONG), layout)
    assert wide.size > fit.size and len(wide.lines) < len(fit.lines)


def test_explicit_size_is_kept_and_overflow_reported(qt_gui):
    layout = Layout()
    fit = fit_text(Balloon("speech-box", 0, 0, 60, 30, text=LONG, size=12.0), layout)
    assert fit.size == 12.0 and fit.overflow
    assert " ".join(line for line, _ in fit.lines).split() == LONG.split()  # nothing is dropped


def test_sound_effects_grow_to_fill_their_box(qt_gui):
    small = fit_text(Balloon("sfx", 0, 0, 80, 30, text="BANG!"), Layout())
    big = fit_text(Balloon("sfx", 0, 0, 240, 90, text="BANG!"), Layout())
    assert small.size > Layout().font_size and big.size > 2.5 * small.size


def test_paragraphs_start_new_lines(qt_gui):
    fit = fit_text(Balloon("caption", 0, 0, 300, 60, text="Later.\nAt the lighthouse."), Layout())
    assert [line for line, _ in fit.lines] == ["Later.", "At the lighthouse."]


def test_balloon_tail_reaches_its_point(qt_gui):
    balloon = Balloon("speech", 100, 100, 80, 40, text="Hi", tail=(200, 220))
    path = balloon_path(balloon)
    bounds = path.boundingRect()
    assert bounds.bottom() == pytest.approx(220, abs=1.5) and bounds.right() == pytest.approx(200, abs=1.5)
    no_tail = balloon_path(Balloon("speech", 100, 100, 80, 40, text="Hi"))
    assert no_tail.boundingRect().bottom() == pytest.approx(140, abs=0.5)
    thought = balloon_path(Balloon("thought", 100, 100, 80, 40, tail=(100, 200)))
    assert thought.boundingRect().bottom() > 180  # the bubbles lead towards the point


@pytest.mark.parametrize(("fit", "zoom", "pan"), [("cover", 1.0, (0, 0)), ("contain", 1.0, (0, 0)),
                                                  ("cover", 2.0, (1, -1))])
def test_picture_placement(fit, zoom, pan):
    frame = Frame.rect(0, 0, 200, 100, fit=fit, zoom=zoom, pan=pan)
    placed = picture_placement(frame, 400, 400)  # a square picture in a 2:1 frame
    if fit == "cover" and zoom == 1.0:
        assert (placed.width(), placed.height()) == (200, 200) and placed.top() == -50
    elif fit == "contain":
        assert (placed.width(), placed.height()) == (100, 100) and placed.left() == 50
    else:  # zoomed in twice and panned to the left edge and the bottom
        assert placed.width() == 400 and placed.left() == 0 and placed.bottom() == pytest.approx(100)


def test_rendered_page_shows_each_panel_in_its_frame(comic):
    layout = comic.layout
    page = layout.pages[0]
    images = panel_images(comic)
    dpi = 50
    image = render_region(layout, page, images, page_region(layout, page), dpi)
    assert (image.width(), image.height()) == (round(477 * dpi / 72), round(738 * dpi / 72))
    assert math.isclose(image.dotsPerMeterX() * 0.0254, dpi, rel_tol=0.01)
    for frame in page.frames:
        b = frame.bounds
        # a point low in the frame (lettering sits at the top) shows the panel's flat colour
        x, y = (b.x + b.w * 0.5) * dpi / 72, (b.y + b.h * 0.85) * dpi / 72
        colour = images[frame.panel].pixelColor(0, 0)
        assert image.pixelColor(round(x), round(y)) == colour
    # the gutter between the first two frames is paper
    first, second = page.frames[0].bounds, page.frames[1].bounds
    gy = (first.bottom + second.y) / 2 * dpi / 72
    assert image.pixelColor(round(image.width() / 2), round(gy)) == QColor(255, 255, 255)


def test_canvas_options_label_empty_frames_and_exports_do_not(comic):
    layout = comic.layout
    page = layout.pages[0]
    region = page_region(layout, page)
    frame = page.frames[0].bounds
    export = render_region(layout, page, {}, region, 40)
    canvas = render_region(layout, page, {}, region, 40, RenderOptions(placeholders=True))
    centre = (round((frame.x + frame.w / 2) * 40 / 72), round((frame.y + frame.h * 0.8) * 40 / 72))
    assert export.pixelColor(*centre) == QColor(255, 255, 255)
    assert canvas.pixelColor(*centre) != QColor(255, 255, 255)


def test_panel_images_reuses_what_a_cache_holds(comic):
    decoded = {}
    first = panel_images(comic, decoded)
    assert set(decoded) == {p.chosen_version.image for p in comic.panels}
    again = panel_images(comic, decoded)
    assert all(again[pid] is first[pid] for pid in first)  # not decoded a second time
    comic.panels[0].chosen = None
    panel_images(comic, decoded)
    assert comic.panels[0].versions[0].image not in decoded  # only pictures in use are kept
