"""Reading and writing story scripts in the StoryDiffusion demo's plain-text syntax.

A script starts with the cast, one ``[Name] description`` line per character, then
has one panel per line::

    // comments start with two slashes
    [Ann] a young woman with short red hair, green raincoat
    [Tom] an old fisherman with a grey beard

    [Ann] waits at the harbour # Early morning.
    [NC] fishing boats in thick fog # Nothing moved.
    [Ann] and [Tom] share tea on the pier # "You came back."

``[NC]`` at the start of a panel means it shows no character; the text after the
last ``#`` is the caption.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

from . import limits
from .story import NO_CHARACTER, TAG_PATTERN, Character, Panel, Story

_SNIPPET_LENGTH = 24


@dataclass(frozen=True)
class ScriptProblem:
    """One thing wrong with a script; ``line`` is 1-based, 0 when it concerns the whole script."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"Line {self.line}: {self.message}" if self.line > 0 else self.message


class ScriptError(ValueError):
    """A script could not be read; ``problems`` lists everything found wrong with it."""

    def __init__(self, problems: list[ScriptProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def parse_script(text: str, title: str = "") -> Story:
    """Parse a story script; raise ScriptError listing every problem found."""
    return _Parser().parse(text, title)


def load_script(path: str | os.PathLike[str]) -> Story:
    """Read and parse a UTF-8 script file; the title is the file name without extension.

    A file over ``limits.MAX_SCRIPT_BYTES`` is refused before it is read.
    """
    path = Path(path)

    def refuse(what: str) -> ScriptError:
        return ScriptError([ScriptProblem(0, f'The story script "{path}" {what}')])

    try:
        with open(path, "rb") as handle:
            data = handle.read(limits.MAX_SCRIPT_BYTES + 1)
    except FileNotFoundError as exc:
        raise refuse("does not exist.") from exc
    except IsADirectoryError as exc:
        raise refuse("is a folder, not a text file.") from exc
    except OSError as exc:
        raise refuse(f"could not be read ({exc.strerror or exc}).") from exc
    if len(data) > limits.MAX_SCRIPT_BYTES:
        raise refuse(f"is larger than {limits.MAX_SCRIPT_BYTES // 1_000_000} MB; a story script holds at most "
                     f"{limits.MAX_PANELS} panels and is much smaller.")
    not_utf8 = "is not UTF-8 text; save it as UTF-8 and try again."
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        # UTF-16 (with or without its byte order mark) decodes as "UTF-8" full of NUL characters
        raise refuse("is UTF-16 text, not UTF-8; save it as UTF-8 and try again.")
    try:
        # utf-8-sig so that files saved by Windows editors with a BOM still parse
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise refuse(not_utf8) from exc
    return parse_script(text, title=_title_from_path(path))


def format_script(story: Story) -> str:
    """Write ``story`` as script text that parse_script reads back to the same cast and panels."""
    _check_formattable(story)
    lines: list[str] = []
    if story.title:
        lines.append(f"// {' '.join(story.title.split())}")
    lines.extend(f"[{c.name}] {c.description.strip()}" for c in story.characters)
    if lines:
        # the blank line ends the cast, so a first panel can never be read as a character
        lines.append("")
    for panel in story.panels:
        prompt = panel.prompt.strip()
        line = prompt if TAG_PATTERN.search(prompt) else f"[{NO_CHARACTER}] {prompt}"
        # a '#' inside the prompt would otherwise be taken for the caption marker
        if panel.caption or "#" in prompt:
            line = f"{line} # {panel.caption.strip()}".rstrip()
        lines.append(line)
    return "\n".join(lines) + "\n"


def _title_from_path(path: Path) -> str:
    stem = path.stem
    # "lighthouse.story.txt" should be titled "lighthouse"
    if stem.lower().endswith(".story") and len(stem) > len(".story"):
        stem = stem[: -len(".story")]
    return stem


def _check_formattable(story: Story) -> None:
    """Raise ValueError for content that the line-based syntax cannot express."""
    for character in story.characters:
        name, description = character.name, character.description
        if not name.strip() or name.strip() != name or any(ch in name for ch in "[]\n\r"):
            raise ValueError(f"Character name {name!r} cannot be written in a script.")
        if name == NO_CHARACTER:
            raise ValueError(f"[{NO_CHARACTER}] is reserved for panels without characters.")
        if not description.strip() or any(ch in description for ch in "[]\n\r"):
            raise ValueError(f"The description of [{name}] cannot be written in a script: {description!r}.")
    for panel in story.panels:
        if not panel.prompt.strip() or any(ch in panel.prompt for ch in "\n\r"):
            raise ValueError(f"The prompt of {panel.key} cannot be written in a script: {panel.prompt!r}.")
        if panel.prompt.strip().startswith("//") and TAG_PATTERN.search(panel.prompt):
            raise ValueError(f"The prompt of {panel.key} starts with '//' and would be read as a comment.")
        if any(ch in panel.caption for ch in "#\n\r"):
            raise ValueError(f"The caption of {panel.key} cannot contain '#' or line breaks: {panel.caption!r}.")


def _snippet(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _SNIPPET_LENGTH else text[:_SNIPPET_LENGTH].rstrip() + "..."


#: Bracket mistakes reported for one line: a line of a thousand "[" needs one message, not a thousand.
_BRACKET_PROBLEMS_PER_LINE = 2


def _scan_tags(text: str, example: str) -> tuple[list[tuple[str, int, int]], list[str]]:
    """Find ``[Name]`` tags as (name, start, end) and describe any bracket mistakes."""
    tags: list[tuple[str, int, int]] = []
    problems: list[str] = []
    open_at: int | None = None

    def unclosed(start: int) -> str:
        near = _snippet(text[start : start + 4 * _SNIPPET_LENGTH])
        return f'a "[" is never closed (near "{near}"); tags look like [{example}].'

    for index, char in enumerate(text):
        if char == "[":
            if open_at is not None:
                problems.append(unclosed(open_at))
            open_at = index
        elif char == "]":
            if open_at is None:
                before = text[max(0, index - _SNIPPET_LENGTH) : index + 1].strip()
                problems.append(f'a "]" has no matching "[" (near "{before}"); tags look like [{example}].')
                continue
            name = text[open_at + 1 : index].strip()
            if name:
                tags.append((name, open_at, index + 1))
            else:
                problems.append(
                    f'empty brackets "{text[open_at:index + 1]}"; put a character name inside, '
                    f"like [{example}], or remove them."
                )
            open_at = None
    if open_at is not None:
        problems.append(unclosed(open_at))
    if len(problems) > _BRACKET_PROBLEMS_PER_LINE:
        more = len(problems) - _BRACKET_PROBLEMS_PER_LINE
        problems = problems[:_BRACKET_PROBLEMS_PER_LINE] + [f"and {more} more bracket mistake(s) on this line"]
    return tags, problems


class _Parser:
    """Single-use line-by-line parser that collects every problem before failing."""

    def __init__(self) -> None:
        self.characters: dict[str, Character] = {}
        self.defined_on: dict[str, int] = {}
        self.panels: list[Panel] = []
        self.problems: list[ScriptProblem] = []
        self.in_cast = True
        self.cast_started = False
        self.panel_count = 0
        self.first_panel_line: int | None = None
        # the line that ended the cast by repeating a cast name, while no blank line had ended it yet
        self.cast_ended_by_repeat: tuple[int, str] | None = None
        self.blank_after_repeat = False

    @property
    def example_name(self) -> str:
        return next(iter(self.characters), "Ann")

    def report(self, line: int, message: str) -> None:
        # what the script holds is shown, but never a control or direction character that would garble
        # the terminal or the dialog: those become U+FFFD
        self.problems.append(ScriptProblem(line, "".join(c if c.isprintable() else "\ufffd" for c in message)))

    def parse(self, text: str, title: str) -> Story:
        text = text.removeprefix("\ufeff")
        if len(text) > limits.MAX_SCRIPT_BYTES:
            self.report(0, f"The story script is longer than {limits.MAX_SCRIPT_BYTES:,} characters; a story "
                           f"holds at most {limits.MAX_PANELS} panels and is much shorter.")
            raise ScriptError(self.problems)
        if "\x00" in text:
            self.report(0, "The story script holds NUL characters: it is not UTF-8 text (UTF-16, or not text at "
                           "all); save it as UTF-8 and try again.")
            raise ScriptError(self.problems)
        # normalise newlines ourselves: str.splitlines also splits on form feeds and
        # other separators, which would make our line numbers disagree with editors
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line:
                if self.cast_started:
                    self.in_cast = False
                if self.cast_ended_by_repeat is not None and self.panel_count == 1:
                    self.blank_after_repeat = True  # right after the line that repeated a cast name
                continue
            if line.startswith("//"):
                continue
            if len(line) > limits.MAX_LINE_CHARS:
                self.report(number, f"the line is {len(line):,} characters long; a line may hold at most "
                                    f"{limits.MAX_LINE_CHARS:,}.")
                self.panel_count += 0 if self.in_cast else 1
                continue
            if self.in_cast:
                match = TAG_PATTERN.match(line)
                name = match.group(1).strip() if match else ""
                if name and name != NO_CHARACTER and name not in self.characters:
                    self.cast_line(number, name, line[match.end() :].strip())
                    continue
                if name in self.characters:
                    self.cast_ended_by_repeat = (number, name)
                self.in_cast = False
            elif self.blank_after_repeat and self.cast_ended_by_repeat is not None:
                # "[Ann] ...\n[Ann] ...\n\npanels": the blank line was meant to end the cast, so the
                # second [Ann] line is a second description, not the first panel.
                line_number, name = self.cast_ended_by_repeat
                self.report(line_number, f"[{name}] is already in the cast (line {self.defined_on[name]}); a "
                                         "character is described once. If this line is the first panel, leave a "
                                         "blank line after the cast.")
                self.cast_ended_by_repeat = None
            self.panel_line(number, line)
        if self.panel_count > limits.MAX_PANELS:
            self.problems.insert(0, ScriptProblem(0, f"The story has {self.panel_count} panels; a story may have "
                                                     f"at most {limits.MAX_PANELS}. Split it into parts."))
        if len(self.characters) > limits.MAX_CHARACTERS:
            self.problems.insert(0, ScriptProblem(0, f"The cast has {len(self.characters)} characters; a cast may "
                                                     f"have at most {limits.MAX_CHARACTERS}."))
        if self.panel_count == 0:
            example = f"[{self.example_name}] walks along the beach # A quiet morning."
            if not self.characters:
                example = f"[{NO_CHARACTER}] waves roll onto an empty beach # A quiet morning."
            self.report(0, f'The story has no panels; after the cast, write one panel per line, e.g. "{example}"')
        if len(self.problems) > limits.MAX_SCRIPT_PROBLEMS:
            more = len(self.problems) - limits.MAX_SCRIPT_PROBLEMS
            self.problems = self.problems[: limits.MAX_SCRIPT_PROBLEMS] + [
                ScriptProblem(0, f"... and {more} more problem(s); fix these first.")]
        if self.problems:
            raise ScriptError(self.problems)
        return Story(characters=list(self.characters.values()), panels=self.panels, title=title)

    def cast_line(self, number: int, name: str, description: str) -> None:
        self.cast_started = True
        if not name.isprintable():
            self.report(number, f"the character name [{name}] holds an invisible or control character; type the "
                                "name again with letters, digits, spaces and punctuation only.")
        if len(name) > limits.MAX_NAME_CHARS:
            self.report(number, f"the character name {limits.quote(name)} is {len(name)} characters long; a name "
                                f"may have at most {limits.MAX_NAME_CHARS}.")
        twin = next((known for known in self.characters if known.casefold() == name.casefold()), None)
        if twin is not None:
            self.report(
                number,
                f"character [{name}] is already defined as [{twin}] on line {self.defined_on[twin]}; "
                f"each character can be defined only once. If this line is a panel, write [{twin}] exactly.",
            )
            return
        if not description:
            self.report(
                number,
                f"character [{name}] has no description; write it after the name, "
                f'e.g. "[{name}] a young woman with red hair".',
            )
        else:
            tags, bracket_problems = _scan_tags(description, name)
            for message in bracket_problems:
                self.report(number, message)
            if tags:
                self.report(
                    number,
                    f"the description of [{name}] contains the tag [{tags[0][0]}]; "
                    "describe the character in plain words, without brackets.",
                )
        # registered even when faulty so later panels do not also report it as unknown
        self.characters[name] = Character(name, description)
        self.defined_on[name] = number

    def panel_line(self, number: int, line: str) -> None:
        self.panel_count += 1
        if self.first_panel_line is None:
            self.first_panel_line = number
        hash_at = line.rfind("#")
        body, caption = (line[:hash_at], line[hash_at + 1 :].strip()) if hash_at >= 0 else (line, "")

        tags, bracket_problems = _scan_tags(body, self.example_name)
        problems = list(bracket_problems)
        no_character_end: int | None = None
        names: list[str] = []
        for name, start, end in tags:
            if name == NO_CHARACTER:
                if start == 0 and no_character_end is None:
                    no_character_end = end
                else:
                    problems.append(
                        f"[{NO_CHARACTER}] must come at the very start of the line, before the picture description."
                    )
            elif name not in names:
                names.append(name)
        if no_character_end is not None and names:
            tagged = ", ".join(f"[{name}]" for name in names)
            problems.append(
                f'[{NO_CHARACTER}] means "no character", so it cannot be used together with {tagged}; '
                "remove one of them."
            )
        problems.extend(self.unknown_name(name) for name in names if name not in self.characters)

        prompt = (body[no_character_end:] if no_character_end is not None else body).strip()
        if not prompt and not bracket_problems:
            problems.append(
                "this panel has no picture description; write what the panel shows before the caption, "
                f'e.g. "[{NO_CHARACTER}] a lighthouse in the fog # The end."'
            )
        for message in problems:
            self.report(number, message)
        if not problems:
            self.panels.append(
                Panel(
                    key=f"panel-{self.panel_count}",
                    prompt=prompt,
                    caption=caption,
                    characters=names,
                    source_line=number,
                )
            )

    def unknown_name(self, name: str) -> str:
        known = list(self.characters)
        cast = f"characters: {', '.join(known)}" if known else "the cast is empty"
        message = f"[{name}] is not in the cast ({cast})."
        same_letters = [k for k in known if k.casefold() == name.casefold()]
        if same_letters:
            return f"{message} Did you mean [{same_letters[0]}]? Names must match the cast exactly, including capitals."
        folded = {k.casefold(): k for k in known}
        close = difflib.get_close_matches(name.casefold(), list(folded), n=1, cutoff=0.75)
        if close:
            return f"{message} Did you mean [{folded[close[0]]}]?"
        return (
            f"{message} New characters must be defined in the cast at the top, "
            f"before the first panel (line {self.first_panel_line})."
        )
