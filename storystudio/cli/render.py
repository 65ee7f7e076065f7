"""``storystudio render INPUT --out DIR --model MODEL``: a story's panels without a window.

Everything the options and the input allow is checked before the model loads
(sizes against the model family's limit, found without loading it). The run
is written into a staging folder and moved into ``--out`` as a whole when it
ends (see :mod:`.runfolder`), so ``--out`` never mixes two runs, and a
refusal or a crash leaves it as it was.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from .. import __version__
from ..project import limits
from .base import Command, Stopped, UserError, interrupts, number, path, say, size, text, whole
from .export import (
    check_audio,
    check_export_target,
    check_page_pixels,
    export_comic,
    export_video,
    load_project,
    page_options,
    video_options,
)
from .runfolder import RunFolder


def _rate(value: str) -> float:
    return number(0, 1, "the consistency rate")(value)


def _guide_spec(option: str, what: str):
    """``N=IMAGE``: panel number N draws with the guide picture IMAGE (checked later, with the story)."""
    def parse(value: str) -> tuple[int, str]:
        number_text, sep, image = value.partition("=")
        if not sep or not number_text.strip().isdigit() or not image.strip():
            raise argparse.ArgumentTypeError(f"{option} takes N=IMAGE (a panel number and {what}), not "
                                             f"{limits.quote(value)}")
        return int(number_text.strip()), path(option)(image.strip())

    return parse


def _pose_steps(value: str) -> tuple[float, float]:
    """``START:END``: the fractions of the steps the poses act between (0:1 is every step)."""
    start_text, sep, end_text = value.partition(":")
    try:
        start, end = float(start_text), float(end_text)
    except ValueError:
        start = end = float("nan")
    if not sep or not (0 <= start < end <= 1):  # also refuses nan
        raise argparse.ArgumentTypeError(f"--pose-steps takes START:END, two fractions of the steps from 0 to 1 with "
                                         f"the start first (e.g. 0:0.8), not {limits.quote(value)}")
    return start, end


class RenderCommand(Command):
    name = "render"
    help = "generate a story's panels headlessly"

    @classmethod
    def register(cls, subparsers) -> argparse.ArgumentParser:
        from ..engine.distributed.cluster import RAY_EXTRA
        from ..engine.story.settings import SCHEDULERS
        from ..engine.story.styles import default_style, style_names

        r = subparsers.add_parser(cls.name, help=cls.help,
                                  description="Generate every panel of a story script without opening the app.")
        r.add_argument("input", metavar="INPUT", type=path("INPUT"),
                       help="a story script (.txt) in the StoryDiffusion demo syntax, or a .storystudio project")
        r.add_argument("--out", required=True, metavar="DIR", type=path("--out"),
                       help="folder for the panel PNGs and manifest.json (a render already there is replaced "
                            "when this one finishes)")
        r.add_argument("--model", required=True, metavar="ID_OR_PATH", type=path("--model"),
                       help="a diffusers folder, a .safetensors checkpoint, or a Hugging Face id in the local cache")
        r.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
        r.add_argument("--dtype", default="auto", choices=["auto", "fp16", "bf16", "fp32"], help="precision")
        # None means "not given": a project's own settings apply, else the defaults named in the help
        r.add_argument("--steps", type=whole(1, limits.MAX_STEPS, "--steps"), default=None,
                       help=f"denoising steps, 1 to {limits.MAX_STEPS} (default 35)")
        r.add_argument("--size", type=size, default=None, metavar="WxH",
                       help=f"panel size (default 768x768; at most {limits.max_picture_side('sd15')} a side for "
                            f"SD1.5, {limits.max_picture_side('sd2')} for SD2.x, {limits.max_picture_side('sdxl')} "
                            "for SDXL)")
        r.add_argument("--seed", type=whole(0, limits.MAX_SEED, "--seed"), default=None,
                       help="story seed; each panel's seed derives from it")
        r.add_argument("--style", default=None, type=text(100, "--style"),
                       help=f"style template: {', '.join(style_names())} (default {default_style()})")
        r.add_argument("--guidance", type=number(0, limits.MAX_GUIDANCE, "--guidance"), default=None,
                       help="classifier-free guidance (default 5.0)")
        r.add_argument("--negative", default=None, type=text(limits.MAX_TEXT_CHARS, "--negative"),
                       help="extra negative prompt")
        r.add_argument("--scheduler", default=None, choices=list(SCHEDULERS), help="sampler (default ddim)")
        r.add_argument("--id-length", type=whole(1, limits.MAX_ID_LENGTH, "--id-length"), default=None,
                       help="reference images per character (default 4)")
        r.add_argument("--rate", type=_rate, default=None,
                       help="consistency strength: share of tokens borrowed between images (default 0.5)")
        r.add_argument("--no-freeu", action="store_true", default=None, help="turn FreeU off")
        r.add_argument("--no-regions", action="store_true", default=None,
                       help="let every character's looks act on the whole of a shared panel (as the paper's code "
                            "does) instead of one region per character")
        r.add_argument("--compile", action="store_true",
                       help="compile the UNet's blocks with torch.compile: a one-time cost of minutes per picture "
                            "size and batch (cached on disk for the next run), then faster steps on a GPU")
        r.add_argument("--batch-size", type=whole(0, limits.MAX_BATCH_SIZE, "--batch-size"), default=None,
                       help="pictures denoised together (default: as many as the GPU's free memory allows)")
        r.add_argument("--panels", default=None, metavar="N[,N...]", type=text(10_000, "--panels"),
                       help="only these panels (1-based numbers); others are left as they are")
        r.add_argument("--photo", action="append", default=[], metavar="NAME=IMAGE", type=text(4096, "--photo"),
                       help="a reference photo for the character NAME (repeat for several characters); its pictures "
                            "take the photo's look through the IP-Adapter face model")
        r.add_argument("--photo-strength", type=number(0, 2, "--photo-strength"), default=None,
                       help="how strongly the photos given by --photo steer the look, 0 to 2 (default 0.6)")
        r.add_argument("--photo-adapter", default=None, metavar="DIR_OR_ID", type=path("--photo-adapter"),
                       help="where the IP-Adapter face model is: a folder laid out like h94/IP-Adapter or a "
                            "Hugging Face id in the local cache (default h94/IP-Adapter)")
        r.add_argument("--pose", action="append", default=[], metavar="N=IMAGE",
                       type=_guide_spec("--pose", "a pose picture"),
                       help="draw panel N in the pose of IMAGE, an OpenPose skeleton picture (coloured sticks on "
                            "black; needs a pose ControlNet); replaces that panel's poses in a project; repeatable")
        r.add_argument("--pose-strength", type=number(0, limits.MAX_CONTROL_STRENGTH, "--pose-strength"),
                       default=None,
                       help="how strongly poses (and depth maps, line art) hold, 0 to 2 (default 1)")
        r.add_argument("--pose-steps", type=_pose_steps, default=None, metavar="START:END",
                       help="the fractions of the steps poses (and depth maps, line art) act between (default "
                            "0:1, every step)")
        r.add_argument("--pose-model", default=None, metavar="ID_OR_PATH", type=path("--pose-model"),
                       help="the OpenPose ControlNet: a folder, a catalog id or a Hugging Face id in the local cache "
                            "(default: the catalog's for the model's family)")
        for kind, words in (("depth", "a depth map (near is bright)"), ("lineart", "line art (white lines on black)")):
            r.add_argument(f"--{kind}", action="append", default=[], metavar="N=IMAGE",
                           type=_guide_spec(f"--{kind}", "a picture"),
                           help=f"draw panel N over {words} from IMAGE, with the {kind} ControlNet; repeatable")
            r.add_argument(f"--{kind}-model", default=None, metavar="ID_OR_PATH", type=path(f"--{kind}-model"),
                           help=f"the {kind} ControlNet (default: the catalog's for the model's family)")
        r.add_argument("--banks", default=None, metavar="DIR", type=path("--banks"),
                       help="reuse character banks saved by --save-banks instead of generating references again")
        r.add_argument("--save-banks", action="store_true", help="save each character's bank in OUT/banks/")
        r.add_argument("--ray", default=None, metavar="ADDRESS", type=text(300, "--ray"),
                       help="render through Ray: auto (a Ray started on this computer's GPUs, one actor each, and "
                            "stopped after) or a cluster's address (HOST:6379 or ray://HOST:10001); needs "
                            f"{RAY_EXTRA}")
        r.add_argument("--allow-download", action="store_true",
                       help="download the model if it is not on this computer")
        r.add_argument("--config", default=None, metavar="DIR", type=path("--config"),
                       help="configuration folder for a single-file checkpoint (else the local Hugging Face cache)")
        r.add_argument("--pdf", default=None, metavar="FILE", type=path("--pdf"),
                       help="also lay the panels out on pages and export a PDF comic")
        r.add_argument("--cbz", default=None, metavar="FILE", type=path("--cbz"),
                       help="also export the pages as a CBZ for comic readers")
        page_options(r)
        r.add_argument("--mp4", default=None, metavar="FILE", type=path("--mp4"),
                       help="also export an MP4 animatic of the panels")
        video_options(r)
        return r

    # ---- checks, before any work ------------------------------------------------------------------------
    def check(self) -> None:
        from ..engine.errors import InputError
        from ..engine.models.checks import model_family
        from ..engine.story.settings import check_panel_sizes

        args = self.args
        self.project = load_project(args.input) if args.input.endswith(".storystudio") else None
        self.story = self.project.to_story() if self.project is not None else _load_story(args.input)
        self.out = Path(args.out)
        self.run_folder = RunFolder(self.out)
        self.run_folder.check()
        if args.panels and self.run_folder.previous_files():
            raise UserError(f"{self.out} already holds a render; a render of some panels (--panels) goes into a "
                            "folder of its own. Choose another --out.")
        for target in (args.pdf, args.cbz, args.mp4):
            if target:
                check_export_target(target, made=self.out)
        if args.mp4 and args.audio:
            check_audio(args.audio)
        if args.pdf or args.cbz:
            check_page_pixels(self._pages(), args.dpi)
        self.settings = _settings(args, self.project)
        self.family = model_family(args.model)
        try:
            self.settings.validate(family=self.family)
            check_panel_sizes(self.story, 8, self.family)
        except InputError as exc:
            raise UserError(str(exc)) from None
        for index, panel in enumerate(self.story.panels, 1):
            try:  # a tag of nobody in the cast (a character deleted in the app) is told before the model loads
                self.story.expand(panel)
            except KeyError as exc:
                raise UserError(f"panel {index}: {exc.args[0] if exc.args else 'it tags an unknown character.'}") from None
        self.only = _panel_selection(args.panels, self.story)
        _apply_photos(args.photo, args.photo_strength, self.story)
        try:  # a project's own photos and boxes too, before the model loads
            from ..engine.story.regions import check_story

            check_story(self.story)
        except InputError as exc:
            raise UserError(str(exc)) from None
        if args.photo_adapter:
            self.settings.photo_adapter = args.photo_adapter
        for kind in ("pose", "depth", "lineart"):
            _apply_guides(kind, getattr(args, kind), self.story)
        if self.family in ("sd15", "sdxl") and any(p.guides for p in self.story.panels):
            from ..engine.errors import ModelError
            from ..engine.story.controls import find_controlnet

            for kind in sorted({g.kind for p in self.story.panels for g in p.guides}):
                try:  # a missing ControlNet is told before the model loads
                    find_controlnet(kind, self.family, self.settings.control_models.get(kind))
                except ModelError as exc:
                    raise UserError(str(exc)) from None
        if args.banks and not Path(args.banks).is_dir():
            raise UserError(f"the bank folder {args.banks} does not exist.")
        if args.config and not Path(args.config).is_dir():
            raise UserError(f"the configuration folder {args.config} does not exist.")
        if args.ray is None:
            self._check_model()
        else:  # through Ray the actors load the model, maybe on other machines
            self._check_ray()

    def _check_model(self) -> None:
        """The model's files, read without loading it (the other checks are quicker, so this one is last)."""
        from ..engine.errors import ModelError
        from ..engine.models.loading import check_model_source

        try:
            check_model_source(self.args.model, allow_download=self.args.allow_download)
        except ModelError as exc:
            raise UserError(str(exc)) from None

    def _check_ray(self) -> None:
        from ..engine.distributed.cluster import check_address, require_ray
        from ..engine.errors import InputError

        args = self.args
        if args.banks or args.save_banks:
            raise UserError("kept banks (--banks, --save-banks) are not used through Ray: each actor draws the "
                            "references beside its panels. Leave out --ray or the bank options.")
        try:
            args.ray = check_address(args.ray)
            require_ray()
        except InputError as exc:
            raise UserError(str(exc)) from None

    def _pages(self):
        """The pages the render will export: the project's, or the story laid out as ``_comic_project`` will."""
        from ..project.layout import auto_layout
        from ..project.model import Project

        if self.project is not None and self.project.layout.pages:
            return self.project.layout
        panels = (self.project or Project.from_story(self.story)).panels
        return auto_layout(panels, size=self.args.page_size, direction=self.args.direction,
                           layout=self.project.layout if self.project is not None else None)

    # ---- the work ---------------------------------------------------------------------------------------
    def run(self) -> int:
        self.ray_engine = None
        try:
            return self._render()
        finally:
            if self.ray_engine is not None:  # its actors end, and a Ray started for this render stops
                self.ray_engine.close()

    def _render(self) -> int:
        from ..engine.attention.bank import CharacterBank
        from ..engine.errors import GenerationCancelled, InputError, ModelError
        from ..engine.imaging import save_png
        from ..engine.models.loading import load_model, quiet_libraries
        from ..engine.story.pipeline import StoryPipeline
        from ..engine.story.settings import check_panel_sizes

        args, story, settings, out = self.args, self.story, self.settings, self.out
        quiet_libraries()
        banks = _load_banks(args.banks, story, CharacterBank) if args.banks else {}
        started = time.perf_counter()
        if args.ray is not None:
            say(f"Connecting to Ray ({args.ray}) and loading {args.model} on its actors ...")
            engine = self.ray_engine = _start_ray(args)
            model = engine.model
        else:
            say(f"Loading {args.model} ...")
            try:
                model = load_model(args.model, device=args.device, dtype=args.dtype,
                                   allow_download=args.allow_download, config=args.config)
            except ModelError as exc:
                raise UserError(str(exc)) from None
            engine = StoryPipeline(model)
        load_seconds = time.perf_counter() - started
        multiple = engine.size_multiple
        try:  # what only the loaded model can tell, still before anything is written
            settings.validate(multiple, family=self.family or model.arch)
            check_panel_sizes(story, multiple, self.family or model.arch)
        except InputError as exc:
            raise UserError(str(exc)) from None
        where = model.device if isinstance(model.device, str) else model.device.type
        say(f"Model ready on {where} ({str(model.dtype).removeprefix('torch.')}) in {load_seconds:.1f} s.")

        numbered = {p.key: i for i, p in enumerate(story.panels, 1)}
        files: dict[str, str] = {}  # panel or sheet key -> file name, once the file is complete
        status, result = "complete", None
        with self.run_folder.staging() as staging:
            def on_image(img) -> None:
                name = f"panel-{numbered[img.key]:03d}.png" if img.key in numbered else f"{img.key}.png"
                save_png(img.image, staging / name, img.parameters)
                files[img.key] = name

            try:
                with interrupts.soft() as stop:  # first Ctrl+C: stop after this step, keep what is finished
                    result = engine.render(story, settings, progress=_progress_printer(), cancel=stop, banks=banks,
                                           only=self.only, on_image=on_image, keep_banks=args.save_banks,
                                           previews=False)
            except (GenerationCancelled, KeyboardInterrupt):
                status = "cancelled"
            except ValueError as exc:  # InputError and the pipeline's plain ValueErrors
                raise UserError(str(exc)) from None
            finally:
                say("")
            total_seconds = time.perf_counter() - started
            written = [files[key] for key in files]
            if result is not None:
                for message in result.messages:
                    say(f"note: {message}")
                if args.save_banks:
                    (staging / "banks").mkdir(exist_ok=True)
                    for name, bank in result.banks.items():
                        bank.save(staging / "banks" / f"{_safe(name)}.safetensors")
                        written.append(f"banks/{_safe(name)}.safetensors")
            comic = None
            if status == "complete" and (self.project is not None or args.pdf or args.cbz or args.mp4):
                comic = _comic_project(self.project, story, staging, files, args)
                if self.project is not None:
                    from ..project.fileio import ProjectFileError, save_project

                    saved = Path(args.input).name
                    try:
                        save_project(comic, staging / saved)
                    except ProjectFileError as exc:
                        raise UserError(str(exc)) from None
                    written.append(saved)
            manifest = _manifest(args, story, settings, model, result, files, status, load_seconds, total_seconds,
                                 numbered)
            manifest["files"] = sorted(written)
            if status == "cancelled":
                if self.run_folder.previous_files():
                    raise Stopped(f"stopped; {out} was left as it was (it still holds the earlier render).")
                if not files:  # a story's pictures advance together: stopped while drawing, none is finished
                    raise Stopped(f"stopped before any picture was finished; {out} was left as it was.")
                self.run_folder.commit(written, manifest)
                raise Stopped(f"stopped; the {len(files)} finished picture(s) and manifest.json are in {out}.")
            self.run_folder.commit(written, manifest)
        say(f"Wrote {len(files)} image(s) and manifest.json to {out} in {total_seconds:.1f} s.")
        if self.project is not None:
            say(f"Saved the project with its new pictures as {out / Path(args.input).name} (the original is "
                "unchanged).")
        if comic is not None:
            export_comic(comic, args, pdf=args.pdf, cbz=args.cbz, png=None)
            if args.mp4:
                export_video(comic, args)
        return 0


