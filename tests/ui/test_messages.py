"""The Messages list: engine notes with their panel, badges on the timeline, summaries, checks before export."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

from helpers import COLOURS, flat_png
from storystudio.project.layout import auto_layout
from storystudio.project.model import Project
from storystudio.ui.jobs import JobKind
from storystudio.ui.main_window import MainWindow
from storystudio.ui.messages import Message, MessageList, Severity, note_subject
from storystudio.ui.worker import RenderJob


def test_note_subjects():
    keys = {1: "p1", 3: "p3"}
    assert note_subject("Panel 3: the prompt is cut", keys.get) == ("p3", None)
    assert note_subject("[Mira] appears alone in only 1 panel(s)", keys.get) == (None, "Mira")
    assert note_subject("Something general", keys.get) == (None, None)


def test_the_list_keeps_every_note(qapp):
    messages = MessageList()
    changed = []
    messages.panels_changed.connect(changed.append)
    messages.add(Message(Severity.NOTE, "first", "p1"))
    messages.add(Message(Severity.NOTE, "second", "p1"))
    messages.add(Message(Severity.WARNING, "no picture", "p2", source="export"))
    assert messages.rowCount() == 3 and changed == [["p1"], ["p1"], ["p2"]]  # nothing replaces anything
    assert messages.worst_for_panel("p1") is Severity.NOTE and messages.worst_for_panel("p9") is None
    messages.clear(source="export")
    assert messages.rowCount() == 2 and changed[-1] == ["p2"]


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    from test_jobs import FakeService

    project = Project.example()
    for panel, colour in zip(project.panels, COLOURS):
        project.add_version(panel.id, flat_png(colour), {"seed": 1})
    service = FakeService()  # the worker's signals, sent by the test: nothing is drawn
    service.shutdown = lambda: None
    win = MainWindow(project, service=service, settings=QSettings(str(tmp_path / "q.ini"), QSettings.IniFormat))
    win.show()
    yield win
    win.session.undo.setClean()
    win.close()


def test_engine_notes_land_in_messages_with_their_panel_and_a_badge(qtbot, window):
    project = window.session.project
    job = window.jobs.submit(JobKind.PANELS, RenderJob(project.to_story(), project.settings, None),
                             [p.id for p in project.panels])
    worker = window.service.worker
    worker.message.emit(job.id, "Panel 3: the prompt is 90 tokens; the end is cut off.")
    worker.message.emit(job.id, "[Mira] appears alone in only 2 panel(s).")
    assert window.messages.rowCount() == 2  # both stay: the second replaced nothing
    third = project.panels[2].id
    model = window.timeline.panel_model
    assert model.data(model.index(2), model.BadgeRole) is Severity.NOTE
    assert model.data(model.index(0), model.BadgeRole) is None
    assert "cut off" in model.data(model.index(2), 3)  # the tooltip lists it
    assert window.messages.data(window.messages.index(0)).startswith("•")
    window.timeline.select_id(project.panels[0].id)
    window.tabs.setCurrentWidget(window.canvas)
    window._message_clicked(window.messages.index(0))  # a click on the message goes to its panel
    assert window.timeline.current_id() == third and window.tabs.currentWidget() is window.panel_view
    worker.finished.emit(job.id, "done")
    summary = window.messages.messages[-1]
    assert summary.severity is Severity.INFO and "2 note(s)" in summary.text
    assert window.docks["messages"].windowTitle() == "Messages (3)"


def test_before_an_export_the_window_says_what_is_missing(qtbot, window, monkeypatch):
    project = window.session.project
    project.layout = auto_layout(project.panels, size="us-comic")
    gone = project.panels[4]
    gone.versions.clear()
    gone.chosen = None
    page = next(p for p in project.layout.pages if any(b.text for b in p.balloons))
    balloon = next(b for b in page.balloons if b.text)
    balloon.panel, balloon.source = None, ""  # free lettering with words of its own
    balloon.text = "far too many words for such a very small balloon " * 8
    balloon.w = balloon.h = 30
    problems = window.export_problems("comic")
    kinds = sorted(p.kind for p in problems)
    assert kinds == ["no-picture", "overflow"]
    assert next(p for p in problems if p.kind == "no-picture").panel == gone.id
    assert sum(m.source == "export" for m in window.messages.messages) == 2
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.No)
    assert not window._check_before_export("comic")
    assert "1 panel(s) have no picture yet" in asked[0] and "does not fit" in asked[0]
    assert window.export_problems("comic") and sum(m.source == "export" for m in window.messages.messages) == 2
    window.export_comic_dialog()  # answered No: no export starts
    assert window.export_job is None
