"""PDF, CBZ and PNG page exports, read back with pypdf, Qt's PDF renderer (pdfium) and pdftoppm."""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from xml.etree import ElementTree

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QSize
from PySide6.QtPdf import QPdfDocument
from pypdf import PdfReader

from storystudio.export.comic import ExportCancelled, ExportError, export_cbz, export_pdf, export_png_pages
from storystudio.export.page_render import page_region, panel_images, render_region
from storystudio.project.layout import TEMPLATES, Page, auto_layout, printed_pages, template_frames


def words(text: str) -> str:
    return " ".join(text.split())


def as_array(image) -> np.ndarray:
    image = image.convertToFormat(image.Format.Format_RGB888)
    ptr = np.frombuffer(image.constBits(), np.uint8, count=image.sizeInBytes())
    return ptr.reshape(image.height(), image.bytesPerLine())[:, : image.width() * 3].reshape(
        image.height(), image.width(), 3).astype(np.int16)


def render_pdf_page(path, index: int, dpi: int) -> np.ndarray:
    document = QPdfDocument()
    document.load(str(path))
    size = document.pagePointSize(index)
    image = document.render(index, QSize(round(size.width() * dpi / 72), round(size.height() * dpi / 72)))
    document.close()
    return as_array(image)


def test_pdf_pages_have_print_size_metadata_and_real_text(comic, tmp_path):
    path = tmp_path / "lighthouse.pdf"
    result = export_pdf(comic, path, author="Ada Writer")
    assert result.pages == 2 and result.warnings == []
    reader = PdfReader(path)
    assert len(reader.pages) == 2
    for page in reader.pages:
        assert (float(page.mediabox.width), float(page.mediabox.height)) == pytest.approx((477.0, 738.0))
    assert reader.metadata.title == "Lighthouse" and reader.metadata.author == "Ada Writer"
    assert reader.metadata.creator.startswith("StoryStudio")
    text = words(" ".join(p.extract_text() for p in reader.pages))
    for panel in comic.panels:  # every caption is there as text, in reading order
        assert words(panel.caption) in text
    assert "Grandpa, what is that light?" in text and "Only the old lighthouse." in text
    captions = [words(p.caption) for p in comic.panels]
    positions = [text.index(c) for c in captions]
    assert positions == sorted(positions)
    assert not list(tmp_path.glob("*.part"))


def test_pdf_with_bleed_is_larger_by_the_bleed_and_marks_the_trim(comic, tmp_path):
    export_pdf(comic, tmp_path / "bleed.pdf", bleed=True)
    page = PdfReader(tmp_path / "bleed.pdf").pages[0]
    assert (float(page.mediabox.width), float(page.mediabox.height)) == pytest.approx((495.0, 756.0))
    assert (float(page.trimbox.width), float(page.trimbox.height)) == pytest.approx((477.0, 738.0))
    assert float(page.trimbox.left) - float(page.mediabox.left) == pytest.approx(9.0)
    assert page.bleedbox == page.mediabox


def test_metric_page_sizes_are_exact(comic, tmp_path):
    comic.layout = auto_layout(comic.panels, size="a4")
    export_pdf(comic, tmp_path / "a4.pdf")
    page = PdfReader(tmp_path / "a4.pdf").pages[0]
    # 210 x 297 mm; Qt alone would round to 595 x 842
    assert (float(page.mediabox.width), float(page.mediabox.height)) == pytest.approx((595.2756, 841.8898), abs=1e-3)


def test_pdf_pictures_are_embedded_at_the_chosen_resolution(comic, tmp_path):
    export_pdf(comic, tmp_path / "low.pdf", dpi=72)
    reader = PdfReader(tmp_path / "low.pdf")
    page = comic.layout.pages[0]
    sizes = sorted(img.image.size for img in reader.pages[0].images)
    expected = sorted((round(f.bounds.w), round(f.bounds.h)) for f in page.frames)  # 72 dpi: one pixel a point
    assert len(sizes) == len(expected)
    for got, want in zip(sizes, expected):
        assert abs(got[0] - want[0]) <= 1 and abs(got[1] - want[1]) <= 1


