"""The ``storystudio`` command: the desktop app, and the same engine headless.

    storystudio [PROJECT]                 start the app
    storystudio render INPUT [options]    generate a story's panels without a window
                                          (and lay them out as a PDF or CBZ comic)
    storystudio export PROJECT [options]  export a saved project's pages or animatic, without generating
    storystudio models ...                list, download, import, remove, locate and create models
    storystudio install-desktop           add the menu entry and the .storystudio file type (Linux; and
                                          uninstall-desktop), see desktop.py

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
    from .engine.story.settings import SCHEDULERS
    from .engine.story.styles import default_style, style_names

    root = _Parser(prog="storystudio", description="Comics with the same characters in every panel.")
    root.add_argument("--version", action="version", version=f"StoryStudio {__version__}")
    sub = root.add_subparsers(dest="command", metavar="{render,export,models}", parser_class=_Parser)

    r = sub.add_parser("render", help="generate a story's panels headlessly",
                       description="Generate every panel of a story script without opening the app.")
    r.add_argument("input", metavar="INPUT",
                   help="a story script (.txt) in the StoryDiffusion demo syntax, or a .storystudio project")
    r.add_argument("--out", required=True, metavar="DIR", help="folder for the panel PNGs and manifest.json")
    r.add_argument("--model", required=True, metavar="ID_OR_PATH",
                   help="a diffusers folder, a .safetensors checkpoint, or a Hugging Face id in the local cache")
    r.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    r.add_argument("--dtype", default="auto", choices=["auto", "fp16", "bf16", "fp32"], help="precision")
    # None means "not given": a project's own settings apply, else the defaults named in the help
    r.add_argument("--steps", type=int, default=None, help="denoising steps (default 35)")
    r.add_argument("--size", type=_size, default=None, metavar="WxH", help="panel size (default 768x768)")
    r.add_argument("--seed", type=int, default=None, help="story seed; each panel's seed derives from it")
    r.add_argument("--style", default=None,
                   help=f"style template: {', '.join(style_names())} (default {default_style()})")
    r.add_argument("--guidance", type=float, default=None, help="classifier-free guidance (default 5.0)")
    r.add_argument("--negative", default=None, help="extra negative prompt")
    r.add_argument("--scheduler", default=None, choices=list(SCHEDULERS), help="sampler (default ddim)")
    r.add_argument("--id-length", type=int, default=None, help="reference images per character (default 4)")
    r.add_argument("--rate", type=_rate, default=None,
                   help="consistency strength: share of tokens borrowed between images (default 0.5)")
    r.add_argument("--no-freeu", action="store_true", default=None, help="turn FreeU off")
    r.add_argument("--compile", action="store_true",
                   help="compile the UNet's blocks with torch.compile: a one-time cost of minutes per picture size "
                        "and batch (cached on disk for the next run), then faster steps on a GPU")
    r.add_argument("--batch-size", type=int, default=None,
                   help="pictures denoised together (default: as many as the GPU's free memory allows)")
    r.add_argument("--panels", default=None, metavar="N[,N...]",
                   help="only these panels (1-based numbers); others are left as they are")
    r.add_argument("--banks", default=None, metavar="DIR",
                   help="reuse character banks saved by --save-banks instead of generating references again")
    r.add_argument("--save-banks", action="store_true", help="save each character's bank in OUT/banks/")
    r.add_argument("--allow-download", action="store_true", help="download the model if it is not on this computer")
    r.add_argument("--config", default=None, metavar="DIR",
                   help="configuration folder for a single-file checkpoint (else the local Hugging Face cache)")
    r.add_argument("--pdf", default=None, metavar="FILE",
                   help="also lay the panels out on pages and export a PDF comic")
    r.add_argument("--cbz", default=None, metavar="FILE", help="also export the pages as a CBZ for comic readers")
    _page_options(r)
    r.add_argument("--mp4", default=None, metavar="FILE", help="also export an MP4 animatic of the panels")
    _video_options(r)

    e = sub.add_parser("export", help="export a saved project's pages (PDF, CBZ, PNG) without generating",
                       description="Export the pages of a .storystudio project as they are laid out in the app. "
                                   "A project without pages is laid out automatically (see --page-size).")
    e.add_argument("project", metavar="PROJECT", help="a .storystudio project file")
    e.add_argument("--pdf", default=None, metavar="FILE", help="a PDF comic at print size")
    e.add_argument("--cbz", default=None, metavar="FILE", help="a CBZ for comic readers, with ComicInfo.xml")
    e.add_argument("--png", default=None, metavar="DIR", help="a folder of PNG pages")
    e.add_argument("--mp4", default=None, metavar="FILE", help="an MP4 animatic, with the project's animatic settings")
    e.add_argument("--relayout", action="store_true",
                   help="lay the story out again with --page-size and --direction instead of the saved pages")
    _page_options(e)
    _video_options(e)

    m = sub.add_parser("models", help="list, download, import, remove, locate and create models",
                       description="Models StoryStudio can use.")
    msub = m.add_subparsers(dest="models_command", metavar="{list,download,import,remove,path,create-tiny}",
                            parser_class=_Parser)
    msub.add_parser("list", help="the model catalog and the models on this computer, with their disk use")
    d = msub.add_parser("download", help="download a model of the catalog (with progress; run again to resume)",
                        description="Download a model of the catalog into the Hugging Face cache. Ctrl+C stops "
                                    "it; running the same command again continues where it stopped.")
    d.add_argument("id", metavar="ID", help='a catalog id, e.g. "sdxl-base" (storystudio models list shows them)')
    d.add_argument("--token-file", default=None, metavar="FILE",
                   help="a file holding a Hugging Face access token, for gated models")
    i = msub.add_parser("import", help="add a .safetensors checkpoint or a diffusers folder you have",
                        description="Add a model you have: a single .safetensors checkpoint (copied into "
                                    "StoryStudio's models folder) or a diffusers folder (used where it is).")
    i.add_argument("path", metavar="PATH")
    i.add_argument("--allow-pickle", action="store_true",
                   help="accept a pickled .ckpt/.bin checkpoint (only its weights are read; it is converted "
                        "to .safetensors)")
    i.add_argument("--copy", action="store_true", help="copy a diffusers folder instead of using it where it is")
    r = msub.add_parser("remove", help="delete a downloaded or imported model (added folders are only forgotten)")
    r.add_argument("id", metavar="ID", help="a catalog id, a Hugging Face repository or an imported model's path")
    msub.add_parser("path", help="folders where StoryStudio looks for models")
    t = msub.add_parser("create-tiny", help="write a tiny random-weight model for tests and demos",
                        description="Write a tiny random-weight model (its images are noise) in the diffusers "
                                    "folder layout, built offline.")
    t.add_argument("dir", metavar="DIR")
    t.add_argument("--arch", choices=["sd15", "sdxl"], default="sd15")
    t.add_argument("--seed", type=int, default=0)
    return root


def _page_options(parser: argparse.ArgumentParser) -> None:
    from .project.layout import PAGE_SIZES

    parser.add_argument("--page-size", default="us-comic", choices=list(PAGE_SIZES),
                        help="page size for automatic layout (default us-comic: 6.625 x 10.25 in)")
    parser.add_argument("--direction", default="ltr", choices=["ltr", "rtl"],
                        help="reading direction for automatic layout (rtl for manga)")
    parser.add_argument("--dpi", type=int, default=None, help="picture resolution in the export (default: 300 for "
                        "print sizes, 72 for webtoon strips)")
    parser.add_argument("--bleed", action="store_true", help="PDF and PNG pages include the bleed")
    parser.add_argument("--author", default="", help="author shown in the PDF's and CBZ's document information")


def _video_options(parser: argparse.ArgumentParser) -> None:
    from .project.animatic import CAMERA_PRESETS, FRAME_RATES, SIZE_PRESETS

    parser.add_argument("--fps", type=int, default=None, choices=FRAME_RATES, help="animatic frame rate (default 24)")
    parser.add_argument("--video-size", default=None, choices=list(SIZE_PRESETS),
                        help="animatic size (default 1920x1080)")
    parser.add_argument("--audio", default=None, metavar="FILE", help="a sound file for the animatic")
    parser.add_argument("--soft-subtitles", action="store_true", default=None,
                        help="add the captions as a subtitle track")
    parser.add_argument("--no-burn-captions", action="store_true", default=None,
                        help="do not draw the captions into the pictures")
    parser.add_argument("--transition", default=None, choices=["cut", "crossfade"],
                        help="between panels without their own transition (default crossfade)")
    parser.add_argument("--transition-seconds", type=float, default=None, help="crossfade length (default 0.5)")
    parser.add_argument("--camera", default=None, choices=list(CAMERA_PRESETS),
                        help="a camera move for every panel without one of its own")


def _apply_video_options(project, args) -> None:
    """Command-line animatic options over the project's own settings (for what they name only)."""
    from .project.animatic import CameraMove, Cut, Shot

    a = project.animatic
    if args.fps is not None:
        a.fps = args.fps
    if args.video_size is not None:
        a.size = args.video_size
    if args.audio is not None:
        a.audio = args.audio
    if args.soft_subtitles:
        a.soft_subtitles = True
    if args.no_burn_captions:
        a.burn_captions = False
    for panel in project.panels[:-1]:
        if panel.id in a.cuts or (args.transition is None and args.transition_seconds is None):
            continue
        a.cuts[panel.id] = Cut(args.transition or "crossfade",
                               0.5 if args.transition_seconds is None else args.transition_seconds)
    if args.camera:
        for panel in project.panels:
            a.shots.setdefault(panel.id, Shot(CameraMove.preset(args.camera)))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("install-desktop", "uninstall-desktop"):
        from .desktop import main as desktop_main

        return desktop_main(argv)
    if not argv or (argv[0] not in ("render", "export", "models") and not argv[0].startswith("-")):
        return _start_app(argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "render":
            return render(args)
        if args.command == "export":
            return export(args)
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
def _load_project(path: str):
    from .project.fileio import ProjectFileError, load_project

    try:
        return load_project(path)
    except ProjectFileError as exc:
        raise UserError(str(exc)[0].lower() + str(exc)[1:]) from None


def _load_story(path: str):
    from .project.script import ScriptError, load_script

    try:
        return load_script(path)
    except ScriptError as exc:
        if len(exc.problems) == 1:
            raise UserError(str(exc)) from None
        raise UserError(f"the story script {path} has {len(exc.problems)} problems:\n{exc}") from None


def _settings(args, project=None):
    """Generation settings: the options given, else the project's own settings, else the defaults."""
    from .engine.story.settings import GenerationSettings
    from .project.model import ProjectSettings

    w, h = args.size if args.size is not None else (None, None)
    return GenerationSettings.from_project(
        project.settings if project is not None else ProjectSettings(),
        steps=args.steps, width=w, height=h, guidance=args.guidance, seed=args.seed, style=args.style,
        negative_prompt=args.negative, scheduler=args.scheduler,
        freeu=None if args.no_freeu is None else not args.no_freeu, id_length=args.id_length,
        batch_size=args.batch_size, rate=args.rate, compile=args.compile or None,
    )


def render(args) -> int:
    project = _load_project(args.input) if args.input.endswith(".storystudio") else None
    story = project.to_story() if project is not None else _load_story(args.input)
    for target in (args.pdf, args.cbz, args.mp4):
        if target:
            _check_export_target(target)
    if args.mp4 and args.audio:
        _check_audio(args.audio)
    settings = _settings(args, project)
    try:
        settings.validate()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    numbered = {p.key: i for i, p in enumerate(story.panels, 1)}
    only = _panel_selection(args.panels, story)
    out = Path(args.out)
    _check_writable(out)
    from .engine.attention.bank import CharacterBank
    from .engine.imaging import save_png
    from .engine.errors import GenerationCancelled, ModelError
    from .engine.models.loading import load_model, quiet_libraries
    from .engine.story.pipeline import StoryPipeline

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
        result = engine.render(story, settings, progress=_progress_printer(), banks=banks, only=only, on_image=on_image,
                               keep_banks=args.save_banks, previews=False)
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
    if project is not None or args.pdf or args.cbz or args.mp4:
        comic = _comic_project(project, story, out, files, args)
        if project is not None:
            from .project.fileio import ProjectFileError, save_project

            saved = out / Path(args.input).name
            try:
                save_project(comic, saved)
            except ProjectFileError as exc:
                raise UserError(str(exc)) from None
            _say(f"Saved the project with its new pictures as {saved} (the original is unchanged).")
        _export_comic(comic, args, pdf=args.pdf, cbz=args.cbz, png=None)
        if args.mp4:
            _export_video(comic, args)
    return 0


def _check_audio(path: str) -> None:
    from .export.animatic import VideoExportError, check_audio

    try:
        check_audio(path)
    except VideoExportError as exc:
        raise UserError(str(exc)) from None


def _export_video(project, args) -> None:
    from .export.animatic import VideoExportError, export_mp4

    _apply_video_options(project, args)

    try:
        result = export_mp4(project, args.mp4, progress=_export_progress("animatic: "))
    except VideoExportError as exc:
        raise UserError(str(exc)) from None
    _say("")
    _say(f"Wrote the animatic ({result.seconds:.2f} s, {result.frames} frames at {result.fps} fps) to {result.path}.")
    for warning in result.warnings:
        _say(f"note: {warning}")


def _comic_project(project, story, out: Path, files: dict[str, str], args):
    """The project (or a new one from the script) with the rendered pictures as its panels' chosen versions.

    Pages already laid out in a project are kept; otherwise the story is laid
    out on ``--page-size`` pages, captions becoming caption boxes.
    """
    from .engine.imaging import read_png_parameters
    from .project.layout import auto_layout
    from .project.model import Project

    comic = project if project is not None else Project.from_story(story)
    keys = [p.key for p in story.panels] if project is None else [p.id for p in comic.panels]
    for key, panel in zip(keys, comic.panels):
        if key in files:
            path = out / files[key]
            comic.add_version(panel.id, path.read_bytes(), read_png_parameters(path))
    if not comic.layout.pages:
        comic.layout = auto_layout(comic.panels, size=args.page_size, direction=args.direction,
                                   layout=comic.layout)
    return comic


def _check_export_target(target: str) -> None:
    """Refuse an export file that cannot be written before spending minutes on generation."""
    path = Path(target)
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name to export to.")
    if not path.parent.is_dir():
        raise UserError(f"the folder {path.parent} for {path.name} does not exist.")


def _export_progress(label: str = ""):
    """A progress callback for exports: one line rewritten in place on a terminal, nothing otherwise."""
    def show(done: int, total: int, what: str) -> None:
        if sys.stderr.isatty() and done < total:
            print(f"\r  {label}{what}".ljust(50), end="", file=sys.stderr, flush=True)

    return show


def _export_comic(project, args, pdf: str | None, cbz: str | None, png: str | None) -> None:
    from .export.comic import ExportError, export_cbz, export_pdf, export_png_pages

    progress = _export_progress()
    jobs = [(pdf, "PDF", lambda p: export_pdf(project, p, bleed=args.bleed, dpi=args.dpi, author=args.author,
                                               progress=progress)),
            (cbz, "CBZ", lambda p: export_cbz(project, p, dpi=args.dpi, author=args.author, progress=progress)),
            (png, "PNG pages", lambda p: export_png_pages(project, p, dpi=args.dpi, bleed=args.bleed,
                                                          progress=progress))]
    for target, label, run in jobs:
        if not target:
            continue
        try:
            result = run(target)
        except ExportError as exc:
            raise UserError(str(exc)) from None
        _say("")
        _say(f"Wrote the {label} ({result.pages} page(s)) to {result.path}.")
        for warning in result.warnings:
            _say(f"note: {warning}")


# ---- export -------------------------------------------------------------------------
def export(args) -> int:
    if not (args.pdf or args.cbz or args.png or args.mp4):
        raise UserError("say what to export: --pdf FILE, --cbz FILE, --png DIR and/or --mp4 FILE.")
    if not args.project.endswith(".storystudio"):
        raise UserError(f"{args.project} is not a .storystudio project; to render a story script use "
                        "storystudio render SCRIPT --out DIR --model MODEL --pdf FILE.")
    project = _load_project(args.project)
    from .project.layout import auto_layout

    if args.mp4 and args.audio:
        _check_audio(args.audio)
    if (args.pdf or args.cbz or args.png) and (args.relayout or not project.layout.pages):
        if not args.relayout:
            _say(f"This project has no pages yet: laying its {len(project.panels)} panel(s) out on "
                 f"{args.page_size} pages.")
        project.layout = auto_layout(project.panels, size=args.page_size, direction=args.direction,
                                     layout=project.layout)
    for target in (args.pdf, args.cbz, args.mp4):
        if target:
            _check_export_target(target)
    _export_comic(project, args, pdf=args.pdf, cbz=args.cbz, png=args.png)
    if args.mp4:
        _export_video(project, args)
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
    from .engine.models.loading import device_summary

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
        # references and panels advance together: one line per step of the whole story
        percent = 100 * p.work_done // max(1, p.work_total)
        line = f"[{p.panels_total} pictures] step {p.step}/{p.steps} ({percent}%)"
        if tty:
            print("\r" + line[:100].ljust(100), end="", file=sys.stderr, flush=True)
        elif p.work_done == p.work_total or (last["batch"] != p.step and p.step % 5 == 0):
            last["batch"] = p.step
            print(line, file=sys.stderr, flush=True)

    return show


# ---- models -------------------------------------------------------------------------
def models(args) -> int:
    if args.models_command == "create-tiny":
        from .engine.models.loading import quiet_libraries
        from .engine.models.random_weights import create_tiny_model

        quiet_libraries()
        try:
            folder = create_tiny_model(args.dir, args.arch, seed=args.seed)
        except FileExistsError as exc:
            raise UserError(str(exc)) from None
        print(f"Wrote a tiny random {args.arch} model to {folder} (its images are noise; for tests and demos).")
        return 0
    if args.models_command == "path":
        from .engine.models.base import model_folders

        for label, folder in model_folders().items():
            print(f"{label}: {folder}")
        return 0
    if args.models_command == "list":
        return _models_list()
    if args.models_command == "download":
        return _models_download(args)
    if args.models_command == "import":
        return _models_import(args)
    if args.models_command == "remove":
        return _models_remove(args)
    raise UserError("say what to do with models: list, download, import, remove, path or create-tiny.")


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


def _models_list() -> int:
    from .engine.models.catalog import CatalogError, catalog
    from .engine.models.library import installed_models
    from .engine.models.base import model_folders

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
            print(line, file=sys.stderr, flush=True)

    return show


def _models_download(args) -> int:
    import signal
    import threading

    from .engine.models.catalog import CatalogError, get_entry
    from .engine.models.downloads import DownloadCancelled, DownloadError, download

    try:
        entry = get_entry(args.id)
    except CatalogError as exc:
        raise UserError(str(exc)) from None
    token = _read_token(args.token_file)
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        def on_interrupt(signum, frame) -> None:  # first Ctrl+C: stop cleanly; a second one stops at once
            if stop.is_set():
                raise KeyboardInterrupt
            stop.set()
            _say("")
            _say("Stopping the download (press Ctrl+C again to stop at once) ...")

        previous = signal.signal(signal.SIGINT, on_interrupt)
    started = time.perf_counter()
    size = ("about " if entry.size_approximate else "") + _bytes(entry.size_bytes)
    _say(f"Downloading {entry.name} ({entry.repo}, {size}) ...")
    done = {"bytes": 0, "resumed": 0}
    printer = _download_printer()

    def progress(p) -> None:
        done.update(bytes=p.bytes_done, resumed=p.resumed_bytes)
        printer(p)

    try:
        folder = download(entry, token=token, progress=progress, cancelled=stop.is_set)
    except (DownloadCancelled, KeyboardInterrupt):
        _say("")
        print("storystudio: the download was stopped; run the same command again to continue where it stopped.",
              file=sys.stderr)
        return EXIT_CANCELLED
    except DownloadError as exc:
        _say("")
        raise UserError(str(exc)) from None
    except OSError as exc:
        _say("")
        raise UserError(f"{entry.name} could not be saved ({exc.strerror or exc}).") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    _say("")
    seconds = time.perf_counter() - started
    fetched = done["bytes"] - done["resumed"]
    if fetched > 0:
        _say(f"Fetched {_bytes(fetched)} in {_duration(seconds)} ({_bytes(fetched / max(seconds, 1e-3))}/s)"
             + (f"; {_bytes(done['resumed'])} were already here." if done["resumed"] else "."))
    print(f"{entry.name} is installed in {folder}.")
    return 0


def _models_import(args) -> int:
    from .engine.models.library import import_model
    from .engine.errors import ModelError

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


def _models_remove(args) -> int:
    from .engine.models.library import installed_models, remove_model
    from .engine.errors import ModelError

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


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
