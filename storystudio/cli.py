"""The ``storystudio`` command: the desktop app, and the same engine headless.

    storystudio [PROJECT]                 start the app
    storystudio render INPUT [options]    generate a story's panels without a window
    storystudio models ...                list, locate and create models

User mistakes end with one plain sentence on stderr and a non-zero exit code,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import __version__

EXIT_USER = 2
EXIT_CANCELLED = 130


class UserError(Exception):
    """A mistake in what the user asked for; the message is shown as it is."""


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f'"{text}" is not a size; write it as WIDTHxHEIGHT, e.g. 768x768') from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError("width and height must be positive")
    return w, h


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'"{text}" is not a number between 0 and 1') from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("the consistency rate must be between 0 and 1")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one plain sentence, not a usage dump
        self.exit(EXIT_USER, f"{self.prog}: {message[0].upper() + message[1:]}. See {self.prog} --help.\n")


def build_parser() -> argparse.ArgumentParser:
    from .engine.story_pipeline import SCHEDULERS
    from .engine.styles import default_style, style_names

    root = _Parser(prog="storystudio", description="Comics with the same characters in every panel.")
    root.add_argument("--version", action="version", version=f"StoryStudio {__version__}")
    sub = root.add_subparsers(dest="command", metavar="{render,models}", parser_class=_Parser)

    r = sub.add_parser("render", help="generate a story's panels headlessly",
                       description="Generate every panel of a story script without opening the app.")
    r.add_argument("input", metavar="INPUT", help="a story script (.txt) in the StoryDiffusion demo syntax")
    r.add_argument("--out", required=True, metavar="DIR", help="folder for the panel PNGs and manifest.json")
    r.add_argument("--model", required=True, metavar="ID_OR_PATH",
                   help="a diffusers folder, a .safetensors checkpoint, or a Hugging Face id in the local cache")
    r.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    r.add_argument("--dtype", default="auto", choices=["auto", "fp16", "bf16", "fp32"], help="precision")
    r.add_argument("--steps", type=int, default=35, help="denoising steps (default 35)")
    r.add_argument("--size", type=_size, default=(768, 768), metavar="WxH", help="panel size (default 768x768)")
    r.add_argument("--seed", type=int, default=0, help="story seed; each panel's seed derives from it")
    r.add_argument("--style", default=None,
                   help=f"style template: {', '.join(style_names())} (default {default_style()})")
    r.add_argument("--guidance", type=float, default=5.0, help="classifier-free guidance (default 5.0)")
    r.add_argument("--negative", default="", help="extra negative prompt")
    r.add_argument("--scheduler", default="ddim", choices=list(SCHEDULERS))
    r.add_argument("--id-length", type=int, default=4, help="reference images per character (default 4)")
    r.add_argument("--rate", type=_rate, default=None,
                   help="consistency strength: share of tokens borrowed between images (default 0.5)")
    r.add_argument("--no-freeu", action="store_true", help="turn FreeU off")
    r.add_argument("--batch-size", type=int, default=1, help="panels generated together in the read phase")
    r.add_argument("--panels", default=None, metavar="N[,N...]",
                   help="only these panels (1-based numbers); others are left as they are")
    r.add_argument("--banks", default=None, metavar="DIR",
                   help="reuse character banks saved by --save-banks instead of generating references again")
    r.add_argument("--save-banks", action="store_true", help="save each character's bank in OUT/banks/")
    r.add_argument("--allow-download", action="store_true", help="download the model if it is not on this computer")
    r.add_argument("--config", default=None, metavar="DIR",
                   help="configuration folder for a single-file checkpoint (else the local Hugging Face cache)")
    r.add_argument("--pdf", default=None, metavar="FILE", help="also export a PDF comic (not available yet)")
    r.add_argument("--mp4", default=None, metavar="FILE", help="also export an MP4 animatic (not available yet)")

    m = sub.add_parser("models", help="list, locate and create models",
                       description="Models StoryStudio can use.")
    msub = m.add_subparsers(dest="models_command", metavar="{list,path,create-tiny}", parser_class=_Parser)
    msub.add_parser("list", help="models found on this computer")
    msub.add_parser("path", help="folders where StoryStudio looks for models")
    t = msub.add_parser("create-tiny", help="write a tiny random-weight model for tests and demos",
                        description="Write a tiny random-weight model (its images are noise) in the diffusers "
                                    "folder layout, built offline.")
    t.add_argument("dir", metavar="DIR")
    t.add_argument("--arch", choices=["sd15", "sdxl"], default="sd15")
    t.add_argument("--seed", type=int, default=0)
    return root


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in ("render", "models") and not argv[0].startswith("-")):
        return _start_app(argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "render":
            return render(args)
        if args.command == "models":
            return models(args)
    except UserError as exc:
        print(f"storystudio: {exc}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("storystudio: stopped.", file=sys.stderr)
        return EXIT_CANCELLED
    return 0


def _start_app(argv: list[str]) -> int:
    if len(argv) > 1:
        print("storystudio: give at most one project to open. See storystudio --help.", file=sys.stderr)
        return EXIT_USER
    from .ui.app import run_app

    return run_app(argv[0] if argv else None)


# ---- render -------------------------------------------------------------------------
def _load_story(path: str):
    from .project.script import ScriptError, load_script

    if path.endswith(".storystudio"):
        raise UserError(
            "rendering a .storystudio project from the command line is not built yet; open it in the app, "
            "or export its story script there (File > Export Story Script) and render that."
        )
    try:
        return load_script(path)
    except ScriptError as exc:
        if len(exc.problems) == 1:
            raise UserError(str(exc)) from None
        raise UserError(f"the story script {path} has {len(exc.problems)} problems:\n{exc}") from None


def _settings(args):
    from .engine.consistent_attention import ConsistencyConfig
    from .engine.story_pipeline import GenerationSettings

    consistency = ConsistencyConfig() if args.rate is None else ConsistencyConfig(rate_coarse=args.rate, rate_fine=args.rate)
    w, h = args.size
    return GenerationSettings(
        steps=args.steps, width=w, height=h, guidance=args.guidance, seed=args.seed, style=args.style,
        negative_prompt=args.negative, scheduler=args.scheduler, freeu=not args.no_freeu,
        id_length=args.id_length, batch_size=args.batch_size, consistency=consistency,
    )


def render(args) -> int:
    if args.pdf or args.mp4:
        what = "PDF comic" if args.pdf else "MP4 animatic"
        raise UserError(f"{what} export is not built yet; render the panels without --{'pdf' if args.pdf else 'mp4'}.")
    story = _load_story(args.input)
    settings = _settings(args)
    try:
        settings.validate()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    numbered = {p.key: i for i, p in enumerate(story.panels, 1)}
    only = _panel_selection(args.panels, story)
    out = Path(args.out)
    _check_writable(out)
    from .engine.bank import CharacterBank
    from .engine.imaging import save_png
    from .engine.models import ModelError, load_model, quiet_libraries
    from .engine.story_pipeline import GenerationCancelled, StoryPipeline

    quiet_libraries()
    banks = _load_banks(args.banks, story, CharacterBank) if args.banks else {}
    started = time.perf_counter()
    _say(f"Loading {args.model} ...")
    try:
        model = load_model(args.model, device=args.device, dtype=args.dtype,
                           allow_download=args.allow_download, config=args.config)
    except ModelError as exc:
        raise UserError(str(exc)) from None
    load_seconds = time.perf_counter() - started
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder {out} ({exc.strerror}).") from None
    _say(f"Model ready on {model.device.type} ({str(model.dtype).removeprefix('torch.')}) in {load_seconds:.1f} s.")

    files: dict[str, str] = {}

    def file_name(key: str) -> str:
        return f"panel-{numbered[key]:03d}.png" if key in numbered else f"{key}.png"

    def on_image(img) -> None:
        name = file_name(img.key)
        save_png(img.image, out / name, img.parameters)
        files[img.key] = name

    engine = StoryPipeline(model)
    status = "complete"
    try:
        result = engine.render(story, settings, progress=_progress_printer(), banks=banks, only=only, on_image=on_image)
    except GenerationCancelled:
        status, result = "cancelled", None
    except KeyboardInterrupt:
        status, result = "cancelled", None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    finally:
        _say("")
    total_seconds = time.perf_counter() - started
    if result is not None:
        for message in result.messages:
            _say(f"note: {message}")
        if args.save_banks:
            (out / "banks").mkdir(exist_ok=True)
            for name, bank in result.banks.items():
                bank.save(out / "banks" / f"{_safe(name)}.safetensors")
    manifest = _manifest(args, story, settings, model, result, files, status, load_seconds, total_seconds, numbered)
    _write_json(out / "manifest.json", manifest)
    if status == "cancelled":
        _say(f"Stopped. {len(files)} image(s) were written to {out}.")
        return EXIT_CANCELLED
    _say(f"Wrote {len(files)} image(s) and manifest.json to {out} in {total_seconds:.1f} s.")
    return 0


def _check_writable(out: Path) -> None:
    """Refuse an output folder that cannot be made before spending minutes on the model."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file, not a folder; choose another --out.")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UserError(f"cannot write into {parent}; choose another --out.")


