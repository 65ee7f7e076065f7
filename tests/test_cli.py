"""The ``storystudio`` command: help and version, tiny models, headless renders, plain errors.

Everything runs on the CPU and offline with the tiny random models of conftest.py
(their pictures are noise). Renders are shared through module-scoped fixtures.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader
from PySide6.QtCore import QSize
from PySide6.QtPdf import QPdfDocument

from conftest import COLOURS, EXAMPLE, SMALL_STORY, flat_png
from storystudio import __version__
from storystudio.cli import main
from storystudio.engine.imaging import read_png_parameters
from storystudio.engine.models.base import model_folders
from storystudio.engine.story.styles import style_names
from storystudio.project.fileio import load_project, save_project
from storystudio.project.layout import Balloon
from storystudio.project.model import Project
from storystudio.project.script import parse_script

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


@pytest.fixture(scope="module")
def small_script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scripts") / "small.story.txt"
    path.write_text(SMALL_STORY, encoding="utf-8")
    return path


# ---- help and version through the installed console script ------------------------------------
def test_console_script_version_and_help():
    exe = Path(sys.executable).parent / "storystudio"
    assert exe.is_file(), f"the console script is not installed next to {sys.executable}"
    commands = {"version": ["--version"], "help": ["--help"], "render": ["render", "--help"]}
    # started together: each one pays the interpreter and library import cost
    procs = {name: subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in commands.items()}
    results = {name: (p.communicate(timeout=120), p.returncode) for name, p in procs.items()}

    (out, err), rc = results["version"]
    assert rc == 0, err
    assert out.strip() == f"StoryStudio {__version__}"

    (out, err), rc = results["help"]
    assert rc == 0, err
    assert out.startswith("usage: storystudio")
    assert "Comics with the same characters in every panel." in out
    assert "render" in out and "models" in out and "--version" in out

    (out, err), rc = results["render"]
    assert rc == 0, err
    assert out.startswith("usage: storystudio render")
    for option in ("INPUT", "--out", "--model", "--steps", "--size", "--seed", "--style", "--panels",
                   "--banks", "--save-banks", "--allow-download"):
        assert option in out, option
    flat = " ".join(out.split())  # argparse wraps long help lines
    assert all(name in flat for name in style_names()), "the --style help must name the styles"
    assert "--list-styles" not in out, "the help must not point to an option that does not exist"
    assert "Traceback" not in err


# ---- models create-tiny ---------------------------------------------------------------------
def test_models_create_tiny_writes_a_diffusers_folder(tmp_path):
    folder = tmp_path / "tiny15"
    run = cli("models", "create-tiny", folder, "--arch", "sd15")
    assert run.rc == 0, run.err
    assert str(folder) in run.out and "sd15" in run.out
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    for part in ("unet", "vae", "text_encoder"):
        assert (folder / part / "config.json").is_file(), part
        weights = list((folder / part).glob("*.safetensors"))
        assert weights and all(w.stat().st_size > 0 for w in weights), part
    assert any((folder / "tokenizer").iterdir())
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt")), "weights must be safetensors only"


def test_models_create_tiny_refuses_a_non_empty_folder(tmp_path):
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me", encoding="utf-8")
    run = cli("models", "create-tiny", folder, "--arch", "sd15")
    assert run.rc == 2
    assert run.err.count("\n") == 1 and run.err.startswith("storystudio: "), run.err
    assert "not empty" in run.err and "Traceback" not in run.err
    assert run.out == ""
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "keep me"


# ---- the bundled example, end to end ------------------------------------------------------------
@pytest.fixture(scope="module")
def example_render(tmp_path_factory, tiny_model_dirs):
    out = tmp_path_factory.mktemp("example") / "out"
    run = cli("render", EXAMPLE, "--out", out, "--model", tiny_model_dirs["sdxl"], *FAST,
              "--pdf", out.parent / "lighthouse.pdf", "--cbz", out.parent / "lighthouse.cbz", "--author", "CLI Test",
              "--mp4", out.parent / "lighthouse.mp4", "--fps", "12", "--video-size", "1280x720")
    return run, out


def test_render_example_makes_an_animatic(example_render):
    from storystudio.export.animatic import read_back
    from storystudio.project.animatic import auto_duration

    run, out = example_render
    assert run.rc == 0, run.err
    info = read_back(out.parent / "lighthouse.mp4")
    story = parse_script(EXAMPLE.read_text(encoding="utf-8"))
    seconds = sum(auto_duration(p) for p in story.panels) + 0.5 * (len(story.panels) - 1)  # holds + crossfades
    assert info["frames"] == round(seconds * 12) and info["size"] == (1280, 720) and info["fps"] == 12
    assert not info["audio"]
    assert "Wrote the animatic" in run.err


def test_render_example_lays_out_a_pdf_and_cbz(example_render):
    run, out = example_render
    assert run.rc == 0, run.err
    reader = PdfReader(out.parent / "lighthouse.pdf")
    assert len(reader.pages) == 2  # eight panels: two pages of four
    assert float(reader.pages[0].mediabox.width) == pytest.approx(477.0)
    assert reader.metadata.author == "CLI Test"
    text = " ".join(" ".join(page.extract_text().split()) for page in reader.pages)
    story = parse_script(EXAMPLE.read_text(encoding="utf-8"))
    for panel in story.panels:  # captions became caption boxes, as text
        assert " ".join(panel.caption.split()) in text
    with zipfile.ZipFile(out.parent / "lighthouse.cbz") as archive:
        assert archive.namelist() == ["page-001.png", "page-002.png", "ComicInfo.xml"]
    assert "Wrote the PDF (2 page(s))" in run.err
    # the generated pictures are on the page: the first frame is not blank paper
    document = QPdfDocument()
    document.load(str(out.parent / "lighthouse.pdf"))
    image = document.render(0, QSize(160, 248))
    assert len({image.pixel(x, 60) for x in range(30, 130, 5)}) > 3


def test_render_example_writes_eight_panels(example_render, tiny_model_dirs):
    run, out = example_render
    assert run.rc == 0, run.err
    assert "Traceback" not in run.err
    names = [f"panel-{n:03d}.png" for n in range(1, 9)]
    assert pngs(out) == names
    for name in names:
        with Image.open(out / name) as im:
            assert im.size == (64, 64), name
        params = read_png_parameters(out / name)
        missing = [k for k in PNG_KEYS if k not in params]
        assert not missing, (name, missing)
        assert params["steps"] == 2 and (params["width"], params["height"]) == (64, 64)
        assert params["model"] == str(tiny_model_dirs["sdxl"])
    # panel 1 shows Mira alone: her description replaces the [Mira] tag in the prompt
    first = read_png_parameters(out / "panel-001.png")
    assert "copper hair" in first["prompt"] and "[Mira]" not in first["prompt"]
    assert "white beard" not in first["prompt"]
    # panel 8 shows both characters
    last = read_png_parameters(out / "panel-008.png")
    assert "copper hair" in last["prompt"] and "white beard" in last["prompt"]


def test_render_example_manifest(example_render):
    run, out = example_render
    assert run.rc == 0, run.err
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "complete"
    assert manifest["title"] == "lighthouse"
    assert manifest["model"]["arch"] == "sdxl"
    panels = manifest["panels"]
    assert [p["number"] for p in panels] == list(range(1, 9))
    assert [p["file"] for p in panels] == [f"panel-{n:03d}.png" for n in range(1, 9)]
    assert [p["role"] for p in panels] == ["reference"] * 6 + ["panel"] * 2
    seeds = [p["seed"] for p in panels]
    assert all(isinstance(s, int) for s in seeds) and len(set(seeds)) == 8
    for p in panels:  # the manifest agrees with what each PNG says about itself
        assert read_png_parameters(out / p["file"])["seed"] == p["seed"]
    assert panels[6]["characters"] == [] and panels[7]["characters"] == ["Mira", "Tobias"]

    cast = {c["name"]: c for c in manifest["characters"]}
    assert set(cast) == {"Mira", "Tobias"}
    assert all(c["bank_bytes"] == 0 for c in cast.values())  # references drawn in flight: no bank is kept
    assert "copper hair" in cast["Mira"]["description"]

    settings = manifest["settings"]
    assert (settings["steps"], settings["width"], settings["height"], settings["seed"]) == (2, 64, 64, 0)
    timings = manifest["timings"]
    assert timings["total_seconds"] > 0 and timings["model_load_seconds"] > 0
    assert timings.get("write_unet_calls", 0) > 0 and timings.get("read_unet_calls", 0) > 0
    assert any("Tobias" in m and "2" in m for m in manifest["messages"]), manifest["messages"]


# ---- reproducibility and regenerating one panel from saved banks ---------------------------------
@pytest.fixture(scope="module")
def small_renders(tmp_path_factory, small_script, tiny_model_dirs):
    root = tmp_path_factory.mktemp("small")
    model = tiny_model_dirs["sd15"]
    full = cli("render", small_script, "--out", root / "out", "--model", model, *FAST, "--save-banks")
    again = cli("render", small_script, "--out", root / "out2", "--model", model, *FAST,
                "--panels", "6", "--banks", root / "out" / "banks")
    other_seed = cli("render", small_script, "--out", root / "out3", "--model", model, *FAST, "--seed", "1")
    return root, {"full": full, "again": again, "other_seed": other_seed}


def test_save_banks_writes_one_bank_per_character(small_renders):
    root, runs = small_renders
    assert runs["full"].rc == 0, runs["full"].err
    assert pngs(root / "out") == [f"panel-{n:03d}.png" for n in range(1, 7)]
    banks = sorted(p.name for p in (root / "out" / "banks").glob("*.safetensors"))
    assert banks == ["Ann.safetensors", "Bo.safetensors"]
    assert all((root / "out" / "banks" / b).stat().st_size > 0 for b in banks)
    manifest = json.loads((root / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert all(c["bank_bytes"] > 0 for c in manifest["characters"])  # kept, so counted


def test_one_panel_regenerated_from_banks_is_identical(small_renders):
    root, runs = small_renders
    assert runs["again"].rc == 0, runs["again"].err
    out2 = root / "out2"
    assert pngs(out2) == ["panel-006.png"]
    assert not (out2 / "banks").exists()
    assert np.array_equal(pixels(out2 / "panel-006.png"), pixels(root / "out" / "panel-006.png"))
    manifest = json.loads((out2 / "manifest.json").read_text(encoding="utf-8"))
    assert [p["file"] for p in manifest["panels"]] == [None] * 5 + ["panel-006.png"]
    first = json.loads((root / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["panels"][5]["seed"] == first["panels"][5]["seed"]
    # the references were not drawn again: no write phase ran
    assert "write_unet_calls" not in manifest["timings"]


def test_another_seed_gives_another_picture(small_renders):
    root, runs = small_renders
    assert runs["other_seed"].rc == 0, runs["other_seed"].err
    a, b = root / "out" / "panel-006.png", root / "out3" / "panel-006.png"
    assert read_png_parameters(a)["seed"] != read_png_parameters(b)["seed"]
    assert not np.array_equal(pixels(a), pixels(b))


# ---- bad input: exit code 2, one plain message, nothing written -----------------------------------
BAD_SCRIPTS = {
    "unknown-name": "[Ann] a girl with red hair\n\n[Ann] reads a book\n[Zed] dances in the rain\n",
    "malformed": "[Ann] a girl with red hair\n\n[Ann] reads a book\n[Ann walks home\n",
}


@pytest.mark.parametrize(
    "case",
    ["missing-input", "unknown-name", "malformed", "size-not-wxh", "size-not-multiple", "size-not-model-multiple",
     "unknown-style", "missing-model-file", "model-not-cached", "bad-audio", "pdf-folder-missing", "panel-out-of-range"],
)
def test_bad_input_is_refused_plainly(case, tmp_path, small_script, tiny_model_dirs, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("existing", encoding="utf-8")
    script, model, extra = small_script, str(tiny_model_dirs["sd15"]), []
    expected: tuple[str, ...]
    # extra options come after FAST: for a repeated --size, argparse keeps the last one
    if case == "missing-input":
        script = tmp_path / "nowhere.story.txt"
        expected = ("nowhere.story.txt", "does not exist")
    elif case in BAD_SCRIPTS:
        script = tmp_path / f"{case}.story.txt"
        script.write_text(BAD_SCRIPTS[case], encoding="utf-8")
        expected = ("[Zed]", "not in the cast") if case == "unknown-name" else ("Line 4", "never closed")
    elif case == "size-not-wxh":
        extra, expected = ["--size", "100"], ('"100" is not a size', "WIDTHxHEIGHT")
    elif case == "size-not-multiple":
        extra, expected = ["--size", "70x70"], ("multiples of 8",)
    elif case == "size-not-model-multiple":  # passes the general check; this model needs multiples of 32
        extra, expected = ["--size", "80x80"], ("multiples of 32",)
    elif case == "unknown-style":
        extra, expected = ["--style", "Nope"], ('"Nope"', *style_names())
    elif case == "missing-model-file":
        model, expected = "/nonexistent/path.safetensors", ("/nonexistent/path.safetensors", "does not exist")
    elif case == "model-not-cached":
        empty = tmp_path / "empty-cache"
        empty.mkdir()
        point_hf_cache(monkeypatch, empty, tmp_path)
        model, expected = "some-org/not-cached", ("some-org/not-cached", "not on this computer")
    elif case == "bad-audio":
        (tmp_path / "noise.mp3").write_text("not sound", encoding="utf-8")
        extra = ["--mp4", tmp_path / "x.mp4", "--audio", tmp_path / "noise.mp3"]
        expected = ("noise.mp3 cannot be read as sound",)
    elif case == "pdf-folder-missing":
        extra, expected = ["--pdf", tmp_path / "no-such-folder" / "x.pdf"], ("no-such-folder", "does not exist")
    else:
        extra, expected = ["--panels", "99"], ('"99"', "1 to 6")

    run = cli("render", script, "--out", out, "--model", model, *FAST, *extra)
    assert_plain_error(run, *expected)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text(encoding="utf-8") == "existing"
    assert not (tmp_path / "x.pdf").exists() and not (tmp_path / "x.mp4").exists()


# ---- the model folders and the Hugging Face cache ---------------------------------------------
@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory, tiny_model_dirs) -> Path:
    """A Hugging Face cache holding the tiny sd15 model as the repo ``tiny/sd15``."""
    cache = tmp_path_factory.mktemp("hf-cache")
    repo = cache / "models--tiny--sd15"
    shutil.copytree(tiny_model_dirs["sd15"], repo / "snapshots" / SNAPSHOT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT, encoding="utf-8")  # no newline, as the Hub client writes it
    return cache


def test_models_path_prints_both_folders(tmp_path, monkeypatch):
    point_hf_cache(monkeypatch, tmp_path / "cache", tmp_path)
    run = cli("models", "path")
    assert run.rc == 0, run.err
    lines = run.out.splitlines()
    assert f"Hugging Face cache: {tmp_path / 'cache'}" in lines
    own = [line for line in lines if line.startswith("StoryStudio models: ")]
    assert own and own[0].endswith(str(model_folders()["StoryStudio models"]))
    assert str(tmp_path / "data") in own[0]


def test_models_list_finds_a_cached_hub_model(hf_cache, tmp_path, monkeypatch):
    point_hf_cache(monkeypatch, hf_cache, tmp_path)
    run = cli("models", "list")
    assert run.rc == 0, run.err
    rows = [line.split("\t") for line in run.out.splitlines() if "\t" in line]
    assert [(r[0], r[1]) for r in rows] == [("tiny/sd15", "sd15")], run.out
    assert rows[0][3] == str(hf_cache / "models--tiny--sd15" / "snapshots" / SNAPSHOT)


def test_models_list_with_an_empty_cache(tmp_path, monkeypatch):
    (tmp_path / "cache").mkdir()
    point_hf_cache(monkeypatch, tmp_path / "cache", tmp_path)
    run = cli("models", "list")
    assert run.rc == 0, run.err
    assert "No Stable Diffusion models were found" in run.out


def test_render_with_a_hub_id_from_the_cache(hf_cache, tmp_path, small_script, monkeypatch):
    point_hf_cache(monkeypatch, hf_cache, tmp_path)
    out = tmp_path / "out"
    run = cli("render", small_script, "--out", out, "--model", "tiny/sd15", *FAST)
    assert run.rc == 0, run.err
    assert pngs(out) == [f"panel-{n:03d}.png" for n in range(1, 7)]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "complete"
    assert manifest["model"]["source"] == "tiny/sd15" and manifest["model"]["arch"] == "sd15"
    assert read_png_parameters(out / "panel-001.png")["model"] == "tiny/sd15"


def test_output_that_is_a_file_is_refused_before_loading(tmp_path, small_script):
    taken = tmp_path / "taken"
    taken.write_text("mine", encoding="utf-8")
    run = cli("render", small_script, "--out", taken, "--model", "/nonexistent/model.safetensors", *FAST)
    assert_plain_error(run, "is a file, not a folder")  # reported before the (missing) model is looked at
    assert taken.read_text(encoding="utf-8") == "mine"


def test_failed_model_load_leaves_no_output_folder(tmp_path, small_script):
    out = tmp_path / "new-out"
    run = cli("render", small_script, "--out", out, "--model", "/nonexistent/model.safetensors", *FAST)
    assert_plain_error(run, "does not exist")
    assert not out.exists()


# ---- exporting a saved project, and rendering one ---------------------------------------------
@pytest.fixture
def saved_project(tmp_path, qapp) -> Path:
    """The example project with a flat colour per panel, laid out on manga pages, with a hand-made balloon."""
    from storystudio.project.layout import auto_layout

    project = Project.example()
    for panel, colour in zip(project.panels, COLOURS):
        project.add_version(panel.id, flat_png(colour), {"seed": 1})
    project.layout = auto_layout(project.panels, size="manga-a5", direction="rtl")
    project.layout.pages[0].balloons.append(Balloon("sfx", 40, 60, 120, 50, text="WHOOSH"))
    path = tmp_path / "lighthouse.storystudio"
    save_project(project, path)
    return path


def test_export_a_saved_project_without_generating(saved_project, tmp_path):
    run = cli("export", saved_project, "--pdf", tmp_path / "book.pdf", "--cbz", tmp_path / "book.cbz",
              "--png", tmp_path / "pages", "--dpi", "100")
    assert run.rc == 0, run.err
    reader = PdfReader(tmp_path / "book.pdf")
    assert len(reader.pages) == 2
    assert float(reader.pages[0].mediabox.width) == pytest.approx(148 * 72 / 25.4)  # A5, as laid out
    assert reader.trailer["/Root"]["/ViewerPreferences"]["/Direction"] == "/R2L"
    assert "WHOOSH" in reader.pages[0].extract_text()
    with zipfile.ZipFile(tmp_path / "book.cbz") as archive:
        info = archive.read("ComicInfo.xml").decode()
    assert "<Manga>YesAndRightToLeft</Manga>" in info and "<PageCount>2</PageCount>" in info
    pages = sorted(p.name for p in (tmp_path / "pages").iterdir())
    assert pages == ["page-001.png", "page-002.png"]
    with Image.open(tmp_path / "pages" / "page-001.png") as im:
        assert im.size == (round(148 / 25.4 * 100), round(210 / 25.4 * 100))


def test_export_can_lay_the_story_out_again(saved_project, tmp_path):
    run = cli("export", saved_project, "--png", tmp_path / "strip", "--relayout", "--page-size", "webtoon")
    assert run.rc == 0, run.err
    with Image.open(tmp_path / "strip" / "page-001.png") as im:
        assert im.size[0] == 800 and im.size[1] > 3000  # a tall strip of square panels


@pytest.mark.parametrize("case", ["nothing", "script", "missing", "folder"])
def test_export_errors_are_plain(case, saved_project, tmp_path):
    if case == "nothing":
        run, expected = cli("export", saved_project), ("--pdf FILE",)
    elif case == "script":
        run, expected = cli("export", EXAMPLE, "--pdf", tmp_path / "x.pdf"), ("not a .storystudio project",)
    elif case == "missing":
        run, expected = cli("export", tmp_path / "gone.storystudio", "--pdf", tmp_path / "x.pdf"), ("gone",)
    else:
        run, expected = cli("export", saved_project, "--pdf", tmp_path / "nope" / "x.pdf"), ("does not exist",)
    assert_plain_error(run, *expected)
    assert not (tmp_path / "x.pdf").exists()


def test_render_a_project_keeps_its_settings_and_pages(saved_project, tmp_path, tiny_model_dirs):
    project = load_project(saved_project)
    project.settings.steps, project.settings.width, project.settings.height = 2, 64, 64
    project.settings.seed = 7
    save_project(project, saved_project)
    out = tmp_path / "out"
    run = cli("render", saved_project, "--out", out, "--model", tiny_model_dirs["sd15"], "--device", "cpu",
              "--pdf", tmp_path / "book.pdf")
    assert run.rc == 0, run.err
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert (manifest["settings"]["steps"], manifest["settings"]["width"], manifest["settings"]["seed"]) == (2, 64, 7)
    rendered = load_project(out / "lighthouse.storystudio")
    assert all(len(p.versions) == 2 and p.chosen == 1 for p in rendered.panels)  # new pictures became versions
    assert rendered.layout.size == "manga-a5" and len(rendered.layout.pages) == len(project.layout.pages)
    assert load_project(saved_project).panels[0].versions == project.panels[0].versions  # the original is untouched
    assert len(PdfReader(tmp_path / "book.pdf").pages) == 2


def test_export_an_animatic_with_sound_and_camera_moves(saved_project, tmp_path):
    import wave

    from storystudio.export.animatic import read_back

    with wave.open(str(tmp_path / "theme.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(np.zeros(8000, dtype=np.int16).tobytes())
    project = load_project(saved_project)
    for panel in project.panels:
        panel.duration = 0.75
    save_project(project, saved_project)
    run = cli("export", saved_project, "--mp4", tmp_path / "a.mp4", "--audio", tmp_path / "theme.wav", "--fps", "12",
              "--video-size", "1080x1080", "--transition", "cut", "--camera", "zoom-in", "--soft-subtitles")
    assert run.rc == 0, run.err
    info = read_back(tmp_path / "a.mp4")
    assert info["frames"] == 8 * 9 and info["size"] == (1080, 1080)  # eight 0.75 s holds, plain cuts
    assert info["audio"] and info["subtitles"]
    assert load_project(saved_project).animatic.audio is None  # the project file itself is not changed


# ---- models: download, import, remove, against a model hub stand-in on 127.0.0.1 -----------------
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from hubserver import FakeHub, catalog_item, use_hub, write_catalog  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

HUB_TOKEN = "hf_CliTestTokenNeverShown42"


@pytest.fixture
def fake_hub(tiny_model_dirs, tmp_path, monkeypatch):
    """The tiny sd15 model served as "tiny/sd15" (catalog id tiny-sd15) and, gated, as "tiny/gated" (tiny-gated)."""
    with FakeHub() as hub:
        repo = hub.add_repo("tiny/sd15", tiny_model_dirs["sd15"])
        gated = hub.add_repo("tiny/gated", tiny_model_dirs["sd15"], token=HUB_TOKEN)
        use_hub(monkeypatch, tmp_path, hub)
        write_catalog(monkeypatch, tmp_path / "catalog.json", catalog_item(repo, "tiny-sd15"),
                      catalog_item(gated, "tiny-gated"))
        yield hub


def _catalog_line(run: Run, model_id: str) -> str:
    return next(line for line in run.out.splitlines() if line.split()[:1] == [model_id])


def test_models_download_list_and_remove(fake_hub):
    run = cli("models", "download", "tiny-sd15")
    assert run.rc == 0, run.err
    assert "Downloading Tiny tiny-sd15 (tiny/sd15, 6.6 MB) ..." in run.err
    assert "Fetched 6.6 MB in " in run.err and "MB/s" in run.err
    assert run.out.startswith("Tiny tiny-sd15 is installed in ") and "models--tiny--sd15" in run.out

    listing = cli("models", "list")
    assert listing.rc == 0, listing.err
    assert _catalog_line(listing, "tiny-sd15").split()[1:3] == ["installed", "6.6"]
    assert _catalog_line(listing, "tiny-gated").split()[1:3] == ["not", "downloaded"]
    assert _catalog_line(listing, "sdxl-base").split()[1:5] == ["not", "downloaded", "~6.9", "GB"]
    assert not [line for line in listing.out.splitlines() if "\t" in line]  # not listed a second time
    assert "Disk use: 6.6 MB in the Hugging Face cache" in listing.out

    fake_hub.clear_log()
    again = cli("models", "download", "tiny-sd15")
    assert again.rc == 0 and "is installed in" in again.out and fake_hub.log == []

    removed = cli("models", "remove", "tiny-sd15")
    assert removed.rc == 0, removed.err
    assert removed.out.strip() == "Removed tiny-sd15 (6.6 MB freed)."
    assert _catalog_line(cli("models", "list"), "tiny-sd15").split()[1:3] == ["not", "downloaded"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_models_download_draws_a_progress_bar_on_a_terminal(fake_hub):
    fake_hub.throttle = 10e6
    err = _Terminal()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        assert main(["models", "download", "tiny-sd15"]) == 0
    bars = [part for part in err.getvalue().split("\r") if part.startswith("[")]
    assert len(bars) >= 3
    assert any("MB/s" in bar and " left" in bar and " / 6.6 MB" in bar for bar in bars), bars
    assert bars[-1].startswith("[" + "#" * 24 + "] 6.6 MB / 6.6 MB")


def test_models_download_of_a_gated_model_reads_the_token_file(fake_hub, tmp_path):
    run = cli("models", "download", "tiny-gated")
    assert_plain_error(run, "is a gated model: accept its licence at https://huggingface.co/tiny/gated",
                       "access token")
    token_file = tmp_path / "token.txt"
    token_file.write_text(HUB_TOKEN + "\n", encoding="utf-8")
    run = cli("models", "download", "tiny-gated", "--token-file", token_file)
    assert run.rc == 0, run.err
    assert HUB_TOKEN not in run.out + run.err
    assert_plain_error(cli("models", "download", "tiny-gated", "--token-file", tmp_path / "none.txt"),
                       "the token file", "cannot be read")


def test_models_download_mistakes_and_offline(fake_hub, monkeypatch):
    assert_plain_error(cli("models", "download", "nope"), '"nope" is not in the model catalog; choose one of: ')
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert_plain_error(cli("models", "download", "tiny-sd15"), "Downloads are switched off on this computer")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{s.getsockname()[1]}")
    assert_plain_error(cli("models", "download", "tiny-sd15"), "cannot be reached: this computer seems to be offline")
    assert fake_hub.log == []


def test_models_download_stops_cleanly_on_ctrl_c_and_resumes(fake_hub):
    fake_hub.throttle = 2e6  # about 3 s for the whole model

    def interrupt() -> None:  # once the download is under way (and its Ctrl+C handler installed)
        deadline = time.monotonic() + 20
        while not fake_hub.body_bytes("unet/diffusion_pytorch_model.safetensors") and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupt)
    thread.start()
    run = cli("models", "download", "tiny-sd15")
    thread.join()
    assert run.rc == 130, run.err
    assert "Traceback" not in run.err
    assert "storystudio: the download was stopped; run the same command again to continue" in run.err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    assert _catalog_line(cli("models", "list"), "tiny-sd15").split()[1] == "partly"

    fake_hub.throttle = None
    run = cli("models", "download", "tiny-sd15")
    assert run.rc == 0, run.err
    assert "were already here." in run.err


def test_models_import_and_remove(tmp_path, monkeypatch, tiny_model_dirs):
    use_hub(monkeypatch, tmp_path)
    ckpt = tmp_path / "mine.safetensors"
    save_file({"cond_stage_model.transformer.text_model.final_layer_norm.weight": torch_zeros(2),
               "model.diffusion_model.out.0.weight": torch_zeros(2)}, str(ckpt))
    run = cli("models", "import", ckpt)
    assert run.rc == 0, run.err
    own = model_folders()["StoryStudio models"]
    size = ckpt.stat().st_size
    assert run.out.strip() == f"Imported the SD1.5 model as {own / 'mine.safetensors'} ({size} B)."

    pickled = tmp_path / "old.ckpt"
    __import__("torch").save({"state_dict": {"cond_stage_model.model.ln_final.weight": torch_zeros(2)}}, pickled)
    assert_plain_error(cli("models", "import", pickled), "old.ckpt is a pickled checkpoint")
    run = cli("models", "import", pickled, "--allow-pickle")
    assert run.rc == 0 and run.out.startswith("Imported the SD2.x model as "), run.err

    folder = tmp_path / "folder-model"
    shutil.copytree(tiny_model_dirs["sd15"], folder)
    run = cli("models", "import", folder)
    assert run.rc == 0 and run.out.startswith(f"Added the SD1.5 model folder {folder} (used where it is"), run.err
    rows = [line.split("\t") for line in cli("models", "list").out.splitlines() if "\t" in line]
    assert {(r[0], r[1]) for r in rows} == {(str(folder), "sd15"), (str(own / "mine.safetensors"), "sd15"),
                                            (str(own / "old.safetensors"), "sd2")}

    run = cli("models", "remove", folder)
    assert run.rc == 0 and "its files were left where they are" in run.out
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    run = cli("models", "remove", own / "mine.safetensors")
    assert run.rc == 0 and run.out.strip() == f"Removed {own / 'mine.safetensors'} ({size} B freed)."
    assert_plain_error(cli("models", "remove", "no-such-model"), "is not a model StoryStudio can remove")
    assert_plain_error(cli("models", "import", tmp_path / "missing.safetensors"), "does not exist")


def torch_zeros(n: int):
    import torch

    return torch.zeros(n)
