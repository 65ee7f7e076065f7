"""``storystudio render``: help and version, headless renders of the example and small stories, plain errors."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader
from PySide6.QtCore import QSize
from PySide6.QtPdf import QPdfDocument

from cli_helpers import FAST, PNG_KEYS, assert_plain_error, cli, pixels, pngs, point_hf_cache
from helpers import EXAMPLE
from storystudio import __version__
from storystudio.engine.imaging import read_png_parameters
from storystudio.engine.story.styles import style_names
from storystudio.project.fileio import load_project, save_project
from storystudio.project.script import parse_script

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
    # panel 8 shows both characters: the picture's text is the action, each one's looks are in their region
    last = read_png_parameters(out / "panel-008.png")
    assert "Mira and Tobias" in last["prompt"] and "copper hair" not in last["prompt"]
    mira, tobias = last["regions"]
    assert (mira["character"], tobias["character"]) == ("Mira", "Tobias") and mira["box"][0] < tobias["box"][0]
    assert "copper hair" in mira["prompt"] and "white beard" not in mira["prompt"]
    assert "white beard" in tobias["prompt"] and "copper hair" not in tobias["prompt"]


def test_no_regions_lets_every_look_act_on_the_shared_panel(tmp_path, tiny_model_dirs):
    """--no-regions: the shared panel is drawn as the paper's code draws it, with both looks in its one
    prompt and no regions; panels of one character are the same pictures as with regions."""
    script = tmp_path / "two.story.txt"
    script.write_text("[Ann] a girl with red hair\n[Bo] a tall man in a hat\n\n[Ann] reads\n[Bo] waits\n"
                      "[Ann] and [Bo] laugh\n", encoding="utf-8")
    runs = {}
    for name, extra in (("on", []), ("off", ["--no-regions"])):
        out = tmp_path / name
        run = cli("render", script, "--out", out, "--model", tiny_model_dirs["sd15"], "--steps", "1", "--size",
                  "64x64", "--device", "cpu", "--id-length", "1", *extra)
        assert run.rc == 0, run.err
        runs[name] = out
    on, off = (read_png_parameters(runs[k] / "panel-003.png") for k in ("on", "off"))
    assert [r["character"] for r in on["regions"]] == ["Ann", "Bo"] and "red hair" not in on["prompt"]
    assert off.get("regions") is None and "red hair" in off["prompt"] and "tall man" in off["prompt"]
    manifest = json.loads((runs["off"] / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["settings"]["regions"] is False, manifest["settings"]
    for solo in ("panel-001.png", "panel-002.png"):
        assert (runs["on"] / solo).read_bytes() == (runs["off"] / solo).read_bytes(), solo


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
