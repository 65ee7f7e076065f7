"""Tests for the story model and the story script syntax."""

from __future__ import annotations

from pathlib import Path

import pytest

from storystudio.project import limits
from storystudio.project import (
    Character,
    Panel,
    ScriptError,
    ScriptProblem,
    Story,
    format_script,
    load_script,
    parse_script,
)

EXAMPLE = Path(__file__).parents[2] / "resources/examples/lighthouse.story.txt"

ANN = "a young woman with short red hair, green raincoat"
TOM = "an old fisherman with a grey beard"
CAST = f"[Ann] {ANN}\n[Tom] {TOM}\n"


def problems_of(text: str) -> list[ScriptProblem]:
    with pytest.raises(ScriptError) as info:
        parse_script(text)
    return info.value.problems


def only_problem(text: str) -> ScriptProblem:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    return problems[0]


# --- cast block -------------------------------------------------------------


def test_cast_and_panels_are_parsed():
    story = parse_script(CAST + "[Ann] waits at the harbour # Morning.\n[Tom] mends a net\n", title="Harbour")
    assert story.title == "Harbour"
    assert story.characters == [Character("Ann", ANN), Character("Tom", TOM)]
    assert [p.prompt for p in story.panels] == ["[Ann] waits at the harbour", "[Tom] mends a net"]
    assert [p.caption for p in story.panels] == ["Morning.", ""]
    assert [p.characters for p in story.panels] == [["Ann"], ["Tom"]]


def test_names_may_contain_spaces_and_punctuation_and_are_stripped():
    story = parse_script("[ Dr. Lee ] a tall doctor in a white coat\n[Dr. Lee] reads a chart\n")
    assert story.characters == [Character("Dr. Lee", "a tall doctor in a white coat")]
    assert story.panels[0].characters == ["Dr. Lee"]


def test_a_name_with_control_characters_is_refused_and_never_echoed_raw():
    problem = only_problem("[An\u202en] a girl with red hair\n\n[An\u202en] runs\n")
    assert "holds an invisible or control character" in problem.message
    assert problem.message.isprintable() and "\ufffd" in problem.message  # shown, but not obeyed by a terminal


def test_comments_and_leading_blank_lines_are_ignored():
    text = "\n  // my story\n\n[Ann] " + ANN + "\n// a note between cast lines\n[Tom] " + TOM + "\n[Ann] runs\n"
    story = parse_script(text)
    assert [c.name for c in story.characters] == ["Ann", "Tom"]
    assert len(story.panels) == 1


def test_comment_marker_must_lead_the_line():
    story = parse_script(CAST + "[Ann] looks at a sign saying // closed\n")
    assert story.panels[0].prompt == "[Ann] looks at a sign saying // closed"


def test_blank_line_ends_the_cast():
    problem = only_problem(f"[Ann] {ANN}\n\n[Tom] {TOM}\n[Ann] runs\n")
    assert problem.line == 3
    assert problem.message.startswith("[Tom] is not in the cast (characters: Ann).")


def test_line_tagging_a_known_character_begins_the_panels():
    # once the panels begin, a new name is a panel tag, not a definition
    problem = only_problem(f"[Ann] {ANN}\n[Ann] runs\n[Tom] {TOM}\n")
    assert problem.line == 3
    assert "[Tom] is not in the cast" in problem.message
    assert "before the first panel (line 2)" in problem.message


def test_nc_line_begins_the_panels():
    story = parse_script(f"[Ann] {ANN}\n[NC] an empty harbour\n[Ann] returns\n")
    assert len(story.characters) == 1
    assert [p.characters for p in story.panels] == [[], ["Ann"]]


def test_untagged_line_begins_the_panels():
    story = parse_script(f"[Ann] {ANN}\nAn empty harbour at dawn\n[Ann] returns\n")
    assert story.panels[0].prompt == "An empty harbour at dawn"
    assert not story.panels[0].has_characters


def test_empty_cast_is_allowed():
    story = parse_script("[NC] a storm over the sea # Storm.\nwaves on the rocks\n")
    assert story.characters == []
    assert [p.prompt for p in story.panels] == ["a storm over the sea", "waves on the rocks"]


