"""Comic exports: a print PDF, a CBZ for comic readers, and PNG pages.

Each export is a function of a project (its layout, panels and pictures) and
a target path; all of them paint through ``page_render``, so they show what
the canvas shows. Files are written next to the target and moved into place
only when complete, so a cancelled or failed export leaves nothing half-made.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMarginsF, QRectF
from PySide6.QtGui import QImage, QPageLayout, QPageSize, QPainter, QPdfWriter

from .. import __version__
from ..project.layout import Layout, printed_pages, raster_problem
from ..project.model import Project
from .page_render import RenderOptions, ensure_gui_app, page_region, paint_page, panel_images, render_region

Progress = Callable[[int, int, str], None]  # done, total, what is happening
Cancel = Callable[[], bool]


class ExportError(Exception):
    """An export that cannot be done; the message is one plain sentence for the user."""


class ExportCancelled(Exception):
    """The user stopped the export; nothing was written."""


@dataclass
class ExportResult:
    path: Path
    pages: int
    warnings: list[str] = field(default_factory=list)


def _check(project: Project, dpi: int | None = None) -> Layout:
    layout = project.layout
    if not layout.pages:
        raise ExportError("this project has no pages yet; lay out the story on pages first.")
    too_large = raster_problem(layout, dpi)
    if too_large:
        raise ExportError(f"{too_large}.")
    project.resolve_words()  # balloons print their panels' words as the panels have them now
    return layout


def _notes(project: Project, layout: Layout, images: dict[str, QImage]) -> list[str]:
    numbers = {p.id: i for i, p in enumerate(project.panels, 1)}
    missing = []
    for page in layout.pages:
        for frame in page.frames:
            if frame.panel and frame.panel not in images:
                missing.append(f"panel {numbers[frame.panel]}" if frame.panel in numbers else "a deleted panel")
    if not missing:
        return []
    return [f"{len(missing)} frame(s) have no picture yet and print empty ({', '.join(missing[:6])}"
            f"{', …' if len(missing) > 6 else ''})."]


def _step(progress: Progress | None, cancel: Cancel | None, done: int, total: int, what: str) -> None:
    if cancel is not None and cancel():
        raise ExportCancelled
    if progress is not None:
        progress(done, total, what)


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _prepare(path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    if target.is_dir():
        raise ExportError(f"{target} is a folder; give a file name to export to.")
    if not target.parent.is_dir():
        raise ExportError(f"the folder {target.parent} does not exist.")
    if not os.access(target.parent, os.W_OK):
        raise ExportError(f"cannot write into {target.parent}; choose another place.")
    return target


def _finish(part: Path, target: Path) -> None:
    try:
        part.replace(target)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise ExportError(f"could not write {target} ({exc.strerror or exc}).") from None


# ---------------------------------------------------------------------------
# PDF


def export_pdf(project: Project, path: str | os.PathLike[str], *, bleed: bool = False, dpi: int | None = None,
               author: str = "", progress: Progress | None = None, cancel: Cancel | None = None) -> ExportResult:
    """A print-ready PDF: pages at their exact trim size (plus bleed when asked), lettering as text.

    Pictures are embedded at ``dpi`` (the layout's resolution by default). A
    two-page spread prints as two pages, in reading order. Manga layouts set
    the PDF's reading direction to right-to-left so viewers show facing
    pages the right way round.
    """
    ensure_gui_app()
    layout = _check(project, dpi)
    target = _prepare(path)
    resolution = int(dpi or layout.resolution)
    images = panel_images(project)
    options = RenderOptions(dpi=resolution)
    printed = printed_pages(layout)
    part = _part(target)
    writer = QPdfWriter(str(part))
    writer.setResolution(resolution)
    writer.setTitle(project.title or "Untitled comic")
    writer.setAuthor(author)
    writer.setCreator(f"StoryStudio {__version__}")
    painter = QPainter()
    warnings: list[str] = []
    try:
        for index, (page, half) in enumerate(printed):
            _step(progress, cancel, index, len(printed), f"page {index + 1} of {len(printed)}")
            region = page_region(layout, page, half, bleed)
            page_layout = QPageLayout(QPageSize(QRectF(0, 0, region.w, region.h).size(), QPageSize.Point,
                                                "", QPageSize.ExactMatch),
                                      QPageLayout.Portrait, QMarginsF(0, 0, 0, 0), QPageLayout.Point)
            if index == 0:
                writer.setPageLayout(page_layout)
                if not painter.begin(writer):
                    raise ExportError(f"could not write {target}.")
            else:
                writer.setPageLayout(page_layout)
                writer.newPage()
            painter.save()
            scale = resolution / 72.0
            painter.scale(scale, scale)
            painter.translate(-region.x, -region.y)
            painter.setClipRect(QRectF(region.x, region.y, region.w, region.h))
            for warning in paint_page(painter, layout, page, images, options):
                if warning not in warnings:
                    warnings.append(warning)
            painter.restore()
        if painter.isActive():
            painter.end()
        del writer  # closes the file
        bleed_pt = layout.page_size.bleed if bleed else 0.0
        _finish_pdf(part, [page_region(layout, page, half, bleed) for page, half in printed], bleed_pt, layout.rtl)
        _step(progress, cancel, len(printed), len(printed), "done")
    except BaseException:
        if painter.isActive():
            painter.end()
        part.unlink(missing_ok=True)
        raise
    _finish(part, target)
    return ExportResult(target, len(printed), _notes(project, layout, images) + warnings)


def _finish_pdf(path: Path, regions: list, bleed: float, rtl: bool) -> None:
    """Give each page its exact size and print boxes, and mark manga as read right to left.

    Qt rounds page sizes to whole points (B5 is 515.9 pt wide, not 516); the
    exact MediaBox is set here, anchored at the top edge where Qt's drawing
    starts, with a TrimBox (and a BleedBox when printing with bleed) so a print
    shop's software knows where to cut.
    """
    from pypdf import PdfWriter
    from pypdf.generic import RectangleObject

    writer = PdfWriter(clone_from=str(path))
    for page, region in zip(writer.pages, regions):
        top = float(page.mediabox.top)
        left = float(page.mediabox.left)
        media = RectangleObject([left, top - region.h, left + region.w, top])
        page.mediabox = media
        page.cropbox = media
        page.bleedbox = media
        page.trimbox = RectangleObject([left + bleed, top - region.h + bleed, left + region.w - bleed, top - bleed])
    if rtl:
        writer.create_viewer_preferences()
        writer.viewer_preferences.direction = "/R2L"
    buffer = io.BytesIO()
    writer.write(buffer)
    path.write_bytes(buffer.getvalue())


# ---------------------------------------------------------------------------
# raster pages: PNG files and CBZ


def _png_bytes(image: QImage) -> bytes:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise ExportError("a page could not be encoded as PNG.")
    buffer.close()
    return bytes(data.data())


def render_pages(project: Project, *, dpi: int | None = None, bleed: bool = False,
                 progress: Progress | None = None, cancel: Cancel | None = None,
                 images: dict[str, QImage] | None = None):
    """Yield each printed page as (number, QImage) at ``dpi``, in reading order.

    ``images``: the panels' pictures, when the caller has decoded them already.
    """
    ensure_gui_app()
    layout = _check(project, dpi)
    resolution = int(dpi or layout.resolution)
    images = panel_images(project) if images is None else images
    printed = printed_pages(layout)
    for index, (page, half) in enumerate(printed):
        _step(progress, cancel, index, len(printed), f"page {index + 1} of {len(printed)}")
        region = page_region(layout, page, half, bleed)
        yield index + 1, render_region(layout, page, images, region, resolution, RenderOptions(dpi=resolution))
    _step(progress, cancel, len(printed), len(printed), "done")


def export_png_pages(project: Project, folder: str | os.PathLike[str], *, dpi: int | None = None,
                     bleed: bool = False, progress: Progress | None = None,
                     cancel: Cancel | None = None) -> ExportResult:
    """Each page as ``page-001.png`` ... in ``folder`` (made if missing), with its DPI recorded."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file, not a folder.")
    _check(project, dpi)  # before the folder is made: a refusal leaves nothing
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the folder {out} ({exc.strerror}).") from None
    ensure_gui_app()
    images = panel_images(project)  # decoded once: for the pages and for the notes
    written: list[Path] = []
    try:
        for number, image in render_pages(project, dpi=dpi, bleed=bleed, progress=progress, cancel=cancel,
                                          images=images):
            target = out / f"page-{number:03d}.png"
            part = _part(target)
            written.append(part)  # before writing: an interrupted write leaves no .part behind either
            part.write_bytes(_png_bytes(image))
        for part in written:
            _finish(part, part.with_name(part.name.removesuffix(".part")))
    except BaseException:
        for part in written:
            part.unlink(missing_ok=True)
        raise
    return ExportResult(out, len(written), _notes(project, project.layout, images))