# ---- helpers ------------------------------------------------------------------------------------------------
def _load_story(file: str):
    from ..project.script import ScriptError, load_script

    try:
        return load_script(file)
    except ScriptError as exc:
        if len(exc.problems) == 1:
            raise UserError(str(exc)) from None
        raise UserError(f"the story script {file} has {len(exc.problems)} problems:\n{exc}") from None


def _settings(args, project=None):
    """Generation settings: the options given, else the project's own settings, else the defaults."""
    from ..engine.story.settings import GenerationSettings
    from ..project.model import ProjectSettings

    w, h = args.size if args.size is not None else (None, None)
    return GenerationSettings.from_project(
        project.settings if project is not None else ProjectSettings(),
        steps=args.steps, width=w, height=h, guidance=args.guidance, seed=args.seed, style=args.style,
        negative_prompt=args.negative, scheduler=args.scheduler,
        freeu=None if args.no_freeu is None else not args.no_freeu,
        regions=None if args.no_regions is None else not args.no_regions, id_length=args.id_length,
        batch_size=args.batch_size, rate=args.rate, compile=args.compile or None,
        control_strength=args.pose_strength,
        control_start=None if args.pose_steps is None else args.pose_steps[0],
        control_end=None if args.pose_steps is None else args.pose_steps[1],
        control_models={kind: model for kind, model in (("pose", args.pose_model), ("depth", args.depth_model),
                                                        ("lineart", args.lineart_model)) if model} or None,
    )


