"""Every data file in resources/ goes into the wheel (and so into the bundle), by pyproject's package-data."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_resource_file_is_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    packages = {name: ROOT / folder for name, folder in config["package-dir"].items()}
    patterns = config["package-data"]
    missing = []
    for path in sorted((ROOT / "resources").rglob("*")):
        if not path.is_file() or path.suffix in (".py", ".pyc"):
            continue
        # the deepest package holding the file decides which patterns apply
        owners = [(name, folder) for name, folder in packages.items() if path.is_relative_to(folder)]
        owners += [(f"storystudio.resources.{p.name}", p) for p in (ROOT / "resources").iterdir()
                   if (p / "__init__.py").exists() and path.is_relative_to(p)]
        name, folder = max(owners, key=lambda o: len(o[1].parts))
        relative = path.relative_to(folder).as_posix()
        if not any(fnmatch.fnmatchcase(relative, pattern) and relative.count("/") == pattern.count("/")
                   for pattern in patterns.get(name, [])):
            missing.append(path.relative_to(ROOT).as_posix())
    assert missing == []
    assert (ROOT / "resources" / "icons" / "storystudio-512.png").is_file()  # the check above saw the icons


def test_every_package_is_listed():
    """pyproject names its packages one by one (resources/ is mapped into the package): a new subpackage
    missing there is missing from every wheel and bundle, while an editable install still works."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "storystudio").rglob("__init__.py")}
    assert found - set(config["packages"]) == set()