def comic_info(project: Project, pages: list[tuple[int, int]], author: str = "") -> bytes:
    """ComicInfo.xml (the ComicRack schema comic readers understand) for a CBZ."""
    root = ElementTree.Element("ComicInfo", {"xmlns:xsd": "http://www.w3.org/2001/XMLSchema",
                                             "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance"})

    def add(name: str, value: str) -> None:
        ElementTree.SubElement(root, name).text = value

    add("Title", project.title or "Untitled comic")
    summary = " ".join(p.caption for p in project.panels if p.caption.strip())
    if summary:
        add("Summary", summary[:2000])
    if author:
        add("Writer", author)
    add("PageCount", str(len(pages)))
    add("Manga", "YesAndRightToLeft" if project.layout.rtl else "No")
    add("Notes", f"Made with StoryStudio {__version__}")
    page_list = ElementTree.SubElement(root, "Pages")
    for index, (w, h) in enumerate(pages):
        attrs = {"Image": str(index), "ImageWidth": str(w), "ImageHeight": str(h)}
        if index == 0:
            attrs["Type"] = "FrontCover"
        ElementTree.SubElement(page_list, "Page", attrs)
    ElementTree.indent(root)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(root, encoding="utf-8") + b"\n"


def export_cbz(project: Project, path: str | os.PathLike[str], *, dpi: int | None = None, author: str = "",
               progress: Progress | None = None, cancel: Cancel | None = None) -> ExportResult:
    """A CBZ: the pages as PNG in reading order plus ComicInfo.xml, in one zip."""
    target = _prepare(path)
    part = _part(target)
    sizes: list[tuple[int, int]] = []
    ensure_gui_app()
    images = panel_images(project)  # decoded once: for the pages and for the notes
    try:
        with zipfile.ZipFile(part, "w") as archive:
            for number, image in render_pages(project, dpi=dpi, progress=progress, cancel=cancel, images=images):
                # PNG is already compressed: store it
                archive.writestr(f"page-{number:03d}.png", _png_bytes(image), compress_type=zipfile.ZIP_STORED)
                sizes.append((image.width(), image.height()))
            archive.writestr("ComicInfo.xml", comic_info(project, sizes, author), compress_type=zipfile.ZIP_DEFLATED)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    _finish(part, target)
    return ExportResult(target, len(sizes), _notes(project, project.layout, images))
