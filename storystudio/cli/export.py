"""``storystudio export PROJECT``: a saved project's pages (PDF, CBZ, PNG) or animatic (MP4), without generating.

The page and video options, and the export steps, are shared with ``render``
(which lays out and exports what it generated).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..project import limits
from .base import Command, UserError, number, path, say, text, whole


# ---- options shared with render ---------------------------------------------------------------------------
def page_options(parser: argparse.ArgumentParser) -> None:
    from ..project.layout import PAGE_SIZES

    parser.add_argument("--page-size", default="us-comic", choices=list(PAGE_SIZES),
                        help="page size for automatic layout (default us-comic: 6.625 x 10.25 in)")
    parser.add_argument("--direction", default="ltr", choices=["ltr", "rtl"],
                        help="reading direction for automatic layout (rtl for manga)")
    parser.add_argument("--dpi", type=whole(limits.MIN_DPI, limits.MAX_DPI, "--dpi"), default=None,
                        help="picture resolution in the export (default: 300 for print sizes, 72 for webtoon strips)")
    parser.add_argument("--bleed", action="store_true", help="PDF and PNG pages include the bleed")
    parser.add_argument("--author", default="", type=text(200, "--author"),
                        help="author shown in the PDF's and CBZ's document information")


def video_options(parser: argparse.ArgumentParser) -> None:
    from ..project.animatic import CAMERA_PRESETS, FRAME_RATES, SIZE_PRESETS

    parser.add_argument("--fps", type=int, default=None, choices=FRAME_RATES, help="animatic frame rate (default 24)")
    parser.add_argument("--video-size", default=None, choices=list(SIZE_PRESETS),
                        help="animatic size (default 1920x1080)")
    parser.add_argument("--audio", default=None, metavar="FILE", type=path("--audio"),
                        help="a sound file for the animatic")
    parser.add_argument("--soft-subtitles", action="store_true", default=None,
                        help="add the captions as a subtitle track")
    parser.add_argument("--no-burn-captions", action="store_true", default=None,
                        help="do not draw the captions into the pictures")
    parser.add_argument("--transition", default=None, choices=["cut", "crossfade"],
                        help="between panels without their own transition (default crossfade)")
    parser.add_argument("--transition-seconds", default=None,
                        type=number(0, limits.MAX_TRANSITION_SECONDS, "--transition-seconds"),
                        help="crossfade length (default 0.5)")
    parser.add_argument("--camera", default=None, choices=list(CAMERA_PRESETS),
                        help="a camera move for every panel without one of its own")


def apply_video_options(project, args) -> None:
    """Command-line animatic options over the project's own settings (for what they name only)."""
    from ..project.animatic import CameraMove, Cut, Shot

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


# ---- checks shared with render ----------------------------------------------------------------------------
def load_project(file: str):
    from ..project.fileio import ProjectFileError
    from ..project.fileio import load_project as load

    try:
        return load(file)
    except ProjectFileError as exc:
        raise UserError(str(exc)[0].lower() + str(exc)[1:]) from None


def _inside(child: Path, folder: Path) -> bool:
    try:
        child.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def check_export_target(target: str, made: Path | None = None) -> None:
    """Refuse an export file that cannot be written before spending minutes on generation.

    ``made``: a folder the command creates before it exports (render's ``--out``): a target in it, or in a
    folder under it, is fine although the folder does not exist yet.
    """
    file = Path(target)
    if file.is_dir():
        raise UserError(f"{file} is a folder; give a file name to export to.")
    if file.parent.is_dir():
        if not os.access(file.parent, os.W_OK):
            raise UserError(f"cannot write into {file.parent}; choose another place for {file.name}.")
        return
    if made is not None and _inside(file.parent, made):
        return
    raise UserError(f"the folder {file.parent} for {file.name} does not exist.")


def check_audio(file: str) -> None:
    from ..export.animatic import VideoExportError
    from ..export.animatic import check_audio as check

    try:
        check(file)
    except VideoExportError as exc:
        raise UserError(str(exc)) from None


# ---- exporting --------------------------------------------------------------------------------------------
def export_progress(label: str = ""):
    """A progress callback for exports: one line rewritten in place on a terminal, nothing otherwise."""
    def show(done: int, total: int, what: str) -> None:
        if sys.stderr.isatty() and done < total:
            print(f"\r  {label}{what}".ljust(50), end="", file=sys.stderr, flush=True)

    return show


def check_page_pixels(layout, dpi: int | None) -> None:
    """Refuse a resolution at which a page would be drawn larger than ``limits.MAX_RASTER_SIDE``, before
    any page is drawn (``export.comic`` refuses it too; this says which ``--dpi`` fits)."""
    from ..project.layout import raster_problem

    found = raster_problem(layout, dpi)
    if found:
        raise UserError(found.replace("; choose", "; give --dpi").replace(" dpi or less", " or less") + ".")