def test_character_without_description_is_an_error():
    problem = only_problem(f"[Tom] {TOM}\n[Ann]\n[Ann] runs\n")
    assert str(problem) == (
        'Line 2: character [Ann] has no description; write it after the name, '
        'e.g. "[Ann] a young woman with red hair".'
    )


def test_character_defined_twice_with_other_capitals_is_an_error():
    problem = only_problem(f"[Ann] {ANN}\n[ANN] another woman\n[Ann] runs\n")
    assert problem.line == 2
    assert "already defined as [Ann] on line 1" in problem.message


def test_description_cannot_contain_tags():
    problem = only_problem(f"[Ann] {ANN}\n[Tom] the father of [Ann]\n[Tom] rows\n")
    assert problem.line == 2
    assert "description of [Tom]" in problem.message


def test_unbalanced_bracket_in_description_is_an_error():
    problem = only_problem("[Ann] a woman in a hat]\n[Ann] runs\n")
    assert problem.line == 1
    assert 'a "]" has no matching "["' in problem.message


# --- panels -----------------------------------------------------------------


def test_panel_keys_and_source_lines_follow_story_order():
    story = parse_script(CAST + "\n// panels\n[Ann] one\n[NC] two\n\n[Tom] three\n")
    assert [p.key for p in story.panels] == ["panel-1", "panel-2", "panel-3"]
    assert [p.source_line for p in story.panels] == [5, 6, 8]


def test_tags_anywhere_in_the_line_in_order_of_first_appearance():
    story = parse_script(CAST + "At the pier [Tom] hands [Ann] a fish while [Tom] laughs\n")
    panel = story.panels[0]
    assert panel.characters == ["Tom", "Ann"]
    assert panel.prompt == "At the pier [Tom] hands [Ann] a fish while [Tom] laughs"


def test_caption_is_the_text_after_the_last_hash():
    story = parse_script(CAST + "[Ann] holds ticket #42 up #  Her lucky number.  \n")
    panel = story.panels[0]
    assert panel.prompt == "[Ann] holds ticket #42 up"
    assert panel.caption == "Her lucky number."


def test_line_without_hash_has_no_caption():
    panel = parse_script(CAST + "[Ann] runs\n").panels[0]
    assert panel.caption == ""
    assert panel.prompt == "[Ann] runs"


def test_nc_is_removed_from_the_prompt():
    panel = parse_script(CAST + "  [NC]   fog over the water # Quiet.\n").panels[0]
    assert panel.prompt == "fog over the water"
    assert panel.characters == []
    assert not panel.has_characters


def test_has_characters():
    panel = parse_script(CAST + "[Ann] runs\n").panels[0]
    assert panel.has_characters


def test_windows_newlines_and_bom_are_accepted():
    story = parse_script("\ufeff" + CAST.replace("\n", "\r\n") + "[Ann] runs\r\n")
    assert story.characters[0].name == "Ann"
    assert story.panels[0].prompt == "[Ann] runs"
    assert story.panels[0].source_line == 3


def test_unknown_name_lists_the_cast():
    problem = only_problem(CAST + "\n\n\n\n[Ann] and [Bob] walk\n")
    assert problem.line == 7
    assert str(problem).startswith("Line 7: [Bob] is not in the cast (characters: Ann, Tom).")


def test_unknown_name_with_other_capitals_gets_did_you_mean():
    problem = only_problem(CAST + "[Ann] waves at [tom]\n")
    assert "[tom] is not in the cast" in problem.message
    assert "Did you mean [Tom]? Names must match the cast exactly, including capitals." in problem.message


def test_misspelt_name_gets_did_you_mean():
    problem = only_problem("[Annabel] a girl with a kite\n[Annabel] runs\n[Anabel] falls\n")
    assert "Did you mean [Annabel]?" in problem.message


def test_unknown_name_with_empty_cast():
    problem = only_problem("[NC] a beach\nthe beach, where [Ann] waits\n")
    assert problem.message.startswith("[Ann] is not in the cast (the cast is empty).")


