"""Every option of ``storystudio render``, ``export`` and ``models`` against bad values: each is refused
with exit code 2 and one line on stderr that names the option or the value, no traceback, and nothing
written anywhere (the test's folders, the current folder, the model and data folders are compared
before and after).

The options are read from the parser itself, so an option added later is fuzzed too: its bad values
come from its kind (the bounds of a number, the length of a text, the choices), plus a seeded random
draw of values outside those bounds, plus the mistakes that only its meaning makes (a folder given for
a file, a model that is not one, a panel number the story does not have). Each command starts from a
command line that works (render with the tiny model, export of a saved project), so a bad value that
slips through is seen: the command then runs, writes, or says more than one line. A case that is still
running after ``CASE_SECONDS`` (a refusal takes milliseconds; a slipped value may start a long render) is
stopped there and reported, so a broken check fails the test quickly.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import random
import signal
from pathlib import Path

import pytest
from PIL import Image

from cli_helpers import cli, point_hf_cache
from storystudio.cli import build_parser

SEED = 2024
RANDOM_PER_OPTION = 3
CASE_SECONDS = 20  # the longest a case may run (a refused one takes about 10 ms)


class CaseTooSlow(Exception):
    """A case ran past ``CASE_SECONDS``: the value was not refused before real work began."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise CaseTooSlow in this (the main) thread once ``seconds`` have passed; no limit without SIGALRM."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise CaseTooSlow(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _leaves(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield words, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _leaves(sub, (*words, name))


def options() -> list[tuple[tuple[str, ...], argparse.Action]]:
    """Every option and positional argument that takes a value, of every subcommand."""
    out = []
    for words, parser in _leaves(build_parser()):
        for action in parser._actions:
            if action.nargs == 0 or isinstance(action, argparse._HelpAction):
                continue
            out.append((words, action))
    return out


def _kind(action: argparse.Action) -> tuple[str, dict]:
    kind = action.type
    if action.choices:
        return "choice", {"choices": list(action.choices)}
    if kind is None or kind is str:
        return "text", {"most": None}
    if kind is int:
        return "int", {}
    closure = inspect.getclosurevars(kind).nonlocals if hasattr(kind, "__code__") else {}
    name = kind.__qualname__.split(".")[0]
    return name.lstrip("_"), closure


def bad_values(action: argparse.Action, rng: random.Random) -> list[str]:
    """Values no option of this kind may take."""
    kind, bounds = _kind(action)
    junk = ["", " ", "x", "nan", "inf", "-inf", "1e999", "9" * 5000, "0x10", "1e3", "1.5.2", "²", "\u202e5", "5 5"]
    if kind == "whole":
        low, high = bounds["low"], bounds["high"]
        values = [str(low - 1), str(high + 1), "1.5", str(-(2**63)), str(2**64), *junk]
        values += [str(low - rng.randint(1, 10**6)) for _ in range(RANDOM_PER_OPTION)]
        values += [str(high + rng.randint(1, 10**30)) for _ in range(RANDOM_PER_OPTION)]
        return values
    if kind == "int":  # a plain int option: refused above 2**31 - 1 and below 0 like every seed and count
        return [str(2**64), "-1", "1.5", *junk]
    if kind in ("number", "rate"):
        low, high = bounds.get("low", 0), bounds.get("high", 1)
        values = [repr(low - 0.5), repr(high + 0.5), "1e308", "-1e308", *junk]
        values += [repr(high + rng.uniform(1e-3, 1e6)) for _ in range(RANDOM_PER_OPTION)]
        return values
    if kind == "size":
        return ["", "64", "64x", "x64", "0x0", "64x64x64", "-64x64", "99968x99968", "nanxnan", "64.5x64", "1e3x64",
                "64x" + "9" * 5000, "²x64"]
    if kind == "choice":
        first = str(action.choices[0] if not isinstance(action.choices, dict) else next(iter(action.choices)))
        values = ["", "nope", first.upper() if first.upper() != first else f"{first}!", "x" * 100_000]
        return values + ([f" {first}"] if action.type is None else [])  # int(" 12") is 12: a fine --fps
    if kind == "text" and bounds.get("most"):
        return ["x" * (bounds["most"] + 1), "x" * (bounds["most"] * 10)]
    if kind == "path":
        return ["", " ", "a\x00b", "p" * 5000]
    if kind == "guide_spec":  # N=IMAGE
        return ["", "x", "1", "=a.png", "1=", "x=a.png", "1.5=a.png", "-1=a.png", "9" * 5000 + "=a.png"]
    if kind == "pose_steps":  # START:END
        return ["", "0.5", "1:0", "0.5:0.5", "0:2", "-1:1", "nan:1", "0:inf", "a:b", "0:0.5:1", "1e999:1"]
    return []


def meaning_values(words: tuple[str, ...], option: str, place: Path) -> list[str]:
    """Mistakes that only an option's meaning makes: files that are folders, things that are not there."""
    folder, text_file = place / "a-folder", place / "notes.txt"
    missing = place / "gone" / "x"
    common = {
        "--out": [str(text_file), str(text_file / "sub")],
        "--model": [str(missing), str(text_file), str(folder), "nobody/nothing"],
        "--style": ["No such style"],
        "--panels": ["0", "99", "1,x", "1,,2", "-1", "²", "1-3"],
        "--banks": [str(missing), str(text_file)],
        "--config": [str(missing), str(text_file)],
        "--pdf": [str(folder), str(missing)], "--cbz": [str(folder), str(missing)],
        "--mp4": [str(folder), str(missing)], "--png": [str(text_file)],
        "--audio": [str(missing), str(text_file), str(folder)],
        "--token-file": [str(missing), str(folder)],
        **{guide: [f"1={missing}", f"1={text_file}", f"99={place / 'pose.png'}", f"0={place / 'pose.png'}",
                   f"²={place / 'pose.png'}"] for guide in ("--pose", "--depth", "--lineart")},
        "input": [str(missing), str(folder), str(place / "empty.story.txt"), str(place / "broken.storystudio")],
        "project": [str(missing), str(folder), str(text_file), str(place / "broken.storystudio")],
        "id": ["nope", "", "x" * 100_000] if words[-1] in ("download", "remove") else [],
        "path": [str(missing), str(folder), str(text_file), str(place / "fake.safetensors")],
        "dir": [str(text_file), str(place / "full")],
    }
    return common.get(option, [])


#: What a refusal of a positional argument may name instead of it: the story the script holds.
_ABOUT = {"input": ("the story",), "project": ("the project",)}


def _names(message: str, option: str, value: str) -> bool:
    """Whether a refusal says what it refuses: the option, (an excerpt of) the value, a piece of a list of
    values or the value's file name; for an argument, what it holds."""
    said = message.lower()
    pieces = [value, *value.replace("=", ",").split(",")]  # "1,x": a list; "1=IMAGE": a panel and a file
    for piece in pieces:
        excerpt = "".join(c for c in piece.strip()[:20] if c.isprintable()).lower()
        if f'"{excerpt}' in said or (len(excerpt) > 2 and excerpt in said):
            return True
    name = Path(value).name.lower()[:20] if value.strip() else ""
    return option.lower() in said or bool(name and name in said) or any(a in said for a in _ABOUT.get(option, ()))


def _tree(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folders`` with its size and modification time."""
    out = {}
    for root in folders:
        for item in [root, *root.rglob("*")]:
            stat = item.stat()
            out[str(item)] = (stat.st_size if item.is_file() else -1, stat.st_mtime_ns)
    return out


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A working folder with the things the meaning values name, and every other folder the commands
    might write kept inside the test's folder."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "a-folder").mkdir()
    (work / "notes.txt").write_text("not what it should be\n", encoding="utf-8")
    (work / "empty.story.txt").write_text("", encoding="utf-8")
    (work / "broken.storystudio").write_bytes(b"PK\x03\x04 not a zip")
    (work / "fake.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}" + b"\x00" * 94)
    Image.new("RGB", (64, 64)).save(work / "pose.png")
    (work / "full").mkdir()
    (work / "full" / "keep.txt").write_text("mine", encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    point_hf_cache(monkeypatch, home / "cache", home)
    monkeypatch.setenv("STORYSTUDIO_MODELS_DIR", str(home / "models"))
    monkeypatch.setenv("STORYSTUDIO_DATA_DIR", str(home / "data"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return work


def test_every_option_refuses_bad_values_in_one_line_and_writes_nothing(place, small_script, saved_project,
                                                                      tiny_model_dirs, tmp_path):
    rng = random.Random(SEED)
    out = place / "out"
    bases = {
        ("render",): [str(small_script), "--out", str(out), "--model", str(tiny_model_dirs["sd15"]),
                      "--steps", "1", "--size", "64x64", "--device", "cpu"],
        ("export",): [str(saved_project), "--pdf", str(place / "book.pdf")],
        ("models", "download"): ["sd15"],
        ("models", "import"): [str(tiny_model_dirs["sd15"])],
        ("models", "remove"): ["nothing-here"],
        ("models", "create-tiny"): [str(place / "tiny")],
    }
    cases: list[tuple[tuple[str, ...], str, list[str]]] = []
    fuzzed = set()
    for words, action in options():
        option = action.option_strings[0] if action.option_strings else action.dest
        values = bad_values(action, rng) + meaning_values(words, option, place)
        if not values:
            continue
        fuzzed.add((words, option))
        base = list(bases[words])
        for value in values:
            if action.option_strings:
                argv = [*words, *base, option, value]
                if option in ("--audio", "--fps", "--video-size", "--transition", "--camera", "--transition-seconds"):
                    argv += ["--mp4", str(place / "a.mp4")]  # used only with an animatic
            else:  # the positional argument itself
                argv = [*words, value, *base[1:]] if words in (("render",), ("export",)) else [*words, value]
            cases.append((words, option, argv))
    every = {(w, a.option_strings[0] if a.option_strings else a.dest) for w, a in options()}
    assert every == fuzzed, f"options without bad values: {sorted(every - fuzzed)}"
    assert {(("render",), "--steps"), (("export",), "--dpi"), (("models", "create-tiny"), "--seed"),
            (("render",), "input"), (("models", "import"), "path")} <= fuzzed

    before = _tree(tmp_path)
    wrong = []
    for words, option, argv in cases:
        value = argv[len(argv) - 1 - argv[::-1].index(option) + 1] if option in argv else argv[len(words)]
        shown = f"{' '.join(words)} {option} {value[:30]!r}"
        try:
            with time_limit(CASE_SECONDS):
                run = cli(*argv)
        except BaseException as exc:  # noqa: BLE001 - what this test is about
            wrong.append(f"{shown}: {type(exc).__name__}: {str(exc)[:150]}")
            continue
        lines = [line for line in run.err.splitlines() if line.strip()]
        if run.rc != 2 or len(lines) != 1 or run.out.strip():
            wrong.append(f"{shown}: exit {run.rc}, {len(lines)} lines: {run.err[-300:]!r} {run.out[-100:]!r}")
        elif not lines[0].startswith("storystudio") or "Traceback" in run.err or len(lines[0]) > 400:
            wrong.append(f"{shown}: {lines[0][:300]!r}")
        elif not _names(lines[0], option, value):
            wrong.append(f"{shown}: the message names neither the option nor the value: {lines[0][:300]!r}")
        after = _tree(tmp_path)
        if after != before:
            made = sorted(set(after) ^ set(before)) or [k for k in after if after[k] != before.get(k)]
            wrong.append(f"{shown}: wrote {made[:3]}")
            before = after
    print(f"{len(cases)} bad values for {len(fuzzed)} options")
    assert len(cases) > 300
    assert not wrong, f"{len(wrong)} of {len(cases)} went wrong:\n" + "\n".join(wrong[:40])
