"""Build the StoryStudio desktop bundle from this tree (PyInstaller), on Linux, Windows or macOS.

    python3 packaging/build.py                      fresh build environment in build/bundle-venv, the bundle in
                                                    dist/, and its archive beside it
    python3 packaging/build.py --torch-spec torch==2.13.0 --torch-index pypi
                                                    take torch from the ordinary index (here: this machine's disk)

What it makes, by platform (PyInstaller builds only for the platform it runs on):
- Linux:   dist/storystudio/ (one folder; dist/storystudio/storystudio is the program) and
           dist/storystudio-VERSION-linux-ARCH.tar.gz
- Windows: dist/StoryStudio/ (StoryStudio.exe, storystudio-cli.exe) and dist/storystudio-VERSION-windows-ARCH.zip;
           then Inno Setup's compiler on packaging/windows/storystudio.iss makes the installer
- macOS:   dist/StoryStudio.app and dist/storystudio-VERSION-macos-ARCH.zip (ditto keeps its links and metadata)

The bundle carries its own Python, PyTorch (the CPU build unless --torch says otherwise: a CUDA
bundle is several GB), Qt, and StoryStudio's data; the machine it runs on needs no Python.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYINSTALLER = ("pyinstaller==6.22.3", "pyinstaller-hooks-contrib==2026.9")


def _load_installer():
    spec = importlib.util.spec_from_file_location("storystudio_install", HERE / "install.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def version() -> str:
    text = (ROOT / "storystudio" / "__init__.py").read_text(encoding="utf-8")
    return text.split('__version__ = "')[1].split('"')[0]


def platform_tag() -> str:
    system = {"Linux": "linux", "Windows": "windows", "Darwin": "macos"}[platform.system()]
    arch = {"amd64": "x86_64", "aarch64": "arm64"}.get(platform.machine().lower(), platform.machine().lower())
    return f"{system}-{arch}"


def run(argv, **kwargs) -> None:
    print("+", " ".join(map(str, argv)), flush=True)
    subprocess.run([str(a) for a in argv], check=True, **kwargs)


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def archive(dist: Path, bundle: Path, name: str) -> Path:
    system = platform.system()
    if system == "Linux":
        out = dist / f"{name}.tar.gz"
        with tarfile.open(out, "w:gz", compresslevel=6) as tar:
            tar.add(bundle, arcname=bundle.name)
    elif system == "Darwin":
        out = dist / f"{name}.zip"
        run(["ditto", "-c", "-k", "--keepParent", bundle, out])
    else:
        out = Path(shutil.make_archive(str(dist / name), "zip", dist, bundle.name))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=ROOT / "build" / "bundle-venv",
                        help="the build environment (made fresh unless --reuse-venv)")
    parser.add_argument("--reuse-venv", action="store_true", help="keep an existing build environment")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="where the bundle and archive go")
    parser.add_argument("--torch", default="cpu", help="the PyTorch build to bundle (default cpu; see install.py)")
    parser.add_argument("--torch-spec", default=None, help="the torch requirement (default pyproject.toml's)")
    parser.add_argument("--torch-index", default=None,
                        help='index for torch ("pypi": the ordinary one; default the PyTorch index of --torch)')
    parser.add_argument("--no-archive", action="store_true", help="only the bundle folder")
    args = parser.parse_args(argv)
    installer = _load_installer()
    started = time.monotonic()
    system = platform.system()
    work = ROOT / "build"
    work.mkdir(exist_ok=True)

    # 1. a clean environment with exactly what the bundle carries (no test tools, no editable install)
    if args.venv.exists() and not args.reuse_venv:
        shutil.rmtree(args.venv)
    for stale in (work / "lib", *work.glob("bdist.*")):  # setuptools' leftovers could bring back removed files
        shutil.rmtree(stale, ignore_errors=True)
    machine = installer.detect_machine()
    choice = installer.choose(machine, args.torch)
    steps = installer.plan(choice, machine, venv=args.venv, tool="pip", python=sys.executable, project=str(ROOT),
                           editable=False, torch_spec=args.torch_spec, torch_index=args.torch_index, desktop=False,
                           venv_exists=installer.venv_python(args.venv, system).exists())
    for step in steps:
        run(step.argv)
    py = installer.venv_python(args.venv, system)
    run([py, "-m", "pip", "install", *PYINSTALLER])

    # 2. the platform icon files, from the committed PNGs
    icons = work / "icons"
    run([py, HERE / "make_icons.py", "--ico", icons / "storystudio.ico", "--icns", icons / "storystudio.icns"])

    # 3. the bundle
    env = dict(os.environ, STORYSTUDIO_ICONS=str(icons))
    run([py, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN", "--distpath", args.dist,
         "--workpath", work / "pyinstaller", HERE / "storystudio.spec"], env=env, cwd=work)  # not ROOT: the
    # tree's storystudio/ would shadow the installed package, whose resources/ is inside it
    bundle = args.dist / {"Linux": "storystudio", "Windows": "StoryStudio", "Darwin": "StoryStudio.app"}[system]
    print(f"bundle: {bundle} ({folder_size(bundle) / 2**20:.0f} MiB)")

    # 4. the one file to hand out
    if not args.no_archive:
        out = archive(args.dist, bundle, f"storystudio-{version()}-{platform_tag()}")
        print(f"archive: {out} ({out.stat().st_size / 2**20:.0f} MiB)")
    print(f"built in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
