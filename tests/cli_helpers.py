"""Running ``storystudio`` in this process as the console script would, and checking what it says."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub.constants
import numpy as np
from PIL import Image

from storystudio.cli import main

FAST = ["--steps", "2", "--size", "64x64", "--device", "cpu"]
PNG_KEYS = ("prompt", "negative_prompt", "seed", "steps", "guidance", "width", "height", "model", "consistency")
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"  # a 40-hex commit hash


@dataclass
class Run:
    rc: int
    out: str
    err: str


def cli(*argv) -> Run:
    """Run ``storystudio`` in this process, as the console script would, capturing its output."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse ends with SystemExit; the console script turns it into the exit code
            rc = exc.code
    return Run(rc, out.getvalue(), err.getvalue())


def pngs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png"))


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def assert_plain_error(run: Run, *fragments: str) -> None:
    """Exit code 2 and a message in plain words, ending with the one ``storystudio:`` line."""
    assert run.rc == 2, (run.rc, run.err)
    assert "Traceback" not in run.err and "Traceback" not in run.out
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert lines, "no message on stderr"
    assert any(line.startswith("storystudio") for line in lines), run.err
    for fragment in fragments:
        assert fragment in run.err, (fragment, run.err)


def point_hf_cache(monkeypatch, cache: Path, home: Path) -> None:
    """Make the Hugging Face cache (and StoryStudio's own model folder) live in test folders."""
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(home / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    # huggingface_hub reads HF_HUB_CACHE once, at import; everything downstream reads this attribute.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
