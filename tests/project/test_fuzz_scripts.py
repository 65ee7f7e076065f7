"""The story script reader against 1,200 hostile scripts: random bytes, other encodings, long lines,
bracket storms, shuffled and damaged copies of the example, NUL and control characters, huge casts.

Each one gives a story whose every panel can be expanded for the engine (and written back as a script
that reads the same), or a ScriptError whose problems are short printable sentences, at most
``limits.MAX_SCRIPT_PROBLEMS`` of them plus a count. Seeded.
"""

from __future__ import annotations

import random
from collections import Counter

from helpers import EXAMPLE
from storystudio.project import limits
from storystudio.project.model import Project
from storystudio.project.script import ScriptError, format_script, load_script, parse_script

SEED = 99
PIECES = ["[", "]", "[Mira]", "[Tobias]", "[NC]", "[]", "[ ]", "#", "//", "\n", "\r\n", "\r", "\t", "\x00", "\x0c",
          "\ufeff", "\u202e", "é", "😀", "  ", "[mira]", "[Mira", "Mira]", "[[Mira]]", "# #", "[Zed]", "\u2028"]


def scripts(rng: random.Random) -> list[tuple[str, bytes]]:
    """(what, file bytes) for every kind of hostile script."""
    real = EXAMPLE.read_text(encoding="utf-8")
    lines = real.splitlines()
    out: list[tuple[str, bytes]] = []
    for n in range(150):
        out.append((f"random bytes {n}", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))))
    for encoding in ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252", "utf-8-sig", "utf-7"):
        try:
            out.append((f"the example in {encoding}", real.replace("—", "-").encode(encoding, errors="replace")))
        except LookupError:
            continue
    for n in range(300):  # the example with pieces thrown in
        text = list(real)
        for _ in range(rng.randint(1, 12)):
            text.insert(rng.randrange(len(text) + 1), rng.choice(PIECES))
        out.append((f"the example with pieces {n}", "".join(text).encode("utf-8")))
    for n in range(300):  # lines deleted, doubled, swapped, cut
        mixed = list(lines)
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(len(mixed))
            action = rng.choice(["delete", "double", "swap", "cut"])
            if action == "delete" and len(mixed) > 1:
                del mixed[i]
            elif action == "double":
                mixed.insert(i, mixed[i])
            elif action == "swap":
                j = rng.randrange(len(mixed))
                mixed[i], mixed[j] = mixed[j], mixed[i]
            else:
                mixed[i] = mixed[i][: rng.randrange(len(mixed[i]) + 1)]
        out.append((f"the example with lines moved {n}", "\n".join(mixed).encode("utf-8")))
    for n in range(200):  # random text from the pieces alone
        text = "".join(rng.choice(PIECES + ["a girl", "walks", " "]) for _ in range(rng.randrange(1, 300)))
        out.append((f"pieces only {n}", text.encode("utf-8")))
    for length in (limits.MAX_LINE_CHARS, limits.MAX_LINE_CHARS + 1, 50_000, 900_000):
        out.append((f"a line of {length}", (real + "[Mira] " + "x" * length + "\n").encode("utf-8")))
        out.append((f"a bracket storm of {length}", (real + "[" * length + "\n").encode("utf-8")))
        out.append((f"a ]-storm of {length}", (real + "]" * length + "\n").encode("utf-8")))
    out.append(("just over the size limit", b"[NC] fog\n" * (limits.MAX_SCRIPT_BYTES // 9 + 1)))
    out.append(("a thousand panels", ("[NC] fog\n" * (limits.MAX_PANELS + 1)).encode()))
    out.append(("a huge cast", "".join(f"[C{i}] person {i}\n" for i in range(limits.MAX_CHARACTERS + 1)).encode()
                + b"\n[C1] waves\n"))
    out.append(("every problem at once", ("[Zed] x\n[\n]\n[]\n# x\n[NC] [Mira]\n" * 200).encode()))
    while len(out) < 1200:
        out.append((f"random unicode {len(out)}", "".join(chr(rng.randrange(1, 0x2FFFF)) for _ in range(200))
                    .encode("utf-8", errors="replace")))
    return out


def test_hostile_scripts_read_or_are_refused_in_short_sentences(tmp_path):
    rng = random.Random(SEED)
    found = scripts(rng)
    assert len(found) >= 1000
    outcomes: Counter[str] = Counter()
    wrong: list[str] = []
    file = tmp_path / "s.story.txt"
    for what, data in found:
        file.write_bytes(data)
        try:
            story = load_script(file)
        except ScriptError as exc:
            problems = exc.problems
            if not 1 <= len(problems) <= limits.MAX_SCRIPT_PROBLEMS + 1:
                wrong.append(f"{what}: {len(problems)} problems")
            for problem in problems:
                text = str(problem)
                if len(text) > 400 or not text.isprintable():  # no control or text-direction characters
                    wrong.append(f"{what}: a problem that is not a short printable sentence: {text[:120]!r}")
            if len(str(exc)) > 10_000:
                wrong.append(f"{what}: the whole message is {len(str(exc))} characters")
            outcomes["refused"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - what this test is about
            wrong.append(f"{what}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        try:
            for panel in story.panels:
                story.expand(panel)  # every tag names the cast: the engine can draw it
            again = parse_script(format_script(story))
            assert [(c.name, c.description) for c in again.characters] == [
                (c.name, c.description.strip()) for c in story.characters]
            assert [p.characters for p in again.panels] == [p.characters for p in story.panels]
            Project.from_story(story).to_story()
        except Exception as exc:  # noqa: BLE001
            wrong.append(f"{what}: read, but {type(exc).__name__}: {str(exc)[:200]}")
            continue
        outcomes["read"] += 1
    print(f"{len(found)} scripts: {dict(outcomes)}")
    assert not wrong, f"{len(wrong)} went wrong:\n" + "\n".join(wrong[:30])
    assert outcomes["read"] > 100 and outcomes["refused"] > 500