def _apply_photos(given: list[str], strength: float | None, story) -> None:
    """--photo NAME=IMAGE: each photo read and checked now, before the model loads, into the story's cast."""
    from ..engine.errors import InputError
    from ..engine.story.photos import open_photo

    seen = set()
    for item in given:
        name, sep, file = item.partition("=")
        name, file = name.strip(), file.strip()
        if not sep or not name or not file:
            raise UserError(f"--photo takes NAME=IMAGE (a character's name, then the photo's file), not "
                            f"{limits.quote(item)}.")
        names = [c.name for c in story.characters]
        if name not in names:
            raise UserError(f"--photo names {limits.quote(name)}, who is not in this story (characters: "
                            f"{', '.join(names) or 'none'}).")
        if name in seen:
            raise UserError(f"--photo gives [{name}] two photos; give one.")
        seen.add(name)
        photo = Path(file).expanduser()
        if not photo.is_file():
            raise UserError(f"the photo {file} for [{name}] does not exist.")
        data = photo.read_bytes()
        try:
            open_photo(data, name)
        except InputError as exc:
            raise UserError(str(exc)) from None
        character = story.character(name)
        character.photo = data
        if strength is not None:
            character.photo_strength = strength
    if strength is not None and not given:
        for character in story.characters:  # a project's own photos take the strength given
            if character.photo:
                character.photo_strength = strength


