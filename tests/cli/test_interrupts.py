"""Ctrl+C at any moment: exit code 130 and one line, no ``.part`` file, never an output folder mixing two runs.

Real processes of the installed ``storystudio`` program get real SIGINTs: at moments spread over a whole
render (starting, importing, loading the model, drawing, writing, exporting, exiting), right after each
thing it says, twice in a row, and during a rerun into a folder that holds a finished render.

The interpreter's own start, before any StoryStudio code runs, is Python's: a SIGINT that lands there
ends with Python's message. Such an outcome is recognised by its traceback naming no StoryStudio file,
and counted apart; every other one must be ours.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers import SMALL_STORY

EXE = Path(sys.executable).parent / "storystudio"
PACKAGE = str(Path(__file__).resolve().parents[2] / "storystudio")


@dataclass
class Outcome:
    rc: int
    err: str
    said: list[tuple[float, str]] = field(default_factory=list)  # (seconds after start, line) on stderr


def launch(args: list, env: dict, signals: list[float] = (), on_line: tuple[str, int] | None = None) -> Outcome:
    """Run ``storystudio ARGS``; send SIGINT at each time in ``signals`` (seconds after start), or ``on_line``
    = (text, count): that many SIGINTs 50 ms apart as soon as a line containing the text is printed."""
    started = time.monotonic()
    proc = subprocess.Popen([str(EXE), *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env)
    said: list[tuple[float, str]] = []
    seen = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            said.append((time.monotonic() - started, line.rstrip("\n")))
            if on_line and on_line[0] in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if on_line:
        if seen.wait(120):
            for _ in range(on_line[1]):
                with _quiet(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)
                time.sleep(0.05)
    for at in signals:
        time.sleep(max(0.0, started + at - time.monotonic()))
        with _quiet(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
    rc = proc.wait(180)
    reader.join(10)
    return Outcome(rc, "\n".join(line for _, line in said), said)


class _quiet:
    def __init__(self, *kinds):
        self.kinds = kinds

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is not None and issubclass(kind, self.kinds)


def before_our_code(outcome: Outcome) -> bool:
    """A SIGINT that came while the interpreter itself was starting: killed before Python set up its own
    handler (nothing said), or Python's traceback naming none of our files."""
    if outcome.rc == -signal.SIGINT and not outcome.err.strip():
        return True
    return "KeyboardInterrupt" in outcome.err and PACKAGE not in outcome.err and outcome.rc in (1, -signal.SIGINT)


