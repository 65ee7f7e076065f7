"""Checks that keep the code as it is meant to be: ruff, the import contracts, and pure project tests.

They run the real tools as the command line would (configured in pyproject.toml), so ``.ci/run``'s one
pytest command runs them too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, **kwargs)


def test_ruff_finds_nothing():
    result = _run([sys.executable, "-m", "ruff", "check", "--no-cache", "."])
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_hold():
    """project and engine import no Qt, engine no ui, project no torch; ui -> export -> engine -> project."""
    result = _run([str(BIN / "lint-imports"), "--no-cache"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout, result.stdout


def test_project_tests_run_without_torch_or_qt(tmp_path):
    """tests/project, run with torch, diffusers and Qt made impossible to import, still passes."""
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent("""
        import sys

        HIDDEN = {"torch", "PySide6", "shiboken6", "diffusers", "transformers", "accelerate"}

        class Hide:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in HIDDEN:
                    raise ModuleNotFoundError(f"{name} is hidden for this test", name=name)
                return None

        sys.meta_path.insert(0, Hide())
    """), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    hidden = _run([sys.executable, "-c", "import torch"], env=env)
    assert hidden.returncode != 0 and "hidden for this test" in hidden.stderr  # the hiding works
    result = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:pytest-qt", "-p", "no:cacheprovider",
                   "-W", "ignore::pytest.PytestConfigWarning", "tests/project"], env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