def export_comic(project, args, pdf: str | None, cbz: str | None, png: str | None) -> None:
    if pdf or cbz or png:
        check_page_pixels(project.layout, args.dpi)
    from ..export.comic import ExportError, export_cbz, export_pdf, export_png_pages

    progress = export_progress()
    jobs = [(pdf, "PDF", lambda p: export_pdf(project, p, bleed=args.bleed, dpi=args.dpi, author=args.author,
                                               progress=progress)),
            (cbz, "CBZ", lambda p: export_cbz(project, p, dpi=args.dpi, author=args.author, progress=progress)),
            (png, "PNG pages", lambda p: export_png_pages(project, p, dpi=args.dpi, bleed=args.bleed,
                                                          progress=progress))]
    for target, label, run in jobs:
        if not target:
            continue
        result = _write(target, run, ExportError)
        _written(f"the {label} ({result.pages} page(s))", result)


def export_video(project, args) -> None:
    from ..export.animatic import VideoExportError, export_mp4

    apply_video_options(project, args)
    result = _write(args.mp4, lambda target: export_mp4(project, target, progress=export_progress("animatic: ")),
                    VideoExportError)
    _written(f"the animatic ({result.seconds:.2f} s, {result.frames} frames at {result.fps} fps)", result)


def _write(target: str, run, refused: type[Exception]):
    """``run(target)`` into its folder (made if needed, e.g. under render's --out); its refusal or a file
    that cannot be written ends the command with one sentence."""
    try:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        return run(target)
    except refused as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"{target} could not be written ({exc.strerror or exc}).") from None


def _written(what: str, result) -> None:
    say("")
    say(f"Wrote {what} to {result.path}.")
    for warning in result.warnings:
        say(f"note: {warning}")


# ---- the export command -----------------------------------------------------------------------------------
class ExportCommand(Command):
    name = "export"
    help = "export a saved project's pages (PDF, CBZ, PNG) without generating"

    @classmethod
    def register(cls, subparsers) -> argparse.ArgumentParser:
        e = subparsers.add_parser(
            cls.name, help=cls.help,
            description="Export the pages of a .storystudio project as they are laid out in the app. "
                        "A project without pages is laid out automatically (see --page-size).")
        e.add_argument("project", metavar="PROJECT", type=path("PROJECT"), help="a .storystudio project file")
        e.add_argument("--pdf", default=None, metavar="FILE", type=path("--pdf"), help="a PDF comic at print size")
        e.add_argument("--cbz", default=None, metavar="FILE", type=path("--cbz"),
                       help="a CBZ for comic readers, with ComicInfo.xml")
        e.add_argument("--png", default=None, metavar="DIR", type=path("--png"), help="a folder of PNG pages")
        e.add_argument("--mp4", default=None, metavar="FILE", type=path("--mp4"),
                       help="an MP4 animatic, with the project's animatic settings")
        e.add_argument("--relayout", action="store_true",
                       help="lay the story out again with --page-size and --direction instead of the saved pages")
        page_options(e)
        video_options(e)
        return e

    def check(self) -> None:
        args = self.args
        if not (args.pdf or args.cbz or args.png or args.mp4):
            raise UserError("say what to export: --pdf FILE, --cbz FILE, --png DIR and/or --mp4 FILE.")
        if not args.project.endswith(".storystudio"):
            raise UserError(f"{args.project} is not a .storystudio project; to render a story script use "
                            "storystudio render SCRIPT --out DIR --model MODEL --pdf FILE.")
        for target in (args.pdf, args.cbz, args.mp4):
            if target:
                check_export_target(target)
        if args.png and Path(args.png).exists() and not Path(args.png).is_dir():
            raise UserError(f"{args.png} is a file, not a folder; give --png a folder for the pages.")
        if args.mp4 and args.audio:
            check_audio(args.audio)
        self.project = load_project(args.project)

    def run(self) -> int:
        from ..project.layout import auto_layout

        args, project = self.args, self.project
        if (args.pdf or args.cbz or args.png) and (args.relayout or not project.layout.pages):
            if not args.relayout:
                say(f"This project has no pages yet: laying its {len(project.panels)} panel(s) out on "
                    f"{args.page_size} pages.")
            project.layout = auto_layout(project.panels, size=args.page_size, direction=args.direction,
                                         layout=project.layout)
        export_comic(project, args, pdf=args.pdf, cbz=args.cbz, png=args.png)
        if args.mp4:
            export_video(project, args)
        return 0