_GUIDE_WORDS = {"pose": "pose picture", "depth": "depth map", "lineart": "line art"}


def _apply_guides(kind: str, specs: list[tuple[int, str]], story) -> None:
    """Give the panels named by ``--pose``/``--depth``/``--lineart N=IMAGE`` that guide picture (over the whole
    panel, replacing the panel's own of that kind), each checked."""
    from ..project.pose import WHOLE_PANEL, Guide, PoseError, pose_png

    words = _GUIDE_WORDS[kind]
    for panel_number, image in specs:
        if not 1 <= panel_number <= len(story.panels):
            raise UserError(f"--{kind} names panel {panel_number}, but the story has panels 1 to "
                            f"{len(story.panels)}.")
        try:
            data = Path(image).read_bytes()
        except OSError as exc:
            raise UserError(f"the {words} {limits.quote(image)} cannot be read "
                            f"({exc.strerror or 'not a file'}).") from None
        try:
            png = pose_png(data, f"The {words} {limits.quote(Path(image).name)}", kind)
        except PoseError as exc:
            raise UserError(str(exc)) from None
        panel = story.panels[panel_number - 1]
        others = tuple(g for g in panel.guides if g.kind != kind)
        panel.guides = others + (Guide(kind, images=((png, WHOLE_PANEL),)),)


