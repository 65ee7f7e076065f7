"""The layout canvas driven like a user would: mouse drags on the page, drops from the timeline, undo."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QMimeData, QPoint, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QDragEnterEvent, QDragMoveEvent, QDropEvent, QImage, QMouseEvent, QPainter
from PySide6.QtPdf import QPdfDocument
from PySide6.QtWidgets import QApplication

from helpers import COLOURS, flat_png

from storystudio.export.comic import export_pdf
from storystudio.export.page_render import page_region, panel_images, render_region
from storystudio.project.layout import Balloon, Rect, generation_size, snap_lines
from storystudio.project.model import Project
from storystudio.ui.layout_canvas import FRAME_MIME, SNAP_PX, BalloonItem, FrameItem, LayoutCanvas
from storystudio.ui.session import ProjectSession
from storystudio.ui.timeline import PanelTimeline

@pytest.fixture
def session(qapp):
    project = Project.example()
    for panel, colour in zip(project.panels, COLOURS):
        project.add_version(panel.id, flat_png(colour), {})
    project.panels[0].dialogue = "Hello, lighthouse!"
    return ProjectSession(project)


@pytest.fixture
def canvas(qtbot, session):
    widget = LayoutCanvas(session)
    qtbot.addWidget(widget)
    widget.resize(1100, 900)
    widget.show()
    qtbot.waitExposed(widget)
    widget.lay_out_story()
    widget.view.set_zoom(1.0)
    return widget


def items(canvas, kind):
    return sorted((i for i in canvas.scene.items() if isinstance(i, kind)),
                  key=lambda i: [x.id for x in (canvas.page.frames if kind is FrameItem else canvas.page.balloons)]
                  .index(i.item_id))


def drag(canvas, start: QPointF, end: QPointF, modifiers=Qt.NoModifier, steps: int = 6) -> None:
    """A real left-button drag on the page view, from scene point ``start`` to ``end``."""
    QApplication.processEvents()  # let the canvas rebuild after the previous edit, as it would between drags
    viewport = canvas.view.viewport()
    canvas.view.ensureVisible(QRectF(start, end).normalized(), 0, 0)

    def send(kind, point, button, buttons):
        pos = QPointF(canvas.view.mapFromScene(point))
        event = QMouseEvent(kind, pos, QPointF(viewport.mapToGlobal(pos.toPoint())), button, buttons, modifiers)
        QApplication.sendEvent(viewport, event)

    send(QEvent.MouseButtonPress, start, Qt.LeftButton, Qt.LeftButton)
    for k in range(1, steps + 1):
        send(QEvent.MouseMove, start + (end - start) * (k / steps), Qt.NoButton, Qt.LeftButton)
    send(QEvent.MouseButtonRelease, end, Qt.LeftButton, Qt.NoButton)


def drop(canvas, frame_item, mime) -> None:
    """A real drag-and-drop arriving over a frame on the page view."""
    QApplication.processEvents()
    viewport = canvas.view.viewport()
    b = frame_item.frame.bounds
    canvas.view.ensureVisible(QRectF(b.x, b.y, b.w, b.h), 0, 0)
    pos = QPointF(canvas.view.mapFromScene(QPointF(b.x + b.w / 2, b.y + b.h * 0.6)))
    actions = Qt.MoveAction | Qt.CopyAction
    for event in (QDragEnterEvent(pos, actions, mime, Qt.LeftButton, Qt.NoModifier),
                  QDragMoveEvent(pos, actions, mime, Qt.LeftButton, Qt.NoModifier),
                  QDropEvent(pos, actions, mime, Qt.LeftButton, Qt.NoModifier)):
        QApplication.sendEvent(viewport, event)


def free_delta(canvas, rect, candidates):
    """A drag offset that leaves every edge of ``rect`` clear of snap lines (so no snapping applies)."""
    xs, ys = snap_lines(canvas.layout, canvas.page)
    tolerance = SNAP_PX / canvas.view.zoom + 1
    for dx, dy in candidates:
        if all(abs(x - line) > tolerance for x in (rect.x + dx, rect.right + dx) for line in xs) and \
                all(abs(y - line) > tolerance for y in (rect.y + dy, rect.bottom + dy) for line in ys):
            return QPointF(dx, dy)
    raise AssertionError("no snap-free offset among the candidates")


def test_lay_out_story_is_one_undo_step(canvas, session):
    assert len(session.project.layout.pages) == 2
    assert [f.panel for page in session.project.layout.pages for f in page.frames] == [p.id for p in session.project.panels]
    assert canvas.pages.count() == 2
    assert any(b.text == "Hello, lighthouse!" for b in canvas.page.balloons)
    session.undo.undo()
    QApplication.processEvents()  # the canvas redraws on the next turn of the event loop
    assert session.project.layout.pages == [] and canvas.pages.count() == 0
    assert canvas.empty_note.isVisibleTo(canvas) and not canvas.view.isVisibleTo(canvas)
    session.undo.redo()
    assert len(session.project.layout.pages) == 2


def test_drag_moves_a_frame_and_snaps_it_back_onto_the_margin(canvas, session):
    frame_item = items(canvas, FrameItem)[0]
    before = frame_item.frame.bounds
    start = QPointF(before.x + before.w / 2, before.y + before.h * 0.7)
    drag(canvas, start, start + QPointF(40, 25))
    moved = session.project.layout.pages[0].frames[0].bounds
    assert moved.x == pytest.approx(before.x + 40, abs=0.6) and moved.y == pytest.approx(before.y + 25, abs=0.6)
    assert moved.w == pytest.approx(before.w)
    session.undo.undo()
    assert session.project.layout.pages[0].frames[0].bounds == before
    # a move that ends within the snap distance of the margin lands exactly on it
    drag(canvas, start, start + QPointF(3, 0))
    assert session.project.layout.pages[0].frames[0].bounds.x == pytest.approx(canvas.layout.content_rect(canvas.page).x)


def test_drag_an_edge_resizes_with_snapping_to_the_gutter(canvas, session):
    def frames():
        return session.project.layout.pages[0].frames  # each edit installs a new layout

    gutter = session.project.layout.gutter
    lower_left, lower_right = frames()[2].bounds, frames()[3].bounds  # classic 1-1-2: the bottom row
    edge = QPointF(lower_left.right, lower_left.y + lower_left.h / 2)
    drag(canvas, edge, edge - QPointF(60, 0))
    narrower = frames()[2].bounds
    assert narrower.right == pytest.approx(lower_left.right - 60, abs=0.6) and narrower.x == lower_left.x
    # dragging it back near the neighbour stops one gutter short of it
    edge = QPointF(narrower.right, narrower.y + narrower.h / 2)
    drag(canvas, edge, QPointF(lower_right.x - gutter + 3, edge.y()))
    assert frames()[2].bounds.right == pytest.approx(lower_right.x - gutter)
    session.undo.undo()
    session.undo.undo()
    assert frames()[2].bounds == lower_left


def test_panel_dropped_from_the_timeline_fills_a_frame(qtbot, canvas, session):
    timeline = PanelTimeline(session)
    qtbot.addWidget(timeline)
    canvas.edit_frame(canvas.page.frames[0].id, "Empty frame", panel=None)
    assert canvas.page.frames[0].panel is None
    last = session.project.panels[-1]
    mime = timeline.panel_model.mimeData([timeline.panel_model.index(len(session.project.panels) - 1)])
    drop(canvas, items(canvas, FrameItem)[0], mime)
    page = session.project.layout.pages[0]
    assert page.frames[0].panel == last.id
    # the panel left its old frame on page 2, and its words came along
    assert last.id not in session.project.layout.pages[1].panels()
    assert any(b.panel == last.id for b in page.balloons)
    session.undo.undo()
    assert session.project.layout.pages[1].panels()[-1] == last.id


def test_dragging_a_frame_onto_another_swaps_their_panels(canvas, session):
    page = canvas.page
    first, second = page.frames[0].panel, page.frames[1].panel
    words = [b.id for b in page.balloons if b.panel == first]
    mime = QMimeData()
    mime.setData(FRAME_MIME, f"{page.id}\n{page.frames[0].id}".encode())
    drop(canvas, items(canvas, FrameItem)[1], mime)
    page = session.project.layout.pages[0]
    assert (page.frames[0].panel, page.frames[1].panel) == (second, first)
    target = page.frames[1].bounds
    for balloon in page.balloons:
        if balloon.id in words:  # the first panel's lettering moved into its new frame
            assert target.contains((balloon.x, balloon.y))
    session.undo.undo()
    page = session.project.layout.pages[0]
    assert (page.frames[0].panel, page.frames[1].panel) == (first, second)


def test_balloon_move_resize_and_tail(canvas, session):
    item = next(i for i in items(canvas, BalloonItem) if i.balloon.kind == "speech")
    b = item.balloon
    tail = b.tail
    centre = QPointF(b.x + b.w / 2, b.y + b.h / 2)
    delta = free_delta(canvas, b.rect, [(dx, dy) for dx in (25, 40, 55, 70) for dy in (20, 35, 50, 65)])
    drag(canvas, centre, centre + delta)
    moved = session.project.layout.pages[0].balloon_by_id(b.id)
    assert (moved.x, moved.y) == pytest.approx((b.x + delta.x(), b.y + delta.y()), abs=0.6)
    # the tail goes along with the balloon: it still points the same way, from its new place
    assert moved.tail == pytest.approx((tail[0] + moved.x - b.x, tail[1] + moved.y - b.y), abs=0.02)
    tail = moved.tail
    drag(canvas, QPointF(*tail), QPointF(tail[0] + 30, tail[1] + 10))
    moved = session.project.layout.pages[0].balloon_by_id(b.id)
    assert moved.tail == pytest.approx((tail[0] + 30, tail[1] + 10), abs=0.6)
    edge = QPointF(moved.x + moved.w, moved.y + moved.h / 2)
    drag(canvas, edge, edge + QPointF(25, 0))
    resized = session.project.layout.pages[0].balloon_by_id(b.id)
    assert resized.w == pytest.approx(moved.w + 25, abs=0.6)
    assert resized.tail == moved.tail  # resizing leaves the tip where the user put it
    for _ in range(3):
        session.undo.undo()
    again = session.project.layout.pages[0].balloon_by_id(b.id)
    assert (again.x, again.y, again.w, again.tail) == (b.x, b.y, b.w, b.tail)


def test_edit_balloon_words_in_place(qtbot, canvas, session):
    item = next(i for i in items(canvas, BalloonItem) if i.balloon.kind == "speech")
    canvas.edit_text(item.item_id)
    editor = canvas.editor
    assert editor is not None and editor.toPlainText() == "Hello, lighthouse!"
    editor.setPlainText("Is anyone up there?")
    qtbot.keyClick(canvas.view.viewport(), Qt.Key_Return, Qt.ControlModifier)  # reaches the focused editor
    qtbot.waitUntil(lambda: canvas.editor is None)
    assert session.project.layout.pages[0].balloon_by_id(item.item_id).text == "Is anyone up there?"
    assert session.project.panels[0].dialogue == "Is anyone up there?"  # the words are the panel's
    session.undo.undo()
    assert session.project.layout.pages[0].balloon_by_id(item.item_id).text == "Hello, lighthouse!"
    assert session.project.panels[0].dialogue == "Hello, lighthouse!"
    # Escape drops the edit
    canvas.edit_text(item.item_id)
    canvas.editor.setPlainText("nope")
    canvas.editor.finish(keep=False)
    qtbot.waitUntil(lambda: canvas.editor is None)
    assert session.project.layout.pages[0].balloon_by_id(item.item_id).text == "Hello, lighthouse!"


def test_add_lettering_style_it_and_delete_key_removes_only_it(qtbot, canvas, session):
    count = len(session.project.panels)
    balloon_id = canvas.add_balloon("sfx", QPointF(200, 300), text="KRAK!")
    QApplication.processEvents()
    balloon = canvas.page.balloon_by_id(balloon_id)
    assert balloon.kind == "sfx" and balloon.text == "KRAK!"
    assert canvas.selected_balloons()[0].id == balloon_id
    canvas.bold_box.click()
    assert canvas.page.balloon_by_id(balloon_id).bold
    canvas.size_spin.setValue(30)
    canvas.size_spin.editingFinished.emit()
    assert canvas.page.balloon_by_id(balloon_id).size == 30
    canvas.view.setFocus()
    qtbot.keyClick(canvas.view, Qt.Key_Delete)
    assert canvas.page.balloon_by_id(balloon_id) is None
    assert len(session.project.panels) == count  # the Delete key did not touch the story
    for _ in range(4):
        session.undo.undo()
    assert canvas.page.balloon_by_id(balloon_id) is None and session.undo.index() == 1


def test_templates_pages_and_reading_direction(canvas, session):
    layout = session.project.layout
    first_page_panels = layout.pages[0].panels()
    canvas.apply_template("grid-3x3")
    layout = session.project.layout
    assert layout.pages[0].template == "grid-3x3" and len(layout.pages[0].frames) == 9
    assert layout.pages[0].panels() == first_page_panels
    canvas.apply_template("tiers-2")  # four panels into two frames: the other two go to a new page
    layout = session.project.layout
    assert layout.pages[0].panels() == first_page_panels[:2]
    assert layout.pages[1].panels() == first_page_panels[2:] and len(layout.pages) == 3
    canvas.add_page()  # after the page shown
    assert len(session.project.layout.pages) == 4 and canvas.current == 1
    assert session.project.layout.pages[1].template == "grid-2x3"
    canvas.move_page(1, 0)
    assert session.project.layout.pages[0].template == "grid-2x3"
    canvas.remove_page()
    assert len(session.project.layout.pages) == 3
    left = session.project.layout.pages[0].frames[0].bounds
    canvas.set_direction("rtl")
    mirrored = session.project.layout.pages[0].frames[0].bounds
    assert mirrored.x == pytest.approx(477 - left.right)
    canvas.set_page_size("a4")
    assert session.project.layout.size == "a4"
    assert session.project.layout.pages[0].frames[0].bounds.right <= 595.3
    for _ in range(7):
        session.undo.undo()
    assert session.project.layout.pages[0].panels() == first_page_panels
    assert session.project.layout.size == "us-comic" and session.project.layout.direction == "ltr"


def test_deleting_a_panel_empties_its_frame_until_undone(canvas, session):
    from storystudio.ui.commands import DeletePanels

    panel = session.project.panels[0]
    session.undo.push(DeletePanels(session, [panel.id]))
    assert panel.id not in session.project.layout.pages[0].panels()
    assert all(b.panel != panel.id for b in session.project.layout.pages[0].balloons)
    session.undo.undo()
    assert session.project.layout.pages[0].panels()[0] == panel.id


def test_canvas_shows_what_the_pdf_prints(canvas, session, tmp_path):
    """The scene (guides off) painted at 60 dpi matches pdfium's rendering of the exported PDF page."""
    canvas.guides_box.setChecked(False)
    canvas.scene.clearSelection()
    page = canvas.page
    trim = session.project.layout.trim_rect(page)
    dpi = 60
    size = QSize(round(trim.w * dpi / 72), round(trim.h * dpi / 72))
    image = QImage(size, QImage.Format_RGB888)
    image.fill(Qt.white)
    painter = QPainter(image)
    painter.setRenderHints(QPainter.Antialiasing | QPainter.TextAntialiasing | QPainter.SmoothPixmapTransform)
    canvas.scene.render(painter, QRectF(0, 0, size.width(), size.height()), QRectF(trim.x, trim.y, trim.w, trim.h))
    painter.end()
    export_pdf(session.project, tmp_path / "page.pdf")
    document = QPdfDocument()
    document.load(str(tmp_path / "page.pdf"))
    pdf = document.render(0, size).convertToFormat(QImage.Format_RGB888)

    def array(img):
        raw = np.frombuffer(img.constBits(), np.uint8, count=img.sizeInBytes())
        return raw.reshape(img.height(), img.bytesPerLine())[:, : img.width() * 3].astype(np.int16)

    difference = np.abs(array(image) - array(pdf))
    assert difference.mean() < 2.5
    assert (difference > 60).mean() < 0.01
    # and the same holds for the export renderer's own raster, which PNG and CBZ use
    png = render_region(session.project.layout, page, panel_images(session.project), page_region(session.project.layout, page), dpi)
    assert np.abs(array(png.convertToFormat(QImage.Format_RGB888)) - array(image)).mean() < 2.5


