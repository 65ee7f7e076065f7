"""``storystudio export``: a saved project's pages and animatic, without generating."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader

from cli_helpers import assert_plain_error, cli
from helpers import EXAMPLE
from storystudio.project.fileio import load_project, save_project

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


def test_a_resolution_that_makes_pages_too_large_is_refused_naming_one_that_fits(saved_project, tmp_path):
    run = cli("export", saved_project, "--png", tmp_path / "strip", "--relayout", "--page-size", "webtoon",
              "--dpi", "1200")
    assert_plain_error(run, "at 1200 dpi page 1 would be", "give --dpi")
    fits = int(run.err.split("give --dpi ")[1].split()[0])
    assert not (tmp_path / "strip").exists()
    from storystudio.project.layout import auto_layout, raster_problem

    strip = auto_layout(load_project(saved_project).panels, size="webtoon")
    assert raster_problem(strip, fits) is None and raster_problem(strip, fits + 2) is not None
