"""File > Export Comic (PDF, CBZ, PNG pages) and the animatic's MP4: off the GUI thread, with progress and cancel."""

from __future__ import annotations

import copy
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QProgressDialog,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..export.comic import ExportError, export_cbz, export_pdf, export_png_pages
from ..project.model import Project
from .files import ask_folder, ask_save_file
from .preferences import Preferences
from .threads import ThreadWorker, run_in_thread

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

    def __init__(self, project: Project, suggested: Path, parent: QWidget | None = None, fmt: str = "pdf",
                 preferences: Preferences | None = None):
        super().__init__(parent)
        self.preferences = preferences
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
            path = ask_folder(self, self.preferences, "Folder for the PNG pages", str(Path(self.path_edit.text()).parent))
        else:
            label, suffix = FORMATS[self.fmt]
            path = ask_save_file(self, self.preferences, "Export Comic", f"{label} (*{suffix})", self.path_edit.text())
        if path:
            self.path_edit.setText(path)

    def options(self) -> dict:
        return {"format": self.fmt, "path": self.path_edit.text().strip(), "dpi": self.dpi_spin.value(),
                "bleed": self.bleed_box.isChecked() and self.fmt != "cbz", "author": self.author_edit.text().strip()}


def export(project: Project, options: dict, report=None, cancelled=None):
    """Write one export of ``project`` (a copy the GUI no longer touches) as ``options`` say."""
    from ..export.animatic import export_mp4

    o = options
    progress = (lambda done, total, what: report((done, total, what))) if report else None
    if o["format"] == "mp4":
        return export_mp4(project, o["path"], progress=progress, cancel=cancelled)
    kwargs = {"dpi": o.get("dpi"), "progress": progress, "cancel": cancelled}
    if o["format"] == "pdf":
        return export_pdf(project, o["path"], bleed=o["bleed"], author=o["author"], **kwargs)
    if o["format"] == "cbz":
        return export_cbz(project, o["path"], author=o["author"], **kwargs)
    return export_png_pages(project, o["path"], bleed=o["bleed"], **kwargs)


def failure_message(exc: BaseException) -> str:
    """What went wrong with an export, in one sentence for the user."""
    from ..export.animatic import VideoExportError

    if isinstance(exc, (ExportError, VideoExportError)):
        text = str(exc)
        return text[:1].upper() + text[1:]
    if isinstance(exc, OSError):
        return f"The export could not be written ({exc.strerror or exc})."
    return f"The export failed: {exc or type(exc).__name__}"


def run_export(parent: QWidget, project: Project, options: dict, on_done) -> ThreadWorker:
    """Start an export with a progress dialog (Cancel stops it); ``on_done(result | None, message)``.

    The export works on a copy of the project taken now, on its own thread.
    """
    what = "the animatic" if options.get("format") == "mp4" else "the comic"
    dialog = QProgressDialog(f"Exporting {what}…", "Cancel", 0, 0, parent)
    dialog.setWindowTitle(export_title(options))
    dialog.setMinimumDuration(300)
    dialog.setAutoClose(False)
    dialog.setAutoReset(False)

    def progress(value) -> None:
        done, total, what = value
        dialog.setMaximum(total)
        dialog.setValue(done)
        dialog.setLabelText(f"Exporting {what}…")

    def end(result, message: str) -> None:
        dialog.close()
        on_done(result, message)

    worker = run_in_thread(
        export, copy.deepcopy(project), dict(options), name="StoryStudio export", start=False,
        on_progress=progress, on_result=lambda result: end(result, ""),
        on_error=lambda exc: end(None, failure_message(exc)),
        on_cancel=lambda: end(None, "The export was cancelled; nothing was written."))
    dialog.canceled.connect(worker.cancel)
    worker.dialog = dialog
    return worker.start()