def test_pdf_page_renders_like_the_canvas(comic, tmp_path):
    """Rasterised by pdfium, each PDF page shows the panels in their frames and matches the shared renderer."""
    path = tmp_path / "c.pdf"
    export_pdf(comic, path)
    dpi = 60
    images = panel_images(comic)
    for index, page in enumerate(comic.layout.pages):
        pdf = render_pdf_page(path, index, dpi)
        canvas = as_array(render_region(comic.layout, page, images, page_region(comic.layout, page), dpi))
        assert pdf.shape == canvas.shape
        for frame in page.frames:
            b = frame.bounds
            x, y = round((b.x + b.w / 2) * dpi / 72), round((b.y + b.h * 0.85) * dpi / 72)
            colour = images[frame.panel].pixelColor(0, 0)
            assert np.abs(pdf[y, x] - [colour.red(), colour.green(), colour.blue()]).max() <= 3
        difference = np.abs(pdf - canvas)
        # anti-aliasing of lines and glyph edges differs a little between the two rasterisers; nothing else
        assert difference.mean() < 2.0
        assert (difference.max(axis=2) > 60).mean() < 0.01


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler's pdftoppm is not installed")
def test_pdf_renders_in_poppler_too(comic, tmp_path):
    path = tmp_path / "c.pdf"
    export_pdf(comic, path)
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(path), str(tmp_path / "p")], check=True)
    pngs = sorted(tmp_path.glob("p-*.png"))
    assert len(pngs) == 2
    page = np.asarray(Image.open(pngs[0]).convert("RGB")).astype(np.int16)
    frame = comic.layout.pages[0].frames[0].bounds
    colour = panel_images(comic)[comic.layout.pages[0].frames[0].panel].pixelColor(0, 0)
    y, x = round((frame.y + frame.h * 0.85) * 40 / 72), round((frame.x + frame.w / 2) * 40 / 72)
    assert np.abs(page[y, x] - [colour.red(), colour.green(), colour.blue()]).max() <= 3


def test_manga_pdf_reads_right_to_left_and_spreads_split(comic, tmp_path):
    comic.layout = auto_layout(comic.panels, size="manga-b5", direction="rtl")
    spread = Page(template="spread", spread=True)
    spread.frames = template_frames(comic.layout, TEMPLATES["spread"], spread)
    spread.frames[0].panel = comic.panels[0].id
    spread.frames[1].panel = comic.panels[1].id  # first frame of the bottom row: far right in a manga
    comic.layout.pages.append(spread)
    path = tmp_path / "manga.pdf"
    result = export_pdf(comic, path)
    reader = PdfReader(path)
    assert result.pages == len(reader.pages) == len(printed_pages(comic.layout)) == 4
    assert reader.trailer["/Root"]["/ViewerPreferences"]["/Direction"] == "/R2L"
    width = float(reader.pages[-1].mediabox.width)
    assert width == pytest.approx(182 * 72 / 25.4)  # each half of the spread is one page
    # in a right-to-left book the spread's right half comes first: it holds the bottom row's first frame
    frame = spread.frames[1].bounds
    half_width = comic.layout.page_size.width
    assert frame.x >= half_width
    dpi = 30
    x, y = round((frame.x - half_width + frame.w / 2) * dpi / 72), round((frame.y + frame.h * 0.8) * dpi / 72)
    colour = panel_images(comic)[comic.panels[1].id].pixelColor(0, 0)
    expected = [colour.red(), colour.green(), colour.blue()]
    assert np.abs(render_pdf_page(path, 2, dpi)[y, x] - expected).max() <= 3
    assert np.abs(render_pdf_page(path, 3, dpi)[y, x] - expected).max() > 30