def test_balloon_overflow_is_flagged_on_the_canvas(canvas, session):
    canvas.edit("Add", lambda layout: layout.pages[0].balloons.append(
        Balloon("speech-box", 100, 100, 30, 16, text="far too many words for a tiny box", size=14.0)))
    QApplication.processEvents()
    item = next(i for i in canvas.scene.items() if isinstance(i, BalloonItem) and i.balloon.kind == "speech-box")
    image = QImage(400, 400, QImage.Format_RGB32)
    image.fill(Qt.white)
    painter = QPainter(image)
    canvas.scene.render(painter, QRectF(0, 0, 400, 400), QRectF(0, 0, 400, 400))
    painter.end()
    assert item.balloon.size == 14.0
    red = image.pixelColor(QPoint(100, 116))
    assert red.red() > 150 and red.green() < 120  # the dashed red outline of a balloon whose words spill


def test_panels_take_their_frames_shape_in_one_undo_step(canvas, session):
    page = session.project.layout.pages[0]
    wide = page.frames[0]  # classic 1-1-2: a wide top tier
    changed = canvas.shape_panels()
    assert set(changed) == {p.id for p in session.project.panels}
    size = session.project.panel_by_id(wide.panel).size
    settings = session.project.settings
    assert size == generation_size(wide.aspect, settings.width * settings.height)
    assert size[0] > size[1] and size[0] % 64 == 0 and size[1] % 64 == 0
    session.undo.undo()
    assert all(p.size is None for p in session.project.panels)