def test_unknown_name_is_reported_once_per_line():
    problems = problems_of(CAST + "[Ann] sees [Bob] and [Bob]\n")
    assert len(problems) == 1


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("[Ann wakes up", 'a "[" is never closed'),
        ("[Ann] wakes [Tom up", 'a "[" is never closed'),
        ("[] runs", 'empty brackets "[]"'),
        ("[Ann] sees [ ]", 'empty brackets "[ ]"'),
        ("Ann] runs", 'a "]" has no matching "["'),
        ("[Ann] runs [[Tom]]", 'a "[" is never closed'),
    ],
)
def test_bracket_mistakes_are_reported(line, expected):
    problems = problems_of(CAST + line + "\n")
    assert all(p.line == 3 for p in problems)
    assert any(expected in p.message for p in problems), problems


def test_nc_not_at_start_is_an_error():
    problem = only_problem(CAST + "a storm [NC] over the sea\n")
    assert problem.line == 3
    assert "[NC] must come at the very start" in problem.message


def test_nc_with_a_character_is_an_error():
    problem = only_problem(CAST + "[NC] [Ann] on the beach\n")
    assert problem.line == 3
    assert "cannot be used together with [Ann]" in problem.message


def test_panel_with_only_a_caption_is_an_error():
    problem = only_problem(CAST + "[Ann] runs\n# The end\n")
    assert problem.line == 4
    assert "no picture description" in problem.message


def test_nc_panel_with_empty_prompt_is_an_error():
    problem = only_problem(CAST + "[NC] # Silence.\n")
    assert "no picture description" in problem.message


def test_story_without_panels_is_an_error():
    problem = only_problem(CAST)
    assert problem.line == 0
    assert str(problem).startswith("The story has no panels")


def test_empty_text_is_an_error():
    assert "no panels" in str(only_problem(""))


def test_unused_character_is_not_an_error():
    story = parse_script(CAST + "[Ann] runs\n")
    assert [c.name for c in story.characters] == ["Ann", "Tom"]


def test_all_problems_are_collected_and_joined_in_str():
    text = f"[Ann]\n[Tom] {TOM}\n[Ann] runs\n[Bob] runs\n# The end\n[Ann] sees [NC]\n"
    with pytest.raises(ScriptError) as info:
        parse_script(text)
    error = info.value
    assert [p.line for p in error.problems] == [1, 4, 5, 6]
    assert str(error) == "\n".join(f"Line {p.line}: {p.message}" for p in error.problems)
    assert isinstance(error, ValueError)


# --- Story ------------------------------------------------------------------


def make_story() -> Story:
    return parse_script(
        CAST
        + "[Ann] runs # 1\n"
        + "[NC] the sea # 2\n"
        + "[Ann] and [Tom] talk # 3\n"
        + "[Ann] swims # 4\n"
        + "[Tom] rows # 5\n"
        + "[Ann] waves, [Ann] smiles # 6\n"
    )


def test_expand_replaces_tags_with_descriptions():
    story = make_story()
    assert story.expand(story.panels[0]) == f"{ANN} runs"
    assert story.expand(story.panels[2]) == f"{ANN} and {TOM} talk"
    assert story.expand(story.panels[1]) == "the sea"


def test_expand_accepts_padded_tags():
    story = Story([Character("Ann", ANN)], [Panel("p", "[ Ann ] runs", characters=["Ann"])])
    assert story.expand(story.panels[0]) == f"{ANN} runs"


def test_character_lookup():
    story = make_story()
    assert story.character("Tom").description == TOM
    with pytest.raises(KeyError, match=r"no character named \[Bob\].*Ann, Tom"):
        story.character("Bob")
    with pytest.raises(KeyError):
        story.character("ann")


def test_solo_panels():
    story = make_story()
    assert [p.caption for p in story.solo_panels("Ann")] == ["1", "4", "6"]
    assert [p.caption for p in story.solo_panels("Tom")] == ["5"]


def test_reference_panels_are_the_first_solo_panels():
    story = make_story()
    assert [p.caption for p in story.reference_panels("Ann", 2)] == ["1", "4"]


def test_reference_panels_with_fewer_solo_panels_than_id_length():
    story = make_story()
    assert [p.caption for p in story.reference_panels("Tom", 4)] == ["5"]
    assert story.reference_panels("Nobody", 4) == []