def _start_ray(args):
    """The Ray engine for ``--ray``: connected, its actors started with the model loaded (UserError if not)."""
    from ..engine.distributed.ray_story import RayStoryEngine
    from ..engine.errors import InputError, ModelError

    try:
        return RayStoryEngine.start(args.ray, args.model, device=args.device, dtype=args.dtype,
                                    allow_download=args.allow_download, config=args.config)
    except (InputError, ModelError) as exc:
        raise UserError(str(exc)) from None


def _panel_selection(spec: str | None, story) -> list[str] | None:
    if not spec:
        return None
    keys = []
    for part in spec.split(","):
        part = part.strip()
        if not re.fullmatch(r"[0-9]{1,6}", part) or not 1 <= int(part) <= len(story.panels):
            raise UserError(f"{limits.quote(part)} is not a panel number of this story (1 to {len(story.panels)}).")
        keys.append(story.panels[int(part) - 1].key)
    return keys


def _load_banks(folder: str, story, bank_cls) -> dict:
    root = Path(folder)
    banks = {}
    for character in story.characters:
        file = root / f"{_safe(character.name)}.safetensors"
        if file.is_file():
            try:
                banks[character.name] = bank_cls.load(file)
            except ValueError as exc:
                raise UserError(str(exc)) from None
    return banks


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _comic_project(project, story, folder: Path, files: dict[str, str], args):
    """The project (or a new one from the script) with the rendered pictures as its panels' chosen versions.

    Pages already laid out in a project are kept; otherwise the story is laid
    out on ``--page-size`` pages, captions becoming caption boxes.
    """
    from ..engine.imaging import read_png_parameters
    from ..project.layout import auto_layout
    from ..project.model import Project

    comic = project if project is not None else Project.from_story(story)
    keys = [p.key for p in story.panels] if project is None else [p.id for p in comic.panels]
    for key, panel in zip(keys, comic.panels):
        if key in files:
            file = folder / files[key]
            comic.add_version(panel.id, file.read_bytes(), read_png_parameters(file))
    if not comic.layout.pages:
        comic.layout = auto_layout(comic.panels, size=args.page_size, direction=args.direction,
                                   layout=comic.layout)
    return comic