def test_gutter_and_margin_recut_template_pages(canvas, session):
    before = session.project.layout.pages[0]
    panels = before.panels()
    canvas.gutter_spin.setValue(20)
    canvas.gutter_spin.editingFinished.emit()
    layout = session.project.layout
    a, b = layout.pages[0].frames[0].bounds, layout.pages[0].frames[1].bounds
    assert layout.gutter == 20 and b.y - a.bottom == pytest.approx(20)
    assert layout.pages[0].panels() == panels
    caption = next(x for x in layout.pages[0].balloons if x.panel == panels[1] and x.kind == "caption")
    assert layout.pages[0].frames[1].bounds.contains((caption.x, caption.y))  # the words moved with the frame
    canvas.margin_spin.setValue(50)
    canvas.margin_spin.editingFinished.emit()
    assert session.project.layout.pages[0].frames[0].bounds.x == pytest.approx(50)
    session.undo.undo()
    session.undo.undo()
    assert session.project.layout.pages[0] == before and session.project.layout.gutter == 9.0


def test_reordering_the_page_list_moves_pages(qtbot, canvas, session):
    from PySide6.QtCore import QModelIndex

    first, second = (p.id for p in session.project.layout.pages)
    # what an internal drag in the list does to its model: page 2 goes before page 1
    assert canvas.pages.model().moveRow(QModelIndex(), 1, QModelIndex(), 0)
    qtbot.waitUntil(lambda: [p.id for p in session.project.layout.pages] == [second, first])
    assert canvas.current == 0 and canvas.page.id == second
    session.undo.undo()
    assert [p.id for p in session.project.layout.pages] == [first, second]


