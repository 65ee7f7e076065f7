"""One source of truth for the words: a panel's caption and dialogue lines are what its lettering shows."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from storystudio.project.layout import (
    CAPTION,
    Balloon,
    Words,
    add_lettering,
    auto_layout,
    bring_lettering_in_step,
    delete_lettering,
    dialogue_source,
    follow_words,
    lettered,
    make_panel_words,
    resolve_words,
    set_lettering_panel,
    set_lettering_text,
    unlettered,
    use_panel_words,
    words_of,
)


def story(n: int = 4) -> list[SimpleNamespace]:
    out = [SimpleNamespace(id=f"p{i}", caption=f"Caption {i}.", dialogue="") for i in range(n)]
    out[0].dialogue = "First line.\nSecond line.\nThird line."
    return out


def tied(layout, panel_id: str) -> dict[str, str]:
    """source -> text of the balloons showing a panel's words."""
    return {b.source: b.text for p in layout.pages for b in p.balloons if b.panel == panel_id and b.source}


def test_words_of_a_panel():
    panel = SimpleNamespace(id="p", caption="  The end.  ", dialogue="Hello?\n\n  Who's there? \n")
    words = Words.of(panel)
    assert words == Words("The end.", ["Hello?", "Who's there?"])
    assert words.sources() == [CAPTION, "dialogue:0", "dialogue:1"]
    assert words.get("dialogue:1") == "Who's there?" and words.get("dialogue:2") is None
    assert words.dialogue == "Hello?\nWho's there?"
    assert Words.of(SimpleNamespace(caption="", dialogue="")).sources() == []


def test_balloons_show_the_words_of_their_panel_as_it_is_now():
    panels = story()
    layout = auto_layout(panels)
    assert tied(layout, "p0") == {CAPTION: "Caption 0.", "dialogue:0": "First line.", "dialogue:1": "Second line.",
                                  "dialogue:2": "Third line."}
    panels[0].caption = "A new caption."
    resolve_words(layout, words_of(panels))
    assert tied(layout, "p0")[CAPTION] == "A new caption."


def test_pages_follow_words_edited_in_the_panel():
    panels = story()
    layout = auto_layout(panels)
    page = layout.pages[0]
    ids = {b.source: b.id for b in page.balloons if b.panel == "p0"}
    old = Words.of(panels[0])
    # a line inserted before the others, one edited, one removed
    panels[0].dialogue = "A new first line.\nFirst line.\nSecond line, edited."
    follow_words(layout, panels[0], old)
    now = {b.source: b for b in page.balloons if b.panel == "p0"}
    assert now["dialogue:1"].id == ids["dialogue:0"] and now["dialogue:1"].text == "First line."
    assert now["dialogue:2"].id == ids["dialogue:1"] and now["dialogue:2"].text == "Second line, edited."
    assert ids["dialogue:2"] not in {b.id for b in page.balloons}  # the third line went, and its balloon
    new = now["dialogue:0"]
    assert new.id not in ids.values() and new.text == "A new first line." and new.kind == "speech"
    frame = page.frames[0].bounds
    assert frame.contains((new.x, new.y)) and frame.contains((new.x + new.w, new.y + new.h))
    # in reading order the new line comes first of the dialogue, after the caption
    order = [b.source for b in page.balloons if b.panel == "p0"]
    assert order == [CAPTION, "dialogue:0", "dialogue:1", "dialogue:2"]
    # a caption emptied loses its box; a caption written gets one
    old = Words.of(panels[1])
    panels[1].caption = ""
    follow_words(layout, panels[1], old)
    assert CAPTION not in lettered(layout, "p1")
    old = Words.of(panels[1])
    panels[1].caption = "Back again."
    follow_words(layout, panels[1], old)
    assert tied(layout, "p1") == {CAPTION: "Back again."}


def test_editing_a_balloon_edits_the_panels_words():
    panels = story()
    layout = auto_layout(panels)
    words = words_of(panels)
    second = next(b for b in layout.pages[0].balloons if b.panel == "p0" and b.source == "dialogue:1")
    set_lettering_text(layout, words, second.id, "Second line,\nwritten on the page.")
    assert words["p0"].lines == ["First line.", "Second line, written on the page.", "Third line."]
    assert second.text == "Second line, written on the page."
    caption = next(b for b in layout.pages[0].balloons if b.panel == "p1" and b.source == CAPTION)
    set_lettering_text(layout, words, caption.id, "Page caption.")
    assert words["p1"].caption == "Page caption."
    # emptying a balloon deletes its words; the later lines keep their own balloons
    third = next(b for b in layout.pages[0].balloons if b.panel == "p0" and b.source == "dialogue:2")
    first = next(b for b in layout.pages[0].balloons if b.panel == "p0" and b.source == "dialogue:0")
    set_lettering_text(layout, words, first.id, "   ")
    assert words["p0"].lines == ["Second line, written on the page.", "Third line."]
    assert first.id not in {b.id for b in layout.pages[0].balloons}
    assert third.source == "dialogue:1" and third.text == "Third line."
    # lettering with words of its own keeps them
    sfx = Balloon("sfx", 10, 10, 50, 20, text="BAM", panel="p2")
    layout.pages[0].balloons.append(sfx)
    set_lettering_text(layout, words, sfx.id, "KRAK\nBOOM")
    assert sfx.text == "KRAK\nBOOM" and words["p2"] == Words("Caption 2.", [])