def run_files(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.json"}


def check(outcome: Outcome, root: Path, out: Path) -> str:
    """What the interrupted run left, checked; returns "stopped", "finished" or "before start"."""
    assert not list(root.rglob("*.part")), sorted(root.rglob("*.part"))
    assert not [p for p in root.rglob("*storystudio-render-*")], "a staging folder was left"
    if before_our_code(outcome):
        assert not out.exists()
        return "before start"
    assert "Traceback" not in outcome.err and "KeyboardInterrupt" not in outcome.err, outcome.err
    assert outcome.rc in (0, 130), (outcome.rc, outcome.err)
    if outcome.rc == 130:
        lines = [line for line in outcome.err.splitlines() if line.strip()]
        assert lines[-1].startswith("storystudio: stopped"), outcome.err
        assert sum("stopped" in line for line in lines) == 1, outcome.err
    if out.exists():  # a run is there only whole: its manifest lists exactly what is there
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        assert set(manifest["files"]) == run_files(out) - {"comic.pdf"}, (manifest["files"], run_files(out))
        assert manifest["status"] in ("complete", "cancelled")
        if manifest["status"] == "cancelled":
            assert outcome.rc == 130
    return "stopped" if outcome.rc == 130 else "finished"


@pytest.fixture(scope="module")
def setting(tmp_path_factory, tiny_model_dirs):
    root = tmp_path_factory.mktemp("interrupts")
    script = root / "small.story.txt"
    script.write_text(SMALL_STORY, encoding="utf-8")
    env = {**os.environ, "STORYSTUDIO_DATA_DIR": str(root / "data"), "HF_HUB_OFFLINE": "1"}
    env.pop("PYTEST_CURRENT_TEST", None)
    return root, script, env, tiny_model_dirs["sd15"]


def render_args(script: Path, out: Path, model: Path) -> list:
    return ["render", script, "--out", out, "--model", model, "--steps", "2", "--size", "64x64", "--device", "cpu",
            "--pdf", out / "comic.pdf"]


def test_ctrl_c_at_any_moment_of_a_render(setting):
    root, script, env, model = setting
    whole = launch(render_args(script, root / "timing", model), env)
    assert whole.rc == 0, whole.err
    duration = whole.said[-1][0] + 0.5  # past the last line: the interpreter is shutting down
    outcomes: dict[str, int] = {}
    moments = [0.05 + duration * k / 9 for k in range(10)]  # spread over the whole run, exit included
    cases = [{"signals": [at]} for at in moments]
    # right after each thing it says: checked, loading, loaded, drawing, written, exported
    for text in ("Loading", "Model ready", "pictures] step", "Wrote 6 image(s)", "Wrote the PDF"):
        cases.append({"on_line": (text, 1)})
    cases.append({"on_line": ("pictures] step", 2)})  # a second Ctrl+C stops at once
    for number, case in enumerate(cases):
        work = root / f"run-{number}"
        work.mkdir()
        outcome = launch(render_args(script, work / "out", model), env, **case)
        kind = check(outcome, work, work / "out")
        outcomes[kind] = outcomes.get(kind, 0) + 1
    print(f"{len(cases)} interrupted renders over {duration:.1f} s: {outcomes}")
    assert outcomes.get("stopped", 0) >= len(cases) - 4, outcomes  # nearly all landed while it ran
    assert outcomes.get("before start", 0) <= 1, outcomes


def test_ctrl_c_during_a_rerun_leaves_the_finished_render_as_it_was(setting):
    root, script, env, model = setting
    out = root / "rerun" / "out"
    first = launch(render_args(script, out, model), env)
    assert first.rc == 0, first.err
    before = {name: (out / name).read_bytes() for name in sorted(run_files(out) | {"manifest.json"})}
    for text, count in (("pictures] step", 1), ("Model ready", 1), ("pictures] step", 2)):
        outcome = launch(render_args(script, out, model), env, on_line=(text, count))
        assert check(outcome, root / "rerun", out) == "stopped", outcome.err
        assert {name: (out / name).read_bytes() for name in sorted(run_files(out) | {"manifest.json"})} == before


def test_ctrl_c_while_drawing_in_a_fresh_folder_leaves_no_folder(setting):
    """References and panels are denoised together, so a stop while drawing finishes no picture: nothing is
    written, and the one line says so."""
    root, script, env, model = setting
    out = root / "fresh" / "out"
    outcome = launch(render_args(script, out, model), env, on_line=("pictures] step 1/", 1))
    assert check(outcome, root / "fresh", out) == "stopped"
    assert not out.exists()
    assert outcome.err.splitlines()[-1] == f"storystudio: stopped before any picture was finished; {out} was left as it was."


def test_ctrl_c_during_an_export(setting, tmp_path):
    from pypdf import PdfReader

    from helpers import COLOURS, flat_png
    from storystudio.project.fileio import save_project
    from storystudio.project.model import Project

    root, script, env, model = setting
    project = Project.example()
    for panel, colour in zip(project.panels, COLOURS):
        project.add_version(panel.id, flat_png(colour, (512, 512)), {"seed": 1})
    save_project(project, tmp_path / "p.storystudio")
    args = ["export", tmp_path / "p.storystudio", "--pdf", tmp_path / "p.pdf", "--png", tmp_path / "pages",
            "--dpi", "300"]
    whole = launch(args, env)
    assert whole.rc == 0, whole.err
    duration = whole.said[-1][0]
    for k in range(1, 5):
        for leftover in (tmp_path / "p.pdf", *(tmp_path / "pages").glob("*")):
            leftover.unlink(missing_ok=True)
        outcome = launch(args, env, signals=[duration * k / 5])
        assert not list(tmp_path.rglob("*.part"))
        if before_our_code(outcome):
            continue
        assert outcome.rc in (0, 130) and "Traceback" not in outcome.err, outcome.err
        if (tmp_path / "p.pdf").exists():  # only ever whole
            assert len(PdfReader(tmp_path / "p.pdf").pages) == 2