def test_words_edited_on_the_page_are_the_words_of_the_pdf_the_animatic_and_the_panel(canvas, session, tmp_path):
    from pypdf import PdfReader

    from storystudio.project.animatic import subtitle_cues, timeline
    from storystudio.ui.commands import SetPanelText

    panel = session.project.panels[1]
    caption = next(b for b in canvas.page.balloons if b.panel == panel.id and b.source == "caption")
    canvas.edit_text(caption.id)
    canvas.editor.setPlainText("Two hundred steps, give or take.")
    canvas.editor.finish(keep=True)
    QApplication.processEvents()
    assert panel.caption == "Two hundred steps, give or take."  # the Panel tab shows the panel's caption
    project = session.project
    cues = subtitle_cues(project.animatic, project.panels, timeline(project.animatic, project.panels))
    assert any(text.startswith("Two hundred steps, give or take.") for _, _, text in cues)  # the MP4's words
    export_pdf(project, tmp_path / "comic.pdf")
    assert "Two hundred steps, give or take." in " ".join(PdfReader(tmp_path / "comic.pdf").pages[0].extract_text().split())
    # and the other way round: a dialogue line written in the Panel tab gets its balloon on the page
    session.undo.push(SetPanelText(session, panel.id, "dialogue", panel.dialogue + "\nUp and up."))
    QApplication.processEvents()
    balloon = next(b for b in session.project.layout.pages[0].balloons if b.panel == panel.id and b.kind == "speech"
                   and b.source == "dialogue:1")
    assert balloon.text == "Up and up."
    assert canvas.page.frames[1].bounds.contains((balloon.x, balloon.y))
    assert any(isinstance(i, BalloonItem) and i.item_id == balloon.id for i in canvas.scene.items())
    session.undo.undo()
    assert session.project.layout.pages[0].balloon_by_id(balloon.id) is None
    session.undo.undo()
    assert panel.caption.startswith("Two hundred and twelve steps")
    assert session.project.layout.pages[0].balloon_by_id(caption.id).text == panel.caption