def _panel_selection(spec: str | None, story) -> list[str] | None:
    if not spec:
        return None
    keys = []
    for part in spec.split(","):
        part = part.strip()
        if not part.isdigit() or not 1 <= int(part) <= len(story.panels):
            raise UserError(f'"{part}" is not a panel number of this story (1 to {len(story.panels)}).')
        keys.append(story.panels[int(part) - 1].key)
    return keys


def _load_banks(folder: str, story, bank_cls) -> dict:
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"the bank folder {root} does not exist.")
    banks = {}
    for character in story.characters:
        path = root / f"{_safe(character.name)}.safetensors"
        if path.is_file():
            try:
                banks[character.name] = bank_cls.load(path)
            except ValueError as exc:
                raise UserError(str(exc)) from None
    return banks


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _manifest(args, story, settings, model, result, files, status, load_seconds, total_seconds, numbered) -> dict:
    from .engine.models import device_summary

    panels = []
    images = result.images if result else {}
    for panel in story.panels:
        entry = {"number": numbered[panel.key], "key": panel.key, "prompt": panel.prompt, "caption": panel.caption,
                 "characters": panel.characters, "file": files.get(panel.key)}
        if panel.key in images:
            img = images[panel.key]
            entry.update(role=img.role, seed=img.parameters["seed"], full_prompt=img.parameters["prompt"],
                         negative_prompt=img.parameters["negative_prompt"], seconds=round(img.seconds, 3))
        panels.append(entry)
    sheets = [{"key": s.key, "file": files.get(s.key), "seed": s.parameters["seed"],
               "characters": s.parameters["characters"]} for s in (result.sheets if result else [])]
    timings = {"model_load_seconds": round(load_seconds, 3), "total_seconds": round(total_seconds, 3)}
    if result:
        for phase, secs in result.unet_calls.items():
            if secs:
                timings[f"{phase}_unet_calls"] = len(secs)
                timings[f"{phase}_ms_per_unet_call"] = round(1000 * sum(secs) / len(secs), 2)
    return {
        "generator": f"StoryStudio {__version__}",
        "status": status,
        "input": str(Path(args.input).resolve()),
        "title": story.title,
        "model": {"source": model.source, "arch": model.arch, "device": device_summary(model.device),
                  "dtype": str(model.dtype).removeprefix("torch.")},
        "settings": settings.to_dict(),
        "characters": [{"name": c.name, "description": c.description,
                        "bank_bytes": result.banks[c.name].nbytes if result and c.name in result.banks else 0,
                        "bank_bytes_per_step": result.banks[c.name].bytes_per_step
                        if result and c.name in result.banks else 0}
                       for c in story.characters],
        "panels": panels,
        "reference_sheets": sheets,
        "messages": result.messages if result else [],
        "timings": timings,
    }


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def _say(text: str) -> None:
    if text or sys.stderr.isatty():
        print(text, file=sys.stderr, flush=True)


