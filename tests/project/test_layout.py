"""Page geometry, templates, auto-layout and lettering placement (pure data, no drawing)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from storystudio.project import limits
from storystudio.project.layout import (
    INCH,
    MM,
    PAGE_SIZES,
    TEMPLATES,
    WEBTOON_SPACING,
    Balloon,
    Frame,
    Layout,
    LayoutError,
    Page,
    apply_template,
    auto_layout,
    generation_size,
    printed_pages,
    reading_order,
    remove_panel_everywhere,
    resolve_words,
    split_counts,
    strip_height,
    template_frames,
    words_of,
)


def panels(n: int, caption: str = "", dialogue: str = "") -> list[SimpleNamespace]:
    return [SimpleNamespace(id=f"p{i}", caption=caption, dialogue=dialogue) for i in range(n)]


def page_for(layout: Layout, template_id: str) -> Page:
    page = Page(template=template_id, spread=TEMPLATES[template_id].spread)
    page.frames = template_frames(layout, TEMPLATES[template_id], page)
    return page


def test_us_comic_page_has_print_dimensions():
    size = PAGE_SIZES["us-comic"]
    assert (size.width, size.height) == (477.0, 738.0)  # 6.625 x 10.25 in
    assert size.bleed == 9.0 and size.dpi == 300
    layout = Layout()
    page = Page()
    bleed = layout.bleed_rect(page)
    assert (bleed.x, bleed.y, bleed.w, bleed.h) == (-9.0, -9.0, 495.0, 756.0)
    safe = layout.safe_rect(page)
    assert safe.x == pytest.approx(0.375 * INCH) and safe.right == pytest.approx(477 - 0.375 * INCH)
    assert PAGE_SIZES["manga-b5"].width == pytest.approx(182 * MM)
    assert PAGE_SIZES["a4"].height == pytest.approx(297 * MM)
    assert "6.625 x 10.25 in" in size.describe() and "182 x 257 mm" in PAGE_SIZES["manga-b5"].describe()


@pytest.mark.parametrize("template_id", [t for t in TEMPLATES if not TEMPLATES[t].strip])
def test_templates_keep_gutters_and_margins(template_id):
    layout = Layout(gutter=10.0, margin=20.0)
    page = page_for(layout, template_id)
    template = TEMPLATES[template_id]
    assert len(page.frames) == template.capacity
    area = layout.content_rect(page)
    for frame in page.frames:
        for point in frame.points:
            assert area.contains(point), f"{template_id}: {point} lies outside the margins"
    # frames touch the margins on all four sides
    xs = [p[0] for f in page.frames for p in f.points]
    ys = [p[1] for f in page.frames for p in f.points]
    assert min(xs) == pytest.approx(20.0) and max(xs) == pytest.approx(layout.page_width(page) - 20.0)
    assert min(ys) == pytest.approx(20.0) and max(ys) == pytest.approx(layout.page_height(page) - 20.0)
    # neighbours in a row sit exactly one gutter apart; rows sit one gutter apart (vertically, also when slanted)
    if template.slant == 0:
        rects = [f.bounds for f in page.frames]
        for a, b in itertools.combinations(rects, 2):
            overlap_y = min(a.bottom, b.bottom) - max(a.y, b.y)
            overlap_x = min(a.right, b.right) - max(a.x, b.x)
            if overlap_y > 1 and overlap_x < 0:
                gap = max(a.x, b.x) - min(a.right, b.right)
                assert gap >= 10.0 - 1e-6
            if overlap_x > 1 and overlap_y < 0:
                assert max(a.y, b.y) - min(a.bottom, b.bottom) >= 10.0 - 1e-6
            assert not (overlap_x > 0 and overlap_y > 0), f"{template_id}: frames overlap"


def test_grid_gutter_is_exact():
    layout = Layout(gutter=12.0, margin=18.0)
    a, b, c, _ = (f.bounds for f in page_for(layout, "grid-2x2").frames)
    assert b.x - a.right == pytest.approx(12.0)
    assert c.y - a.bottom == pytest.approx(12.0)
    assert a.w == pytest.approx((477 - 36 - 12) / 2)


def test_slanted_tiers_are_polygons_with_a_vertical_gutter():
    layout = Layout(gutter=10.0)
    frames = page_for(layout, "action-slant").frames
    assert not frames[0].is_rect and not frames[1].is_rect
    top_bottom_edge = frames[0].points[2:4]  # bottom-right, bottom-left
    next_top_edge = frames[1].points[0:2]  # top-left, top-right
    assert next_top_edge[0][1] - top_bottom_edge[1][1] == pytest.approx(10.0)
    assert next_top_edge[1][1] - top_bottom_edge[0][1] == pytest.approx(10.0)
    assert top_bottom_edge[0][1] != top_bottom_edge[1][1]  # it really slants


def test_right_to_left_mirrors_frames_and_starts_top_right():
    ltr = page_for(Layout(), "rows-2-1-2")
    rtl = page_for(Layout(direction="rtl"), "rows-2-1-2")
    first_ltr, first_rtl = ltr.frames[0].bounds, rtl.frames[0].bounds
    assert first_ltr.x < 477 / 2 < first_rtl.right
    assert first_rtl.x == pytest.approx(477 - first_ltr.right)
    assert first_rtl.w == pytest.approx(first_ltr.w)
    # the second frame of the first row is to the LEFT of the first one in a manga
    assert rtl.frames[1].bounds.right < rtl.frames[0].bounds.x


def test_webtoon_stacks_square_panels_with_spacing():
    layout = auto_layout(panels(8), size="webtoon")
    assert [len(p.frames) for p in layout.pages] == [4, 4]
    page = layout.pages[0]
    assert layout.page_width(page) == 800.0
    rects = [f.bounds for f in page.frames]
    for upper, lower in zip(rects, rects[1:]):
        assert lower.y - upper.bottom == pytest.approx(WEBTOON_SPACING)
        assert lower.x == upper.x and lower.w == upper.w == upper.h
    assert layout.page_height(page) == pytest.approx(strip_height(layout, 4))
    assert rects[-1].bottom == pytest.approx(layout.page_height(page) - layout.frame_margin)
    assert layout.resolution == 72  # one pixel per point: the strip is 800 px wide


@pytest.mark.parametrize(("count", "per_page"), [(1, [1]), (5, [5]), (9, [5, 4]), (23, [6, 6, 6, 5])])
def test_auto_layout_places_every_panel_once_in_order(count, per_page):
    story = panels(count, caption="At dawn.", dialogue="Hello!\nWho is there?")
    layout = auto_layout(story)
    assert [len(page.panels()) for page in layout.pages] == per_page
    assert reading_order(layout) == [p.id for p in story]
    for page in layout.pages:
        assert TEMPLATES[page.template].capacity == len(page.frames)  # no empty frames
        assert all(f.panel for f in page.frames)
        # each panel's words became one caption and two balloons, inside or at its frame
        for frame in page.frames:
            words = [b for b in page.balloons if b.panel == frame.panel]
            assert [b.kind for b in words] == ["caption", "speech", "speech"]
            assert [b.text for b in words] == ["At dawn.", "Hello!", "Who is there?"]
            bounds = frame.bounds
            for balloon in words:
                assert bounds.contains((balloon.x, balloon.y)) and bounds.contains((balloon.x + balloon.w, balloon.y))
                if balloon.tail:
                    assert bounds.contains(balloon.tail)


def test_auto_layout_varies_templates_and_respects_manga_direction():
    layout = auto_layout(panels(20), size="manga-b5", direction="rtl")
    assert [p.template for p in layout.pages] == ["opener-1-2-2", "rows-2-1-2", "opener-1-2-2", "rows-2-1-2"]
    first = layout.pages[0].frames
    assert first[1].bounds.x > first[2].bounds.x  # second row: the right frame comes first
    captions = [b for b in layout.pages[0].balloons if b.kind == "caption"]
    assert captions == []  # no words, no lettering


def test_manga_caption_goes_top_right():
    layout = auto_layout(panels(1, caption="Meanwhile."), direction="rtl")
    frame = layout.pages[0].frames[0].bounds
    caption = layout.pages[0].balloons[0]
    assert caption.x + caption.w == pytest.approx(frame.right - 6.0)


def test_split_counts_is_even_and_bounded():
    assert split_counts(0) == []
    assert split_counts(7) == [4, 3]
    assert split_counts(12) == [6, 6]
    assert split_counts(13) == [5, 4, 4]
    for n in range(1, 60):
        counts = split_counts(n)
        assert sum(counts) == n and max(counts) <= 6 and max(counts) - min(counts) <= 1


def test_spread_prints_as_two_pages_in_reading_order():
    layout = Layout(direction="ltr")
    layout.pages = [page_for(layout, "splash"), page_for(layout, "spread")]
    printed = printed_pages(layout)
    assert [(p.template, r.x) for p, r in printed] == [("splash", 0), ("spread", 0), ("spread", 477.0)]
    layout.direction = "rtl"
    assert [r.x for _, r in printed_pages(layout)] == [0, 477.0, 0]  # the right half first
    assert layout.page_width(layout.pages[1]) == 954.0


def test_apply_template_keeps_panels_and_reports_overflow():
    layout = auto_layout(panels(5))
    page = layout.pages[0]
    page.frames[0].fit, page.frames[0].zoom = "contain", 1.5
    left_over = apply_template(layout, page, "grid-2x2")
    assert page.panels() == ["p0", "p1", "p2", "p3"] and left_over == ["p4"]
    assert page.frames[0].fit == "contain" and page.frames[0].zoom == 1.5
    assert apply_template(layout, page, "grid-3x3") == [] and page.panels() == ["p0", "p1", "p2", "p3"]
    with pytest.raises(LayoutError, match="webtoon"):
        apply_template(layout, page, "webtoon")
    with pytest.raises(LayoutError, match="no page template"):
        apply_template(layout, page, "nope")


@pytest.mark.parametrize(("aspect", "expected"), [(1.0, (768, 768)), (2.0, (1088, 512)), (0.5, (512, 1088)),
                                                  (10.0, (1344, 448))])
def test_generation_size_follows_the_frame_shape(aspect, expected):
    w, h = generation_size(aspect)
    assert (w, h) == expected
    assert w % 64 == 0 and h % 64 == 0
    assert generation_size(1.5, 1024 * 1024)[0] % 64 == 0


@pytest.mark.parametrize("aspect", [1.0, 3.0, 1 / 3, 100.0])
def test_generation_size_stays_within_what_a_model_may_draw(aspect):
    """A wide frame at a large size would ask for 3548x1182; the side is kept to limits.MAX_PICTURE_SIDE."""
    w, h = generation_size(aspect, 2048 * 2048)
    assert max(w, h) <= limits.MAX_PICTURE_SIDE and w % 64 == 0 and h % 64 == 0
    assert max(w, h) >= limits.MAX_PICTURE_SIDE - 64  # shrunk, not shrunk to nothing


def test_frame_fitting_and_moving():
    frame = Frame(points=[(0, 0), (100, 10), (100, 50), (0, 50)])
    assert not frame.is_rect and frame.aspect == 2.0
    from storystudio.project.layout import Rect

    moved = Frame(points=frame.fitted_to(Rect(10, 10, 50, 25)))
    assert moved.bounds == Rect(10, 10, 50, 25)
    assert moved.points[1] == (60, 15)
    assert Frame(points=frame.moved(5, -5)).bounds == Rect(5, -5, 100, 50)


def test_round_trip_and_plain_errors():
    story = panels(7, caption="c", dialogue="d")
    layout = auto_layout(story, size="a4", direction="rtl")
    layout.pages[0].balloons.append(Balloon("sfx", 10, 10, 80, 40, text="KRAK!", size=24.0, bold=True))
    saved = layout.to_dict()
    # balloons showing a panel's words keep no copy of them: the panel is the one place they live
    assert all("text" not in b for b in saved["pages"][0]["balloons"][:-1])
    assert saved["pages"][0]["balloons"][-1]["text"] == "KRAK!"
    again = Layout.from_dict(saved)
    assert again != layout and again.pages[0].balloons[0].text == ""
    resolve_words(again, words_of(story))
    assert again == layout
    bad = layout.to_dict()
    bad["size"] = "tabloid"
    with pytest.raises(LayoutError, match="page size 'tabloid'"):
        Layout.from_dict(bad)
    bad = layout.to_dict()
    bad["pages"][1]["balloons"][0]["w"] = 0
    with pytest.raises(LayoutError, match="balloon 1 of page 2 has no area"):
        Layout.from_dict(bad)
    bad = layout.to_dict()
    bad["pages"][0]["frames"][2]["points"] = [[0, 0], [1, "x"], [2, 2]]
    with pytest.raises(LayoutError, match="not a number"):
        Layout.from_dict(bad)
    bad = layout.to_dict()
    bad["dpi"] = 5000
    with pytest.raises(LayoutError, match="dots per inch"):
        Layout.from_dict(bad)


def test_removing_a_panel_empties_its_frame_and_drops_its_generated_words():
    layout = auto_layout(panels(3, caption="c"))
    layout.pages[0].balloons.append(Balloon("sfx", 1, 1, 10, 10, text="BAM", panel="p1", id="bam"))  # by hand
    remove_panel_everywhere(layout, "p1")
    page = layout.pages[0]
    assert page.panels() == ["p0", "p2"]
    assert not any(b.panel == "p1" for b in page.balloons)
    # lettering with words of its own stays, as free lettering
    assert page.balloon_by_id("bam").text == "BAM" and page.balloon_by_id("bam").free


def test_snapping_to_gutters_and_margins():
    from storystudio.project.layout import Rect, snap, snap_lines, snap_move, snap_resize

    layout = Layout(gutter=10.0, margin=20.0)
    page = page_for(layout, "grid-2x2")
    first = page.frames[0]
    xs, ys = snap_lines(layout, page, exclude=first.id)
    right_of_first = page.frames[1].bounds.x - 10.0  # one gutter left of the second frame
    assert snap(right_of_first + 3, xs, 4) == pytest.approx(right_of_first)
    assert snap(right_of_first - 6, xs, 4) == right_of_first - 6  # too far from every line: unchanged
    moved = snap_move(Rect(22.5, 30, 100, 100), xs, ys, 4)
    assert moved.x == 20.0 and moved.w == 100  # the left edge lands on the margin
    resized = snap_resize(Rect(20, 20, 100, 100), "r", xs, ys, 4)
    assert resized.x == 20 and resized.w == 100  # nothing near: unchanged
    resized = snap_resize(Rect(20, 20, right_of_first - 22, 100), "rb", xs, ys, 4)
    assert resized.right == pytest.approx(right_of_first)
    assert snap_resize(Rect(20, 20, 100, 100), "l", [300.0], ys, 500).w == 18.0  # never below the minimum
