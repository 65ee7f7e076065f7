"""File > Export Comic (PDF, CBZ, PNG pages) and the animatic's MP4: off the GUI thread, with progress and cancel."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QProgressDialog,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..export.comic import ExportCancelled, ExportError, ExportResult, export_cbz, export_pdf, export_png_pages
from ..project.model import Project

FORMATS = {
    "pdf": ("PDF comic for print (.pdf)", ".pdf"),
    "cbz": ("CBZ for comic readers (.cbz)", ".cbz"),
    "png": ("PNG pages (a folder)", ""),
}


def export_title(options: dict) -> str:
    """What the progress dialog and the messages of an export are called: the animatic is not a comic."""
    return "Export Animatic" if options.get("format") == "mp4" else "Export Comic"


class ExportOptionsDialog(QDialog):
    """What to export and where."""

    def __init__(self, project: Project, suggested: Path, parent: QWidget | None = None, fmt: str = "pdf"):
        super().__init__(parent)
        self.setWindowTitle("Export Comic")
        self.project = project
        self.suggested = suggested
        self.format_box = QComboBox()
        for key, (label, _) in FORMATS.items():
            self.format_box.addItem(label, key)
        self.format_box.setCurrentIndex(self.format_box.findData(fmt))
        self.path_edit = QLineEdit()
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        self.dpi_spin = QSpinBox()
        self.dpi_spin.setRange(36, 1200)
        self.dpi_spin.setSuffix(" dpi")
        self.dpi_spin.setValue(project.layout.resolution)
        self.dpi_spin.setToolTip("Resolution of the pictures (300 dpi for print, 150 for screens)")
        self.bleed_box = QCheckBox("Include bleed (for a print shop that trims pages)")
        self.author_edit = QLineEdit()
        self.author_edit.setPlaceholderText("Shown in the PDF's and CBZ's document information")
        form = QFormLayout(self)
        form.addRow("Format", self.format_box)
        form.addRow("Save to", path_row)
        form.addRow("Resolution", self.dpi_spin)
        form.addRow("", self.bleed_box)
        form.addRow("Author", self.author_edit)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.button(QDialogButtonBox.Ok).setText("Export")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.format_box.currentIndexChanged.connect(self._format_changed)
        self._format_changed()

    @property
    def fmt(self) -> str:
        return self.format_box.currentData()

    def _format_changed(self) -> None:
        """Keep the chosen name, with the new format's ending (a folder name for PNG pages)."""
        text = self.path_edit.text().strip() or str(self.suggested)
        path = Path(text)
        if path.suffix.lower() in (".pdf", ".cbz"):
            path = path.with_name(path.stem)
        name = path.name.removesuffix("-pages")
        suffix = FORMATS[self.fmt][1]
        self.path_edit.setText(str(path.with_name(name + (suffix or "-pages"))))
        self.bleed_box.setEnabled(self.fmt != "cbz")

    def _browse(self) -> None:
        if self.fmt == "png":
            path = QFileDialog.getExistingDirectory(self, "Folder for the PNG pages", str(Path(self.path_edit.text()).parent))
        else:
            label, suffix = FORMATS[self.fmt]
            path, _ = QFileDialog.getSaveFileName(self, "Export Comic", self.path_edit.text(), f"{label} (*{suffix})")
        if path:
            self.path_edit.setText(path)

    def options(self) -> dict:
        return {"format": self.fmt, "path": self.path_edit.text().strip(), "dpi": self.dpi_spin.value(),
                "bleed": self.bleed_box.isChecked() and self.fmt != "cbz", "author": self.author_edit.text().strip()}


class ExportJob(QObject):
    """Runs one export in its own thread; the project is a copy taken when the export starts."""

    progress = Signal(int, int, str)
    finished = Signal(object)  # ExportResult
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, project: Project, options: dict):
        super().__init__()
        self.project = copy.deepcopy(project)
        self.options = options
        self.title = export_title(options)
        self.stop = threading.Event()
        self.thread = QThread()
        self.thread.setObjectName("storystudio-export")
        self.moveToThread(self.thread)
        self.thread.started.connect(self.run)

    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        self.stop.set()

    def run(self) -> None:
        o = self.options
        from ..export.animatic import VideoExportCancelled, VideoExportError, export_mp4

        kwargs = {"dpi": o.get("dpi"), "progress": lambda d, t, w: self.progress.emit(d, t, w),
                  "cancel": self.stop.is_set}
        try:
            if o["format"] == "mp4":
                result = export_mp4(self.project, o["path"], progress=kwargs["progress"], cancel=self.stop.is_set)
            elif o["format"] == "pdf":
                result = export_pdf(self.project, o["path"], bleed=o["bleed"], author=o["author"], **kwargs)
            elif o["format"] == "cbz":
                result = export_cbz(self.project, o["path"], author=o["author"], **kwargs)
            else:
                result = export_png_pages(self.project, o["path"], bleed=o["bleed"], **kwargs)
        except (ExportCancelled, VideoExportCancelled):
            self.cancelled.emit()
        except (ExportError, VideoExportError) as exc:
            self.failed.emit(str(exc)[0].upper() + str(exc)[1:])
        except OSError as exc:
            self.failed.emit(f"The export could not be written ({exc.strerror or exc}).")
        else:
            self.finished.emit(result)
        finally:
            self.thread.quit()


def run_export(parent: QWidget, project: Project, options: dict, on_done) -> ExportJob:
    """Start an export with a progress dialog (Cancel stops it); ``on_done(result | None, message)``."""
    job = ExportJob(project, options)
    job.title = export_title(options)
    what = "the animatic" if options.get("format") == "mp4" else "the comic"
    dialog = QProgressDialog(f"Exporting {what}…", "Cancel", 0, 0, parent)
    dialog.setWindowTitle(job.title)
    job.dialog = dialog
    dialog.setMinimumDuration(300)
    dialog.setAutoClose(False)
    dialog.setAutoReset(False)
    dialog.canceled.connect(job.cancel)
    receiver = _Receiver(dialog, on_done, job)
    job.progress.connect(receiver.progress)
    job.finished.connect(receiver.finished)
    job.failed.connect(receiver.failed)
    job.cancelled.connect(receiver.cancelled)
    job.receiver = receiver  # keep it alive with the job
    job.start()
    return job


class _Receiver(QObject):
    """Lives in the GUI thread, so the job's signals update the dialog there (queued)."""

    def __init__(self, dialog: QProgressDialog, on_done, job: ExportJob):
        super().__init__(dialog)
        self.dialog, self.on_done, self.job = dialog, on_done, job

    def progress(self, done: int, total: int, what: str) -> None:
        self.dialog.setMaximum(total)
        self.dialog.setValue(done)
        self.dialog.setLabelText(f"Exporting {what}…")

    def _close(self) -> None:
        self.job.thread.wait(5000)
        self.dialog.close()

    def finished(self, result: ExportResult) -> None:
        self._close()
        self.on_done(result, "")

    def failed(self, message: str) -> None:
        self._close()
        self.on_done(None, message)

    def cancelled(self) -> None:
        self._close()
        self.on_done(None, "The export was cancelled; nothing was written.")
