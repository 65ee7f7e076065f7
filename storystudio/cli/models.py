"""``storystudio models ...``: list, download, import, remove, locate and create models.

Each model subcommand is checked and run here; the work is in ``engine.models``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..project import limits
from .base import Command, Stopped, UserError, interrupts, path, say, whole


class ModelsCommand(Command):
    name = "models"
    help = "list, download, import, remove, locate and create models"

    @classmethod
    def register(cls, subparsers) -> argparse.ArgumentParser:
        from .base import Parser

        m = subparsers.add_parser(cls.name, help=cls.help, description="Models StoryStudio can use.")
        msub = m.add_subparsers(dest="models_command", metavar="{list,download,import,remove,path,create-tiny}",
                                parser_class=Parser)
        msub.add_parser("list", help="the model catalog and the models on this computer, with their disk use")
        d = msub.add_parser("download", help="download a model of the catalog (with progress; run again to resume)",
                            description="Download a model of the catalog into the Hugging Face cache. Ctrl+C stops "
                                        "it; running the same command again continues where it stopped.")
        d.add_argument("id", metavar="ID", help='a catalog id, e.g. "sdxl-base" (storystudio models list shows them)')
        d.add_argument("--token-file", default=None, metavar="FILE", type=path("--token-file"),
                       help="a file holding a Hugging Face access token, for gated models")
        i = msub.add_parser("import", help="add a .safetensors checkpoint or a diffusers folder you have",
                            description="Add a model you have: a single .safetensors checkpoint (copied into "
                                        "StoryStudio's models folder) or a diffusers folder (used where it is). "
                                        "Every file is checked before it is added.")
        i.add_argument("path", metavar="PATH", type=path("PATH"))
        i.add_argument("--allow-pickle", action="store_true",
                       help="accept a pickled .ckpt/.bin checkpoint (only its weights are read; it is converted "
                            "to .safetensors)")
        i.add_argument("--copy", action="store_true", help="copy a diffusers folder instead of using it where it is")
        r = msub.add_parser("remove", help="delete a downloaded or imported model (added folders are only forgotten)")
        r.add_argument("id", metavar="ID", type=path("ID"),
                       help="a catalog id, a Hugging Face repository or an imported model's path")
        msub.add_parser("path", help="folders where StoryStudio looks for models")
        t = msub.add_parser("create-tiny", help="write a tiny random-weight model for tests and demos",
                            description="Write a tiny random-weight model (its images are noise) in the diffusers "
                                        "folder layout, built offline.")
        t.add_argument("dir", metavar="DIR", type=path("DIR"))
        t.add_argument("--arch", choices=["sd15", "sdxl"], default="sd15")
        t.add_argument("--seed", type=whole(0, limits.MAX_SEED, "--seed"), default=0)
        return m

    def check(self) -> None:
        if not self.args.models_command:
            raise UserError("say what to do with models: list, download, import, remove, path or create-tiny.")

    def run(self) -> int:
        command = self.args.models_command
        return {"create-tiny": _create_tiny, "path": _path, "list": _list, "download": _download,
                "import": _import, "remove": _remove}[command](self.args)


def _create_tiny(args) -> int:
    from ..engine.models.loading import quiet_libraries
    from ..engine.models.random_weights import create_tiny_model

    quiet_libraries()
    try:
        folder = create_tiny_model(args.dir, args.arch, seed=args.seed)
    except FileExistsError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:  # a file where the folder should be, no permission, a full disk
        raise UserError(f"the tiny model could not be written to {args.dir} ({exc.strerror or exc}).") from None
    print(f"Wrote a tiny random {args.arch} model to {folder} (its images are noise; for tests and demos).")
    return 0


def _path(args) -> int:
    from ..engine.models.base import model_folders

    for label, folder in model_folders().items():
        print(f"{label}: {folder}")
    return 0


def _bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _list(args) -> int:
    from ..engine.models.catalog import CatalogError, catalog
    from ..engine.models.library import installed_models
    from ..engine.models.base import model_folders

    try:
        entries = catalog()
        everything = installed_models()
    except CatalogError as exc:
        raise UserError(str(exc)) from None
    by_catalog = {m.catalog_id: m for m in everything if m.catalog_id}
    print("Catalog (storystudio models download ID):")
    for entry in entries:
        have = by_catalog.get(entry.id)
        if have is not None and have.state == "installed":
            state, size = "installed", _bytes(have.size_bytes)
        elif have is not None:
            state, size = f"partly ({_bytes(have.size_bytes)})", ("~" if entry.size_approximate else "") + _bytes(entry.size_bytes)
        else:
            state, size = "not downloaded", ("~" if entry.size_approximate else "") + _bytes(entry.size_bytes)
        gated = ", gated" if entry.gated else ""
        print(f"  {entry.id:<26} {state:<18} {size:>10}  {entry.name} [{entry.licence}{gated}]")
    others = [m for m in everything if m.source != "catalog"]
    if others:
        print("Other models on this computer:")
        for m in others:  # tab-separated: ID, architecture, size, folder
            print(f"{m.load_id}\t{m.arch}\t{m.size_bytes / 1e9:.1f} GB\t{m.where}")
    elif not by_catalog or all(m.state != "installed" for m in by_catalog.values()):
        print("No Stable Diffusion models were found on this computer.")
    total = {label: 0 for label in model_folders()}
    for m in everything:
        total["StoryStudio models" if m.source == "imported" else "Hugging Face cache"] += (
            m.size_bytes if m.source != "linked" else 0)
    names = {"Hugging Face cache": "the Hugging Face cache", "StoryStudio models": "StoryStudio's models folder"}
    print("Disk use: " + "; ".join(f"{_bytes(total[label])} in {names.get(label, label)} ({folder})"
                                   for label, folder in model_folders().items()))
    return 0


def _read_token(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        token = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UserError(f"the token file {path} cannot be read ({exc.strerror or exc}).") from None
    if not token or any(c.isspace() for c in token):
        raise UserError(f"the token file {path} does not hold one access token.")
    return token


def _download_printer():
    """A progress bar on stderr (a line now and then when stderr is not a terminal)."""
    tty = sys.stderr.isatty()
    last = {"line": time.monotonic()}  # without a terminal, the first line after 10 s

    def show(p) -> None:
        if p.stage not in ("downloading", "verifying", "waiting") or not p.bytes_total:
            return
        width = 24
        filled = int(width * p.fraction)
        speed = f"{_bytes(p.bytes_per_second)}/s" if p.bytes_per_second else "--"
        left = f"{_duration(p.seconds_left)} left" if p.seconds_left is not None else ""
        what = {"verifying": "checking", "waiting": "waiting for another download"}.get(p.stage, "")
        line = (f"[{'#' * filled}{'-' * (width - filled)}] {_bytes(p.bytes_done)} / {_bytes(p.bytes_total)}  "
                f"{speed}  {left}  {what or p.file.rsplit('/', 1)[-1]}")
        if tty:
            print("\r" + line[:110].ljust(110), end="", file=sys.stderr, flush=True)
        elif time.monotonic() - last["line"] >= 10:
            last["line"] = time.monotonic()
            say(line)

    return show


def _download(args) -> int:
    from ..engine.models.catalog import CatalogError, get_entry
    from ..engine.models.downloads import DownloadCancelled, DownloadError, download

    try:
        entry = get_entry(args.id)
    except CatalogError as exc:
        raise UserError(str(exc)) from None
    token = _read_token(args.token_file)
    started = time.perf_counter()
    size = ("about " if entry.size_approximate else "") + _bytes(entry.size_bytes)
    say(f"Downloading {entry.name} ({entry.repo}, {size}) ...")
    done = {"bytes": 0, "resumed": 0}
    printer = _download_printer()

    def progress(p) -> None:
        done.update(bytes=p.bytes_done, resumed=p.resumed_bytes)
        printer(p)

    try:
        with interrupts.soft() as stop:  # first Ctrl+C: stop cleanly; a second one stops at once
            folder = download(entry, token=token, progress=progress, cancelled=stop.is_set)
    except (DownloadCancelled, KeyboardInterrupt):
        raise Stopped("the download was stopped; run the same command again to continue where it stopped.") from None
    except DownloadError as exc:
        say("")
        raise UserError(str(exc)) from None
    except OSError as exc:
        say("")
        raise UserError(f"{entry.name} could not be saved ({exc.strerror or exc}).") from None
    say("")
    seconds = time.perf_counter() - started
    fetched = done["bytes"] - done["resumed"]
    if fetched > 0:
        say(f"Fetched {_bytes(fetched)} in {_duration(seconds)} ({_bytes(fetched / max(seconds, 1e-3))}/s)"
             + (f"; {_bytes(done['resumed'])} were already here." if done["resumed"] else "."))
    print(f"{entry.name} is installed in {folder}.")
    return 0


def _import(args) -> int:
    from ..engine.models.library import import_model
    from ..engine.errors import ModelError

    try:
        model = import_model(args.path, allow_pickle=args.allow_pickle, copy=args.copy)
    except ModelError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"{args.path} could not be imported ({exc.strerror or exc}).") from None
    arch = {"sd15": "SD1.5", "sd2": "SD2.x", "sdxl": "SDXL"}.get(model.arch or "", model.kind)
    if model.source == "linked":
        print(f"Added the {arch} model folder {model.where} (used where it is; removing it from StoryStudio "
              "leaves its files alone).")
    else:
        print(f"Imported the {arch} model as {model.where} ({_bytes(model.size_bytes)}).")
    return 0


def _remove(args) -> int:
    from ..engine.models.library import installed_models, remove_model
    from ..engine.errors import ModelError

    linked = {m.id for m in installed_models() if m.source == "linked"}
    try:
        freed = remove_model(args.id)
    except ModelError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"{args.id} could not be removed ({exc.strerror or exc}).") from None
    if args.id in linked or (freed == 0 and Path(args.id).expanduser().is_dir()):
        print(f"StoryStudio no longer uses {args.id}; its files were left where they are.")
    else:
        print(f"Removed {args.id} ({_bytes(freed)} freed).")
    return 0