# --- format_script ----------------------------------------------------------


def test_format_script_round_trip():
    story = parse_script(
        CAST
        + "[Ann] runs # Go!\n"
        + "[NC] a storm\n"
        + "A pier where [Tom] and [Ann] sit # Together.\n"
        + "[Tom] holds sign #7 # Seven.\n",
        title="Harbour",
    )
    # a '#' in a prompt without caption can only come from a story built in code
    story.panels.append(Panel("panel-5", "[Ann] paints #1 on a door", characters=["Ann"]))
    text = format_script(story)
    again = parse_script(text, title="Harbour")
    assert again.characters == story.characters
    assert [p.prompt for p in again.panels] == [p.prompt for p in story.panels]
    assert [p.caption for p in again.panels] == [p.caption for p in story.panels]
    assert [p.characters for p in again.panels] == [p.characters for p in story.panels]
    assert [p.key for p in again.panels] == [p.key for p in story.panels]
    assert text.startswith("// Harbour\n")


def test_format_script_marks_characterless_panels_with_nc():
    story = Story([], [Panel("panel-1", "a storm", caption="Night"), Panel("panel-2", "// not a comment")])
    text = format_script(story)
    assert text == "[NC] a storm # Night\n[NC] // not a comment\n"
    assert [p.prompt for p in parse_script(text).panels] == ["a storm", "// not a comment"]


def test_format_script_rejects_what_the_syntax_cannot_express():
    cast = [Character("Ann", ANN)]
    with pytest.raises(ValueError):
        format_script(Story(cast, [Panel("panel-1", "[Ann] runs", caption="a # b")]))
    with pytest.raises(ValueError):
        format_script(Story(cast, [Panel("panel-1", "[Ann] runs\nand jumps")]))
    with pytest.raises(ValueError):
        format_script(Story([Character("Ann", "")], [Panel("panel-1", "[Ann] runs")]))
    with pytest.raises(ValueError):
        format_script(Story(cast, [Panel("panel-1", "// [Ann] runs")]))


# --- files ------------------------------------------------------------------


def test_load_script_reads_utf8_and_takes_title_from_file_name(tmp_path):
    path = tmp_path / "harbour.story.txt"
    path.write_text(CAST + "[Ann] buys a crêpe # Délicieux.\n", encoding="utf-8")
    story = load_script(path)
    assert story.title == "harbour"
    assert story.panels[0].caption == "Délicieux."
    assert load_script(str(tmp_path / "harbour.story.txt")).title == "harbour"


def test_load_script_plain_stem(tmp_path):
    path = tmp_path / "My Comic.txt"
    path.write_text("[NC] fog\n", encoding="utf-8")
    assert load_script(path).title == "My Comic"


def test_load_script_missing_file(tmp_path):
    path = tmp_path / "missing.story.txt"
    with pytest.raises(ScriptError) as info:
        load_script(path)
    assert str(path) in str(info.value)
    assert "does not exist" in str(info.value)
    assert not str(info.value).startswith("Line")


def test_load_script_not_utf8(tmp_path):
    path = tmp_path / "latin.story.txt"
    path.write_bytes("[NC] caf\xe9\n".encode("latin-1"))
    with pytest.raises(ScriptError, match="not UTF-8"):
        load_script(path)


def test_load_script_directory(tmp_path):
    with pytest.raises(ScriptError, match="is a folder, not a text file"):
        load_script(tmp_path)


# --- limits and hostile input: one short message, quickly ----------------------------------------


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-16"])
def test_utf16_is_named_as_such_without_nul_characters(tmp_path, encoding):
    path = tmp_path / "wide.story.txt"
    path.write_bytes((CAST + "[Ann] runs\n").encode(encoding))
    with pytest.raises(ScriptError) as info:
        load_script(path)
    message = str(info.value)
    assert "UTF-16" in message and "UTF-8" in message and "\x00" not in message
    assert len(info.value.problems) == 1


def test_nul_characters_in_text_are_refused():
    with pytest.raises(ScriptError, match="NUL characters"):
        parse_script("[\x00N\x00C\x00]\x00 fog\n")