def test_deleting_lettering_deletes_its_words():
    panels = story()
    layout = auto_layout(panels)
    words = words_of(panels)
    page = layout.pages[0]
    by_source = {b.source: b for b in page.balloons if b.panel == "p0"}
    delete_lettering(layout, words, {by_source["dialogue:0"].id, by_source[CAPTION].id})
    assert words["p0"] == Words("", ["Second line.", "Third line."])
    assert tied(layout, "p0") == {"dialogue:0": "Second line.", "dialogue:1": "Third line."}
    assert by_source["dialogue:1"].source == "dialogue:0"  # the same balloon, with the same words


@pytest.mark.parametrize("kind", ["speech", "thought", "caption", "sfx"])
def test_added_lettering_lands_inside_its_frame_and_belongs_to_its_panel(kind):
    panels = story()
    panels[3].caption = ""
    layout = auto_layout(panels)  # four panels: classic rows 1-1-2
    page = layout.pages[0]
    frame = page.frames[3]
    words = words_of(panels)
    balloon = add_lettering(layout, words, page, kind, frame, text="Look out!")
    b = frame.bounds
    for corner in ((balloon.x, balloon.y), (balloon.x + balloon.w, balloon.y + balloon.h)):
        assert b.contains(corner, slack=0.0)  # inside the frame, not across four of them
    if balloon.has_tail:
        assert b.contains(balloon.tail, slack=0.0)
    assert balloon.panel == "p3"
    if kind in ("speech", "thought"):
        assert words["p3"].lines == ["Look out!"] and balloon.source == "dialogue:0"
    elif kind == "caption":
        assert words["p3"].caption == "Look out!" and balloon.source == CAPTION
    else:
        assert balloon.source == "" and balloon.text == "Look out!" and words["p3"] == Words("", [])
    # a second caption box in a panel whose caption is lettered keeps words of its own
    if kind == "caption":
        other = add_lettering(layout, words, page, "caption", frame, text="Later.")
        assert other.source == "" and other.text == "Later." and words["p3"].caption == "Look out!"
        assert not any(_overlap(other, x) for x in page.balloons if x is not other)


def _overlap(a: Balloon, b: Balloon) -> bool:
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h


def test_free_lettering_belongs_to_no_panel():
    panels = story()
    layout = auto_layout(panels)
    words = words_of(panels)
    page = layout.pages[0]
    balloon = add_lettering(layout, words, page, "speech", None, text="Elsewhere...")
    assert balloon.free and balloon.text == "Elsewhere..." and words == words_of(story())
    assert layout.content_rect(page).contains((balloon.x, balloon.y))
    assert set_lettering_panel(layout, balloon.id, "p2") and balloon.panel == "p2"
    assert make_panel_words(layout, words, balloon.id) == "dialogue:0"
    assert words["p2"].lines == ["Elsewhere..."]
    assert not set_lettering_panel(layout, balloon.id, None)  # it shows the panel's words now


def test_own_words_of_a_panel_can_become_or_give_way_to_its_words():
    panels = story()
    layout = auto_layout(panels)
    words = words_of(panels)
    page = layout.pages[0]
    caption = next(b for b in page.balloons if b.panel == "p1" and b.source == CAPTION)
    caption.source, caption.text = "", "Words only the page had."  # as an older file's diverged balloon loads
    assert unlettered(layout, "p1", words["p1"]) == [CAPTION]
    assert use_panel_words(layout, words, caption.id) == CAPTION
    assert caption.text == "Caption 1." and words["p1"].caption == "Caption 1."
    caption.source, caption.text = "", "Words only the page had."
    assert make_panel_words(layout, words, caption.id) == CAPTION
    assert words["p1"].caption == "Words only the page had." and caption.text == "Words only the page had."
    # a sound effect has no panel words to become
    sfx = Balloon("sfx", 1, 1, 20, 20, text="BAM", panel="p1")
    page.balloons.append(sfx)
    assert make_panel_words(layout, words, sfx.id) is None and use_panel_words(layout, words, sfx.id) is None


def test_bringing_lettering_in_step():
    panels = story()
    layout = auto_layout(panels)
    panels[2].dialogue = "Words written elsewhere."
    panels[0].dialogue = "Only one line now."
    words = words_of(panels)
    resolve_words(layout, words)
    assert unlettered(layout, "p2", words["p2"]) == ["dialogue:0"]
    assert bring_lettering_in_step(layout, words) == 3  # two stale balloons out, one new one in
    assert tied(layout, "p0") == {CAPTION: "Caption 0.", "dialogue:0": "Only one line now."}
    assert tied(layout, "p2") == {CAPTION: "Caption 2.", "dialogue:0": "Words written elsewhere."}
    assert bring_lettering_in_step(layout, words) == 0
    assert dialogue_source(3) == "dialogue:3"