def test_add_lettering_lands_in_one_frame_and_belongs_to_its_panel(canvas, session):
    canvas.show_page(1)  # a 2 x 2 grid: the middle of the view is where four frames meet
    assert canvas.page.template == "grid-2x2"
    canvas.view.fit()
    canvas.scene.clearSelection()
    QApplication.processEvents()
    centre = canvas.view.mapToScene(canvas.view.viewport().rect().center())
    target = next(f for f in canvas.page.frames if f.bounds.contains((centre.x(), centre.y()))) \
        if any(f.bounds.contains((centre.x(), centre.y())) for f in canvas.page.frames) else None
    balloon_id = canvas.add_balloon("speech", text="Who goes there?")
    QApplication.processEvents()
    balloon = canvas.page.balloon_by_id(balloon_id)
    frames_touched = [f for f in canvas.page.frames
                      if f.bounds.x < balloon.x + balloon.w and balloon.x < f.bounds.right
                      and f.bounds.y < balloon.y + balloon.h and balloon.y < f.bounds.bottom]
    assert len(frames_touched) == 1  # not across four frames
    frame = frames_touched[0]
    assert target is None or frame.id == target.id  # the frame in the middle of the view
    panel = session.project.panel_by_id(frame.panel)
    assert balloon.panel == panel.id and panel.dialogue.splitlines()[-1] == "Who goes there?"
    assert frame.bounds.contains(balloon.tail)
    assert canvas.selected_balloons()[0].id == balloon_id
    # dragged somewhere else, its tail comes along
    item = next(i for i in canvas.scene.items() if isinstance(i, BalloonItem) and i.item_id == balloon_id)
    start = QPointF(balloon.x + balloon.w / 2, balloon.y + balloon.h / 2)
    delta = free_delta(canvas, balloon.rect, [(dx, dy) for dx in (-40, -25, 25, 40) for dy in (-30, -15, 15, 30)])
    drag(canvas, start, start + delta)
    moved = session.project.layout.pages[1].balloon_by_id(balloon_id)
    assert moved.tail == pytest.approx((balloon.tail[0] + moved.x - balloon.x, balloon.tail[1] + moved.y - balloon.y),
                                       abs=0.02)
    session.undo.undo()
    session.undo.undo()
    assert session.project.layout.pages[1].balloon_by_id(balloon_id) is None
    assert "Who goes there?" not in panel.dialogue  # the panel's words went back too
    assert item is not None