def _progress_printer():
    tty = sys.stderr.isatty()
    last = {"batch": None}

    def show(p) -> None:
        label = f"{p.phase} {', '.join(p.panel_keys)}"
        line = f"[{p.panels_done}/{p.panels_total} panels] {label}: step {p.step}/{p.steps}"
        if tty:
            print("\r" + line[:100].ljust(100), end="", file=sys.stderr, flush=True)
        elif p.step == p.steps and last["batch"] != label:
            last["batch"] = label
            print(line, file=sys.stderr, flush=True)

    return show


# ---- models -------------------------------------------------------------------------
def models(args) -> int:
    if args.models_command == "create-tiny":
        from .engine.models import quiet_libraries
        from .engine.random_models import create_tiny_model

        quiet_libraries()
        try:
            folder = create_tiny_model(args.dir, args.arch, seed=args.seed)
        except FileExistsError as exc:
            raise UserError(str(exc)) from None
        print(f"Wrote a tiny random {args.arch} model to {folder} (its images are noise; for tests and demos).")
        return 0
    if args.models_command == "path":
        from .engine.models import model_folders

        for label, folder in model_folders().items():
            print(f"{label}: {folder}")
        return 0
    if args.models_command == "list":
        from .engine.models import find_local_models

        found = find_local_models()
        if not found:
            print("No Stable Diffusion models were found on this computer.")
        for entry in found:
            print(f"{entry['id']}\t{entry['arch']}\t{entry['size_gb']:.1f} GB\t{entry['where']}")
        return 0
    raise UserError("say what to do with models: list, path or create-tiny.")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
