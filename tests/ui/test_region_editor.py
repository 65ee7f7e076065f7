"""Character boxes on the Panel tab: drawn over the picture, moved and resized by mouse, undoable, on thumbnails."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QPainter

from storystudio.project.model import ImageVersion, Project, ProjectCharacter, ProjectPanel
from storystudio.project.regions import Region
from storystudio.ui.character_sheet import CharacterSheet
from storystudio.ui.main_window import PanelView
from storystudio.ui.region_editor import box_rect, paint_regions
from storystudio.ui.session import ProjectSession
from storystudio.ui.timeline import PanelListModel


@pytest.fixture
def session() -> ProjectSession:
    project = Project(title="two")
    project.characters = [ProjectCharacter("Ann", "a girl with red hair"), ProjectCharacter("Bo", "a tall man")]
    project.panels = [ProjectPanel("[Ann] reads"), ProjectPanel("[Bo] and [Ann] laugh")]
    project.settings.width, project.settings.height = 768, 512
    return ProjectSession(project)


@pytest.fixture
def view(qtbot, session) -> PanelView:
    widget = PanelView(session)
    qtbot.addWidget(widget)
    widget.resize(900, 700)
    widget.show()
    qtbot.waitExposed(widget)
    widget.show_panel(session.project.panels[1].id)
    return widget


def centre_of(overlay, name: str) -> QPoint:
    region = next(r for r in overlay.regions if r.character == name)
    return box_rect(overlay.frame(), region.box).center().toPoint()


def drag(qtbot, overlay, start: QPoint, end: QPoint) -> None:
    qtbot.mousePress(overlay, Qt.LeftButton, pos=start)
    qtbot.mouseMove(overlay, end)
    qtbot.mouseRelease(overlay, Qt.LeftButton, pos=end)


def test_a_shared_panel_shows_one_box_per_character_in_tag_order(view, session):
    overlay = view.region_overlay
    assert overlay.isVisible() and [r.character for r in overlay.regions] == ["Bo", "Ann"]
    assert overlay.regions[0].box == (0.0, 0.0, 0.5, 1.0)  # the first tag on the left
    assert abs(overlay.frame().width() / overlay.frame().height() - 768 / 512) < 0.01  # the panel's shape
    view.show_panel(session.project.panels[0].id)
    assert not overlay.isVisible()  # one character: the whole picture is hers


def test_dragging_a_box_moves_it_as_one_undoable_command(qtbot, view, session):
    overlay, panel = view.region_overlay, session.project.panels[1]
    frame = overlay.frame()
    start = centre_of(overlay, "Ann")
    drag(qtbot, overlay, start, start + QPoint(int(-0.25 * frame.width()), 0))
    assert panel.regions is not None and session.undo.count() == 1
    ann = next(r for r in panel.regions if r.character == "Ann")
    assert ann.box[0] == pytest.approx(0.25, abs=0.02) and ann.box[2] == pytest.approx(0.75, abs=0.02)
    assert panel.regions[-1].character == "Ann"  # the box moved last is in front
    session.undo.undo()
    assert panel.regions is None and [r.character for r in overlay.regions] == ["Bo", "Ann"]
    session.undo.redo()
    assert next(r for r in panel.regions if r.character == "Ann").box == ann.box


def test_dragging_the_corner_resizes_and_side_by_side_resets(qtbot, view, session):
    overlay, panel = view.region_overlay, session.project.panels[1]
    frame = overlay.frame()
    bo = box_rect(frame, overlay.regions[0].box)
    corner = bo.bottomRight().toPoint() - QPoint(2, 2)
    drag(qtbot, overlay, corner, QPointF(frame.left() + 0.3 * frame.width(), frame.top() + 0.6 * frame.height()).toPoint())
    resized = next(r for r in panel.regions if r.character == "Bo")
    assert resized.box[:2] == (0.0, 0.0)
    assert resized.box[2] == pytest.approx(0.3, abs=0.02) and resized.box[3] == pytest.approx(0.6, abs=0.02)
    assert view.regions_reset.isVisibleTo(view)
    view.regions_reset.click()
    assert panel.regions is None and session.undo.count() == 2


def test_a_click_outside_every_box_changes_nothing(qtbot, view, session):
    session.project.panels[1].regions = [Region("Ann", (0.6, 0.6, 0.9, 0.9))]
    view.refresh()
    overlay = view.region_overlay
    frame = overlay.frame()
    outside = QPointF(frame.left() + 0.55 * frame.width(), frame.top() + 0.3 * frame.height()).toPoint()
    drag(qtbot, overlay, outside, outside + QPoint(20, 20))  # between Bo's default box and Ann's own: nothing
    assert session.undo.count() == 0 and session.project.panels[1].regions == [Region("Ann", (0.6, 0.6, 0.9, 0.9))]
    inside = centre_of(overlay, "Ann")
    drag(qtbot, overlay, inside, inside)  # a click without a move: no command either
    assert session.undo.count() == 0
    bo = QPointF(frame.left() + 0.25 * frame.width(), frame.top() + 0.05 * frame.height()).toPoint()
    drag(qtbot, overlay, bo, bo + QPoint(5, 5))  # Bo's default box (the left half, tagged first) moves
    assert session.undo.count() == 1 and {r.character for r in session.project.panels[1].regions} == {"Ann", "Bo"}


def test_thumbnails_mark_the_boxes_of_shared_panels(session):
    model = PanelListModel(session)
    assert model.data(model.index(0), PanelListModel.RegionsRole) is None
    regions, cast = model.data(model.index(1), PanelListModel.RegionsRole)
    assert [r.character for r in regions] == ["Bo", "Ann"] and cast == ["Ann", "Bo"]
    image = QImage(100, 100, QImage.Format_RGB32)
    image.fill(Qt.white)
    painter = QPainter(image)
    from PySide6.QtCore import QRectF

    paint_regions(painter, QRectF(0, 0, 100, 100), regions, cast, labels=False)
    painter.end()
    assert image.pixelColor(50, 1) != image.pixelColor(25, 50)  # outlines drawn, insides lightly tinted


def test_with_regions_off_no_boxes_are_shown_and_the_setting_is_undoable(qtbot, view, session):
    """Generation ▸ Keep characters apart off: the panel is drawn without regions, so the Panel tab and the
    thumbnails show no boxes (and offer no Side by Side); back on, they are there again."""
    from storystudio.ui.settings_panel import SettingsPanel

    settings = SettingsPanel(session)
    qtbot.addWidget(settings)
    model = PanelListModel(session)
    changed = []
    model.dataChanged.connect(lambda first, last: changed.append((first.row(), last.row())))
    assert settings.regions_check.isChecked() and view.region_overlay.isVisibleTo(view)
    settings.regions_check.click()
    assert session.project.settings.regions is False and session.undo.count() == 1
    assert not view.region_overlay.isVisibleTo(view) and view.region_overlay.regions == []
    assert not view.regions_reset.isVisibleTo(view)
    assert model.data(model.index(1), PanelListModel.RegionsRole) is None and changed == [(0, 1)]
    session.undo.undo()
    assert session.project.settings.regions is True and settings.regions_check.isChecked()
    assert view.region_overlay.isVisibleTo(view) and [r.character for r in view.region_overlay.regions] == ["Bo", "Ann"]
    assert model.data(model.index(1), PanelListModel.RegionsRole) is not None


def test_photo_strength_in_the_character_sheet_is_undoable(qtbot, session):
    from helpers import flat_png

    ann = session.project.characters[0]
    sheet = CharacterSheet(session)
    qtbot.addWidget(sheet)
    sheet.show()
    assert not sheet.photo_strength.isEnabled()  # no photo yet
    ann.photo = session.project.add_image(flat_png((200, 10, 10), (20, 20)))
    sheet.refresh()
    assert sheet.photo_strength.isEnabled() and sheet.photo_strength.value() == pytest.approx(0.6)
    sheet.photo_strength.setValue(0.85)
    sheet.photo_strength.editingFinished.emit()
    assert ann.photo_strength == pytest.approx(0.85)
    session.undo.undo()
    assert ann.photo_strength == pytest.approx(0.6) and sheet.photo_strength.value() == pytest.approx(0.6)


def test_moving_a_box_or_changing_a_photo_means_regenerate_draws_a_new_picture(session):
    from helpers import flat_png
    from storystudio.ui.recipes import recipe, would_repeat

    project = session.project
    shared = project.panels[1]
    shared.versions.append(ImageVersion("img-x.png", recipe(shared, project.to_story(), project.settings)))
    assert would_repeat(shared, project.to_story(), project.settings)
    assert "a girl with red hair" not in shared.versions[0].parameters["story_prompt"]  # looks live in the regions
    shared.regions = [Region("Ann", (0.0, 0.2, 0.4, 1.0))]
    assert not would_repeat(shared, project.to_story(), project.settings)
    shared.regions = None
    project.characters[0].photo = project.add_image(flat_png((200, 10, 10), (20, 20)))
    assert not would_repeat(shared, project.to_story(), project.settings)
