"""What the canvas does to pages, as pure functions tested without Qt: mirror, rescale, place, swap,
re-cut, reflow, and whether the pages still follow the story."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest

from storystudio.project.layout import (
    CAPTION,
    TEMPLATES,
    Balloon,
    Frame,
    Layout,
    Page,
    Rect,
    add_page,
    auto_layout,
    change_balloon_kind,
    change_page_size,
    delete_frames,
    empty_frame,
    frame_at,
    has_hand_edits,
    mirror_pages,
    move_balloon,
    move_in_reading_order,
    page_check,
    place_panel,
    reading_order,
    recut_page,
    recut_pages,
    reflow,
    rescale_pages,
    swap_frames,
    template_frames,
)


def story(n: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(id=f"p{i}", caption=f"Caption {i}.", dialogue=f"Line {i}.") for i in range(n)]


def lettering_of(page: Page, panel_id: str) -> list[Balloon]:
    return [b for b in page.balloons if b.panel == panel_id]


def inside(frame: Frame, balloon: Balloon) -> bool:
    b = frame.bounds
    return b.contains((balloon.x, balloon.y)) and b.contains((balloon.x + balloon.w, balloon.y + balloon.h))


def test_mirroring_is_what_a_right_to_left_cut_gives_and_undoes_itself():
    panels = story(5)
    ltr = auto_layout(panels)
    rtl = auto_layout(panels, direction="rtl")
    mirrored = copy.deepcopy(ltr)
    mirror_pages(mirrored, "rtl")
    assert mirrored.direction == "rtl"
    for a, b in zip(mirrored.pages, rtl.pages):
        assert [sorted(f.points) for f in a.frames] == [sorted(f.points) for f in b.frames]
    balloon = ltr.pages[0].balloons[0]
    again = mirrored.pages[0].balloon_by_id(balloon.id)
    assert again.x == pytest.approx(ltr.page_width(ltr.pages[0]) - balloon.x - balloon.w)
    mirror_pages(mirrored, "ltr")
    assert mirrored.to_dict() == ltr.to_dict()


def test_rescaling_and_changing_the_kind_of_page():
    panels = story(4)
    layout = auto_layout(panels)
    first = layout.pages[0].frames[0].bounds
    rescale_pages(layout, "a4")
    a4 = layout.pages[0].frames[0].bounds
    assert layout.size == "a4"
    assert a4.x == pytest.approx(first.x * 595.276 / 477, rel=1e-3)
    assert a4.right <= 595.3
    change_page_size(layout, "webtoon", panels)  # printed pages to a strip: laid out again, same panels
    assert layout.page_size.strip and reading_order(layout) == [p.id for p in panels]
    assert all(p.template == "webtoon" for p in layout.pages)


def test_placing_and_swapping_panels_carries_their_lettering_and_crop():
    panels = story(4)
    layout = auto_layout(panels)
    page = layout.pages[0]
    first, second = page.frames[0], page.frames[1]
    first.zoom, first.pan = 2.0, (0.5, 0.0)
    swap_frames(layout, page.id, first.id, page, second.id, panels)
    assert (first.panel, second.panel) == ("p1", "p0")
    assert all(inside(second, b) for b in lettering_of(page, "p0"))
    assert all(inside(first, b) for b in lettering_of(page, "p1"))
    assert (second.zoom, second.pan) == (2.0, (0.5, 0.0)) and first.zoom == 1.0  # the crop went with its picture
    # a panel new to the pages pushes the frame's panel off them and brings lettering for its words
    newcomer = SimpleNamespace(id="new", caption="Hello there.", dialogue="")
    place_panel(layout, page, first.id, newcomer)
    assert first.panel == "new" and "p1" not in reading_order(layout)
    assert [b.text for b in lettering_of(page, "new")] == ["Hello there."]
    assert not any(b.panel == "p1" and b.source for b in page.balloons)


def test_emptying_and_deleting_frames_take_their_panels_off_the_pages():
    panels = story(4)
    layout = auto_layout(panels)
    page = layout.pages[0]
    page.balloons.append(Balloon("sfx", 40, 40, 30, 20, text="BAM", panel="p0", id="bam"))
    empty_frame(layout, page, page.frames[0].id)
    assert page.frames[0].panel is None and not any(b.source and b.panel == "p0" for b in page.balloons)
    assert page.balloon_by_id("bam").free  # hand-made lettering stays, free
    delete_frames(layout, page, {page.frames[1].id})
    assert len(page.frames) == 3 and page.template == "custom" and "p1" not in reading_order(layout)


def test_recut_keeps_order_crop_and_lettering_and_moves_the_rest_to_a_new_page():
    panels = story(4)
    layout = auto_layout(panels)  # classic 1-1-2
    page = layout.pages[0]
    page.frames[3].zoom = 3.0
    left_over = recut_page(layout, 0, "tiers-2")
    assert left_over == ["p2", "p3"] and len(layout.pages) == 2
    assert layout.pages[0].panels() == ["p0", "p1"] and layout.pages[1].panels() == ["p2", "p3"]
    for page in layout.pages:
        for frame in page.frames:
            assert lettering_of(page, frame.panel) and all(inside(frame, b) for b in lettering_of(page, frame.panel))
    assert layout.pages[1].frames[1].zoom == 3.0


def test_a_new_gutter_recuts_template_pages_and_keeps_hand_made_ones():
    panels = story(8)
    layout = auto_layout(panels)
    custom = layout.pages[1]
    custom.template = "custom"
    custom.frames[0].points = Frame.rect(40, 40, 100, 100).points
    kept = copy.deepcopy(custom.frames)
    recut_pages(layout, gutter=30.0)
    a, b = layout.pages[0].frames[0].bounds, layout.pages[0].frames[1].bounds
    assert b.y - a.bottom == pytest.approx(30.0)
    assert layout.pages[1].frames == kept


def test_a_page_added_and_balloon_tools():
    layout = auto_layout(story(2))
    page = add_page(layout, 1)
    assert layout.pages[1] is page and page.template == "grid-2x3" and len(page.frames) == 6
    balloon = Balloon("caption", 10, 10, 50, 20, text="x")
    change_balloon_kind(balloon, "thought")
    assert balloon.kind == "thought" and balloon.tail == (35.0, 60.0)
    move_balloon(balloon, Rect(20, 30, 50, 20))  # moved: the tail comes along
    assert (balloon.x, balloon.y, balloon.tail) == (20, 30, (45.0, 80.0))
    move_balloon(balloon, Rect(20, 30, 80, 40))  # resized: the tail stays where it points
    assert (balloon.w, balloon.h, balloon.tail) == (80, 40, (45.0, 80.0))
    first = layout.pages[0]
    ids = [b.id for b in first.balloons]
    move_in_reading_order(first, ids[0], 2)
    assert [b.id for b in first.balloons] == ids[1:3] + ids[:1] + ids[3:]


def test_frame_at_a_point():
    layout = Layout()
    page = Page(template="grid-2x2")
    page.frames = template_frames(layout, TEMPLATES["grid-2x2"], page)
    centre = layout.content_rect(page)
    middle = (centre.x + centre.w / 2, centre.y + centre.h / 2)  # in the gutters, where four frames meet
    assert frame_at(page, middle) in page.frames
    b = page.frames[3].bounds
    assert frame_at(page, (b.x + 5, b.y + 5)) is page.frames[3]
    assert frame_at(Page(), (0, 0)) is None


def test_pages_that_no_longer_follow_the_story_say_so_and_reflow_keeps_the_users_work():
    panels = story(8)
    layout = auto_layout(panels)
    assert page_check(layout, panels).follows_story and not has_hand_edits(layout, panels)
    # the user reshapes a frame and moves a balloon; then panel 1 moves to the end of the story
    frame = layout.pages[0].frames[0]
    frame.points = frame.fitted_to(Rect(30, 30, 300, 200))
    shape = list(frame.points)
    balloon = lettering_of(layout.pages[0], "p0")[0]
    balloon.x += 7
    assert has_hand_edits(layout, panels)
    reordered = panels[1:] + panels[:1]
    check = page_check(layout, reordered)
    assert not check.follows_story and check.moved == [8] and check.stale_pages == [1]
    assert "no longer in story order" in check.describe()
    reflow(layout, reordered)
    assert reading_order(layout) == [p.id for p in reordered]
    assert page_check(layout, reordered).follows_story
    assert layout.pages[0].frames[0].points == shape  # the user's frame kept its shape
    last = layout.pages[1].frames[-1]
    assert last.panel == "p0"
    assert all(inside(last, b) for b in lettering_of(layout.pages[1], "p0"))
    moved = layout.pages[1].balloon_by_id(balloon.id)
    assert moved is not None  # the same balloon, carried to panel 1's new frame
    # every page's lettering reads in frame order
    for page in layout.pages:
        order = [page.frames.index(next(f for f in page.frames if f.panel == b.panel)) for b in page.balloons]
        assert order == sorted(order)


def test_reflow_puts_new_panels_on_new_pages_and_the_check_counts_them():
    panels = story(6)
    layout = auto_layout(panels)
    more = panels + story(9)[6:]
    check = page_check(layout, more)
    assert check.unplaced == [7, 8, 9] and "on no page" in check.describe()
    reflow(layout, more)
    assert reading_order(layout) == [p.id for p in more] and len(layout.pages) == 2
    assert [b.source for b in lettering_of(layout.pages[1], "p8")] == [CAPTION, "dialogue:0"]


def test_words_without_a_balloon_are_reported():
    panels = story(4)
    layout = auto_layout(panels)
    layout.pages[0].balloons = [b for b in layout.pages[0].balloons if b.panel != "p2"]
    check = page_check(layout, panels)
    assert check.follows_story and check.unlettered == [3]
    assert check.describe() == "Some words of panel 3 have no balloon."
