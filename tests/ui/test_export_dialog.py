"""File > Export Comic: the options dialog, the export thread with progress, cancel and errors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QDialog, QMessageBox
from pypdf import PdfReader

from helpers import COLOURS, flat_png
from storystudio.project.model import Project
from storystudio.ui import export_dialog
from storystudio.ui.export_dialog import ExportOptionsDialog, export
from storystudio.ui.threads import ThreadWorker
from storystudio.ui.main_window import MainWindow


@pytest.fixture
def seen(monkeypatch):
    messages = []
    for name in ("warning", "information"):
        monkeypatch.setattr(QMessageBox, name, lambda *a, **k: messages.append(a[2]))
    return messages


@pytest.fixture
def window(qtbot, tmp_path, seen):
    project = Project.example()
    for panel, colour in zip(project.panels, COLOURS):
        project.add_version(panel.id, flat_png(colour), {})
    win = MainWindow(project, settings=QSettings(str(tmp_path / "q.ini"), QSettings.IniFormat))
    win.show()
    yield win
    win.session.undo.setClean()
    win.close()


def test_options_dialog_switches_file_endings(qtbot, tmp_path):
    project = Project.example()
    dialog = ExportOptionsDialog(project, tmp_path / "lighthouse")
    qtbot.addWidget(dialog)
    assert dialog.path_edit.text() == str(tmp_path / "lighthouse.pdf")
    assert dialog.dpi_spin.value() == 300 and dialog.bleed_box.isEnabled()
    dialog.format_box.setCurrentIndex(dialog.format_box.findData("cbz"))
    assert dialog.path_edit.text() == str(tmp_path / "lighthouse.cbz") and not dialog.bleed_box.isEnabled()
    dialog.format_box.setCurrentIndex(dialog.format_box.findData("png"))
    assert dialog.path_edit.text() == str(tmp_path / "lighthouse-pages")
    dialog.format_box.setCurrentIndex(dialog.format_box.findData("pdf"))
    dialog.bleed_box.setChecked(True)
    dialog.author_edit.setText("Ada")
    assert dialog.options() == {"format": "pdf", "path": str(tmp_path / "lighthouse.pdf"), "dpi": 300,
                                "bleed": True, "author": "Ada"}


def test_export_from_the_menu_lays_out_and_writes_a_pdf(qtbot, window, tmp_path, monkeypatch, seen):
    target = tmp_path / "comic.pdf"
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.Yes)  # "lay out pages now?"

    def accept(dialog):
        dialog.path_edit.setText(str(target))
        dialog.dpi_spin.setValue(100)
        return QDialog.Accepted

    monkeypatch.setattr(ExportOptionsDialog, "exec", accept)
    assert window.session.project.layout.pages == []
    window.actions_by_name["export_comic"].trigger()
    assert len(window.session.project.layout.pages) == 2  # laid out first, as one undo step
    assert window.export_job is not None
    qtbot.waitUntil(lambda: window.export_job is None, timeout=30000)
    assert len(PdfReader(target).pages) == 2
    assert "Exported 2 page(s)" in window.statusBar().currentMessage()
    assert seen == []  # nothing to warn about


def test_export_runs_off_the_gui_thread_and_reports_progress(qtbot, window, tmp_path, monkeypatch):
    window.lay_out_pages()
    threads = []
    real_export = export_dialog.export_cbz

    def export_and_note(*args, **kwargs):
        threads.append(threading.current_thread())
        return real_export(*args, **kwargs)

    monkeypatch.setattr(export_dialog, "export_cbz", export_and_note)
    job = ThreadWorker(export, window.session.project, {"format": "cbz", "path": str(tmp_path / "c.cbz"),
                                                        "dpi": 50, "bleed": False, "author": ""})
    steps = []
    job.progressed.connect(lambda value: steps.append(value[:2]), Qt.DirectConnection)
    with qtbot.waitSignal(job.returned, timeout=30000) as blocker:
        job.start()
    result = blocker.args[0]
    assert result.pages == 2 and Path(result.path).exists()
    qtbot.waitUntil(lambda: steps and steps[-1] == (2, 2))
    assert steps[0] == (0, 2)
    assert threads and threads[0] is not threading.main_thread()
    job.wait(5000)


def test_cancelled_export_writes_nothing(qtbot, window, tmp_path):
    window.lay_out_pages()
    job = ThreadWorker(export, window.session.project, {"format": "pdf", "path": str(tmp_path / "c.pdf"),
                                                        "dpi": 50, "bleed": False, "author": ""})
    job.cancel()  # the user pressed Cancel before the first page
    with qtbot.waitSignal(job.cancelled, timeout=30000):
        job.start()
    job.wait(5000)
    assert list(tmp_path.glob("c.pdf*")) == []


def test_failed_export_says_why(qtbot, window, tmp_path, seen):
    window.lay_out_pages()
    window.start_export({"format": "pdf", "path": str(tmp_path / "missing" / "c.pdf"), "dpi": 50, "bleed": False,
                         "author": ""})
    qtbot.waitUntil(lambda: window.export_job is None, timeout=30000)
    assert seen and "does not exist" in seen[0] and seen[0][0].isupper()


def test_the_animatic_export_is_called_export_animatic(qtbot, window, tmp_path, monkeypatch):
    titles = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: titles.append(a[1]))
    window.session.project.animatic.size, window.session.project.animatic.fps = "1280x720", 12
    for panel in window.session.project.panels:
        panel.duration = 0.5  # a short film: this test is about names, not frames
    job = window.start_export({"format": "mp4", "path": str(tmp_path / "a.mp4")})
    assert job.dialog.windowTitle() == "Export Animatic" and "animatic" in job.dialog.labelText()
    qtbot.waitUntil(lambda: window.export_job is None, timeout=120000)
    assert (tmp_path / "a.mp4").exists()
    # a failure says so under the same name
    job = window.start_export({"format": "mp4", "path": str(tmp_path / "missing" / "a.mp4")})
    qtbot.waitUntil(lambda: window.export_job is None, timeout=30000)
    assert titles == ["Export Animatic"]
    job = window.start_export({"format": "pdf", "path": str(tmp_path / "missing" / "c.pdf"), "dpi": 50,
                               "bleed": False, "author": ""})
    assert job.dialog.windowTitle() == "Export Comic"
    qtbot.waitUntil(lambda: window.export_job is None, timeout=30000)
    assert titles[-1] == "Export Comic"