def _manifest(args, story, settings, model, result, files, status, load_seconds, total_seconds, numbered) -> dict:
    from ..engine.models.loading import device_summary
    from ..engine.story.regions import photo_parameters

    panels = []
    images = result.images if result else {}
    for panel in story.panels:
        entry = {"number": numbered[panel.key], "key": panel.key, "prompt": panel.prompt, "caption": panel.caption,
                 "characters": panel.characters, "file": files.get(panel.key)}
        if panel.key in images:
            img = images[panel.key]
            entry.update(role=img.role, seed=img.parameters["seed"], full_prompt=img.parameters["prompt"],
                         negative_prompt=img.parameters["negative_prompt"], seconds=round(img.seconds, 3))
            entry.update({k: img.parameters[k] for k in ("regions", "photos") if k in img.parameters})
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
        "model": {"source": model.source, "arch": model.arch,
                  "device": model.device if isinstance(model.device, str) else device_summary(model.device),
                  "dtype": str(model.dtype).removeprefix("torch.")},
        "settings": settings.to_dict(),
        "characters": [{"name": c.name, "description": c.description,
                        "bank_bytes": result.banks[c.name].nbytes if result and c.name in result.banks else 0,
                        "bank_bytes_per_step": result.banks[c.name].bytes_per_step
                        if result and c.name in result.banks else 0,
                        "photo": photo_parameters(story, [c.name]).get(c.name)}
                       for c in story.characters],
        "panels": panels,
        "reference_sheets": sheets,
        "messages": result.messages if result else [],
        "timings": timings,
    }


def manifest_text(data: dict) -> str:
    """manifest.json's text: strict JSON (a NaN would make it unreadable, so it is refused here)."""
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _progress_printer():
    import sys

    tty = sys.stderr.isatty()
    last = {"batch": None}

    def show(p) -> None:
        # references and panels advance together: one line per step of the whole story
        percent = 100 * p.work_done // max(1, p.work_total)
        line = f"[{p.panels_total} pictures] step {p.step}/{p.steps} ({percent}%)"
        if tty:
            print("\r" + line[:100].ljust(100), end="", file=sys.stderr, flush=True)
        elif last["batch"] != p.step and (p.step == 1 or p.step % 5 == 0 or p.work_done == p.work_total):
            last["batch"] = p.step
            say(line)

    return show