def test_cbz_holds_pages_and_comic_info(comic, tmp_path):
    comic.layout.direction = "rtl"
    result = export_cbz(comic, tmp_path / "c.cbz", dpi=100, author="Ada")
    with zipfile.ZipFile(tmp_path / "c.cbz") as archive:
        names = archive.namelist()
        assert names == ["page-001.png", "page-002.png", "ComicInfo.xml"]
        info = ElementTree.fromstring(archive.read("ComicInfo.xml"))
        with archive.open("page-001.png") as handle:
            first = Image.open(handle)
            first.load()
    assert result.pages == 2
    assert first.size == (round(477 * 100 / 72), round(738 * 100 / 72))
    assert info.findtext("Title") == "Lighthouse" and info.findtext("PageCount") == "2"
    assert info.findtext("Manga") == "YesAndRightToLeft" and info.findtext("Writer") == "Ada"
    pages = info.find("Pages").findall("Page")
    assert [p.get("Image") for p in pages] == ["0", "1"] and pages[0].get("Type") == "FrontCover"
    assert pages[0].get("ImageWidth") == str(first.size[0])


def test_png_pages_carry_their_dpi(comic, tmp_path):
    result = export_png_pages(comic, tmp_path / "pages", dpi=150, bleed=True)
    files = sorted((tmp_path / "pages").iterdir())
    assert [f.name for f in files] == ["page-001.png", "page-002.png"] and result.pages == 2
    image = Image.open(files[0])
    assert image.size == (round(495 * 150 / 72), round(756 * 150 / 72))
    assert image.info["dpi"] == pytest.approx((150, 150), abs=0.1)


def test_webtoon_png_is_800_pixels_wide(comic, tmp_path):
    comic.layout = auto_layout(comic.panels, size="webtoon")
    export_png_pages(comic, tmp_path / "strip")
    image = Image.open(tmp_path / "strip" / "page-001.png")
    assert image.size[0] == 800 and image.size[1] == round(comic.layout.page_height(comic.layout.pages[0]))


def test_frames_without_pictures_are_reported(comic, tmp_path):
    comic.panels[2].chosen = None
    result = export_pdf(comic, tmp_path / "gap.pdf")
    assert result.warnings == ["1 frame(s) have no picture yet and print empty (panel 3)."]


def test_overflowing_lettering_is_reported(comic, tmp_path):
    balloon = comic.layout.pages[0].balloons[0]
    balloon.size, balloon.w, balloon.h = 30.0, 40.0, 20.0
    result = export_pdf(comic, tmp_path / "tight.pdf")
    assert any(re.match(r'the text ".+" does not fit its caption balloon', w) for w in result.warnings)


def test_plain_errors_and_cancel_leave_nothing(comic, tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        export_pdf(comic, tmp_path / "missing" / "c.pdf")
    with pytest.raises(ExportError, match="is a folder"):
        export_pdf(comic, tmp_path)
    empty = comic
    layout, empty.layout = empty.layout, type(empty.layout)()
    with pytest.raises(ExportError, match="no pages yet"):
        export_cbz(empty, tmp_path / "c.cbz")
    empty.layout = layout
    strip, comic.layout = comic.layout, auto_layout(comic.panels, size="webtoon")
    for export, target in ((export_pdf, tmp_path / "c.pdf"), (export_cbz, tmp_path / "c.cbz"),
                           (export_png_pages, tmp_path / "c")):
        with pytest.raises(ExportError, match=r"at 1200 dpi page 1 would be [\d,]+ pixels long, more than the 32,000"):
            export(comic, target, dpi=1200)  # a page this large is refused before anything is drawn
    comic.layout = strip
    seen = []
    for export, target in ((export_pdf, tmp_path / "c.pdf"), (export_cbz, tmp_path / "c.cbz"),
                           (export_png_pages, tmp_path / "pages")):
        with pytest.raises(ExportCancelled):
            export(comic, target, progress=lambda done, total, what: seen.append(done),
                   cancel=lambda: len(seen) >= 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pages"]
    assert list((tmp_path / "pages").iterdir()) == []