def test_free_lettering_is_free_and_shown_as_such(canvas, session):
    from storystudio.ui.layout_canvas import BADGE_FREE, BADGE_OWN, BADGE_TIED

    words = session.project.words()
    balloon_id = canvas.add_balloon("caption", text="Far away...", free=True)
    QApplication.processEvents()
    balloon = canvas.page.balloon_by_id(balloon_id)
    assert balloon.free and balloon.text == "Far away..." and session.project.words() == words
    item = next(i for i in canvas.scene.items() if isinstance(i, BalloonItem) and i.item_id == balloon_id)
    assert item.badge_colour() == BADGE_FREE and "no panel" in item.toolTip()
    tied = next(i for i in canvas.scene.items() if isinstance(i, BalloonItem) and i.balloon.tied)
    assert tied.badge_colour() == BADGE_TIED and "editing it here edits the panel" in tied.toolTip()
    sfx = canvas.add_balloon("sfx", QPointF(*canvas.page.frames[0].bounds.points()[0]) + QPointF(20, 20))
    QApplication.processEvents()
    own = next(i for i in canvas.scene.items() if isinstance(i, BalloonItem) and i.item_id == sfx)
    assert own.badge_colour() == BADGE_OWN and own.balloon.panel == canvas.page.frames[0].panel
    # the menu gives free lettering to the panel under it, and a panel's own lettering back to none
    labels = [a.text() for a in canvas.balloon_menu(sfx).actions()]
    assert "Make Free Lettering (No Panel)" in labels
    canvas.set_lettering_panel(sfx, None)
    assert session.project.layout.pages[0].balloon_by_id(sfx).free