def test_a_script_file_over_the_size_limit_is_refused_unread(tmp_path):
    path = tmp_path / "huge.story.txt"
    path.write_bytes(b"[NC] fog\n" * (limits.MAX_SCRIPT_BYTES // 9 + 1))
    with pytest.raises(ScriptError, match="larger than 1 MB"):
        load_script(path)
    with pytest.raises(ScriptError, match="longer than 1,000,000 characters"):
        parse_script(path.read_text(encoding="utf-8"))


def test_a_long_line_is_one_short_problem_and_fast():
    import time

    started = time.perf_counter()
    problems = problems_of(CAST + "[Ann] " + "[x" * 400_000 + "\n[Ann] runs\n")
    assert time.perf_counter() - started < 10  # not a benchmark: a 2 MB line took over a minute to read
    assert [p.line for p in problems] == [3]
    assert "800,006 characters long" in problems[0].message and len(str(problems[0])) < 120


def test_a_bracket_storm_gives_a_short_message():
    import time

    started = time.perf_counter()
    with pytest.raises(ScriptError) as info:
        parse_script(CAST + "[" * (limits.MAX_LINE_CHARS - 1) + "\n" + ("[[[ ]]] " * 200 + "\n") * 100)
    assert time.perf_counter() - started < 10  # not a benchmark: guards against reading time growing with n^2
    assert len(str(info.value)) < 5000
    assert len(info.value.problems) == limits.MAX_SCRIPT_PROBLEMS + 1
    assert str(info.value.problems[-1]).startswith("... and ") and "more problem(s)" in str(info.value)
    assert [p.line for p in info.value.problems[:3]] == [3, 3, 3]
    assert info.value.problems[2].message == "and 1997 more bracket mistake(s) on this line"


def test_too_many_panels_and_characters():
    cast = "".join(f"[C{i}] person number {i}\n" for i in range(limits.MAX_CHARACTERS + 1))
    with pytest.raises(ScriptError) as info:
        parse_script(cast + "\n" + "[NC] fog\n" * (limits.MAX_PANELS + 1))
    messages = [p.message for p in info.value.problems]
    assert f"The cast has {limits.MAX_CHARACTERS + 1} characters" in messages[0]
    assert f"The story has {limits.MAX_PANELS + 1} panels" in messages[1]
    assert len(parse_script("[NC] fog\n" * limits.MAX_PANELS).panels) == limits.MAX_PANELS


def test_a_long_name_is_refused_with_a_short_quote():
    problem = only_problem("[" + "N" * 500 + "] a person\n\n[NC] fog\n")
    assert f"may have at most {limits.MAX_NAME_CHARS}" in problem.message and len(problem.message) < 160


def test_a_second_description_of_a_cast_member_is_not_taken_for_a_panel():
    problem = only_problem(f"[Ann] {ANN}\n[Ann] a young woman in a green coat\n\n[Ann] runs\n")
    assert problem.line == 2
    assert "[Ann] is already in the cast (line 1)" in problem.message
    assert "leave a blank line after the cast" in problem.message
    # a first panel right after the cast still is one, with or without a blank line later
    story = parse_script(f"[Ann] {ANN}\n[Ann] runs\n[Ann] jumps\n\n[Ann] sleeps\n")
    assert [p.prompt for p in story.panels] == ["[Ann] runs", "[Ann] jumps", "[Ann] sleeps"]


def test_bundled_example_parses():
    story = load_script(EXAMPLE)
    assert story.title == "lighthouse"
    assert len(story.characters) == 2
    assert len(story.panels) == 8
    first, second = (c.name for c in story.characters)
    assert len(story.solo_panels(first)) >= 4
    assert story.panels[:4] == story.solo_panels(first)[:4]
    assert len(story.solo_panels(second)) >= 2
    assert sum(p.characters == [first, second] or p.characters == [second, first] for p in story.panels) == 1
    assert sum(not p.has_characters for p in story.panels) == 1
    assert all(p.caption for p in story.panels)
    assert all(len(p.prompt.split()) < 50 for p in story.panels)
    assert EXAMPLE.read_text(encoding="utf-8").startswith("//")