def test_deleting_a_balloon_takes_its_line_from_the_panel(qtbot, canvas, session):
    panel = session.project.panels[0]
    item = next(i for i in items(canvas, BalloonItem) if i.balloon.panel == panel.id and i.balloon.kind == "speech")
    canvas.scene.clearSelection()
    item.setSelected(True)
    canvas.view.setFocus()
    qtbot.keyClick(canvas.view, Qt.Key_Delete)
    assert panel.dialogue == "" and canvas.page.balloon_by_id(item.item_id) is None
    session.undo.undo()
    assert panel.dialogue == "Hello, lighthouse!" and canvas.page.balloon_by_id(item.item_id) is not None


def test_reordered_panels_mark_the_pages_stale_until_reflowed(canvas, session):
    from storystudio.ui.commands import MovePanels

    frame = canvas.page.frames[0]
    first_shape = list(frame.points)
    assert not canvas.check_bar.isVisibleTo(canvas)
    session.undo.push(MovePanels(session, [session.project.panels[0].id], len(session.project.panels)))
    QApplication.processEvents()
    assert canvas.check_bar.isVisibleTo(canvas) and canvas.reflow_button.isVisibleTo(canvas)
    assert "no longer in story order" in canvas.check_label.text()
    assert canvas.pages.item(0).background().color() == QColor(255, 228, 160)  # the stale page is marked
    canvas.reflow_button.click()
    QApplication.processEvents()
    layout = session.project.layout
    assert [pid for p in layout.pages for pid in p.panels()] == [p.id for p in session.project.panels]
    assert not canvas.check_bar.isVisibleTo(canvas)
    assert layout.pages[0].frames[0].points == first_shape
    session.undo.undo()
    QApplication.processEvents()
    assert canvas.check_bar.isVisibleTo(canvas)


@pytest.mark.parametrize("answer", ["reflow", "fresh", None])
def test_lay_out_story_again_asks_before_it_drops_hand_made_work(canvas, session, monkeypatch, answer):
    asked = []
    monkeypatch.setattr(canvas, "ask_how_to_lay_out", lambda: asked.append(1) or answer)
    canvas.lay_out_story()  # nothing changed by hand: no question
    assert asked == []
    frame = canvas.page.frames[0]
    moved = frame.fitted_to(Rect(40, 40, 250, 180))
    canvas.edit_frame(frame.id, "Move frame", points=moved)
    sfx = canvas.add_balloon("sfx", text="CRASH")
    before = session.project.layout.copy()
    canvas.lay_out_story()
    assert asked == [1]
    layout = session.project.layout
    if answer is None:
        assert layout == before
    elif answer == "reflow":
        assert layout.pages[0].frames[0].points == moved and layout.pages[0].balloon_by_id(sfx) is not None
    else:
        assert layout.pages[0].frames[0].points != moved and layout.pages[0].balloon_by_id(sfx) is None


def test_an_older_files_drifted_words_are_reported_and_can_be_put_right(qtbot):
    """The schema-3 test file: two balloons said something other than their panel; the page says so."""
    from pathlib import Path

    from storystudio.project.fileio import load_project

    session = ProjectSession(load_project(Path(__file__).parents[1] / "project" / "data" / "schema-3.storystudio"))
    canvas = LayoutCanvas(session)
    qtbot.addWidget(canvas)
    canvas.resize(1100, 900)
    canvas.show()
    QApplication.processEvents()
    assert canvas.check_bar.isVisibleTo(canvas) and canvas.letter_button.isVisibleTo(canvas)
    assert "panels 2 and 4 have no balloon" in canvas.check_label.text()
    project = session.project
    drifted = next(b for b in canvas.page.balloons if b.text == "Someone still lived here.")
    assert "Show Panel 4's Words Instead" in [a.text() for a in canvas.balloon_menu(drifted.id).actions()]
    canvas.use_panel_words(drifted.id)  # panel 4's caption, as the Panel tab has it
    assert canvas.page.balloon_by_id(drifted.id).text == project.panels[3].caption == "Somebody still lived here."
    canvas.letter_button.click()  # panel 2's caption gets a box of its own
    QApplication.processEvents()
    assert not canvas.check_bar.isVisibleTo(canvas)
    shown = [b.text for b in canvas.page.balloons if b.panel == project.panels[1].id]
    assert project.panels[1].caption in shown and "Two hundred and twelve steps!" in shown
    session.undo.undo()
    session.undo.undo()
    assert canvas.page.balloon_by_id(drifted.id).text == "Someone still lived here."
