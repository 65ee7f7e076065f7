"""The Models dialog: what StoryStudio can use, what is on this computer, and getting more.

The catalog (pure data) shows at once. Everything that touches the disk or
the network (listing what is installed, downloads, imports, removal) runs on a
thread of its own, because those modules bring in torch and can take long;
the dialog stays responsive, shows bytes, speed and time left, and Cancel
stops a download cleanly (what was fetched is kept, so a later download
continues where it stopped).
"""

from __future__ import annotations

import traceback
from typing import Any

from PySide6.QtCore import QSettings, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..engine.models.catalog import CatalogEntry, catalog, recommend
from .files import ask_folder, ask_open_file
from .preferences import Preferences, hub_token, save_hub_token  # noqa: F401  (the token's home is preferences)
from .threads import ThreadWorker, run_in_thread

KIND_WORDS = {"base-sdxl": "Picture model (SDXL)", "base-sd15": "Picture model (SD 1.5)",
              "ip-adapter": "Reference photos / video (IP-Adapter)", "image-encoder": "Image encoder",
              "motion-adapter": "Video: motion", "sparsectrl": "Video: keyframes",
              "controlnet-sdxl": "Pose / depth guide (ControlNet, SDXL)",
              "controlnet-sd15": "Pose / depth / line art guide (ControlNet, SD 1.5)"}


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def describe_progress(p: Any) -> str:
    """'1.2 GB of 6.9 GB · 45.0 MB/s · 2 min left' from a DownloadProgress."""
    parts = [f"{human_bytes(p.bytes_done)} of {human_bytes(p.bytes_total)}" if p.bytes_total else p.stage]
    if p.bytes_per_second:
        parts.append(f"{human_bytes(p.bytes_per_second)}/s")
    if p.seconds_left is not None:
        s = int(p.seconds_left)
        parts.append(f"{s // 60} min left" if s >= 120 else f"{s} s left")
    return " · ".join(parts)


# ---- library work, each call on a thread of its own (they import torch and can take long) ----------------


def list_models() -> list:
    from ..engine.models.library import installed_models

    return installed_models()


def find_gpu() -> float | None:
    from ..engine.models.catalog import detect_gpu_memory_gb

    return detect_gpu_memory_gb()


def download_model(entry_id: str, token: str | None, report, cancelled) -> tuple[str, str]:
    from ..engine.models.downloads import download

    folder = download(entry_id, token=token or None, progress=report, cancelled=cancelled)
    return f"Downloaded to {folder}.", entry_id


def import_path_model(path: str, allow_pickle: bool, report, cancelled) -> tuple[str, str]:
    from ..engine.models.library import import_model

    model = import_model(path, allow_pickle=allow_pickle, progress=report, cancelled=cancelled)
    return f"Imported {model.name} ({(model.arch or '?').upper()}).", model.id


def remove_model_files(model_id: str) -> tuple[str, str]:
    from ..engine.models.library import remove_model

    freed = remove_model(model_id)
    return (f"Removed; {human_bytes(freed)} freed." if freed else "Removed from the list."), ""


class ModelsDialog(QDialog):
    """Install, import, remove and choose models."""

    model_chosen = Signal(str)  # the load id of the model to use for this project
    model_family = Signal(str, str)  # the same load id, and its family (sd15, sdxl) where known

    def __init__(self, parent: QWidget | None = None, settings: Preferences | QSettings | None = None,
                 intro: str = "", close_on_use: bool = False):
        """``close_on_use``: a generation waits for the model; *Use for This Project* closes the dialog
        so that it starts at once."""
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(980, 560)
        self.preferences = settings if isinstance(settings, Preferences) else Preferences(settings)
        self.close_on_use = close_on_use
        self.works: list[ThreadWorker] = []
        self.select_after_listing: str | None = None  # an imported model, selected once it is listed
        self.entries: list[CatalogEntry] = catalog()
        self.installed: dict[str, Any] = {}  # InstalledModel by id
        self.others: list[Any] = []  # installed models that are not in the catalog
        self.busy: str | None = None
        self.gpu_gb: float | None = None
        self.gpu_known = False

        self.intro = QLabel(intro)
        self.intro.setWordWrap(True)
        self.intro.setVisible(bool(intro))
        self.recommendation = QLabel("Looking at this computer…")
        self.recommendation.setWordWrap(True)
        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["Model", "For", "Download", "Needs", "Licence", "On this computer"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.download_button = QPushButton("Download")
        self.download_button.clicked.connect(self.download_selected)
        self.cancel_button = QPushButton("Cancel Download")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setVisible(False)
        self.use_button = QPushButton("Use for This Project")
        self.use_button.clicked.connect(self.use_selected)
        self.default_button = QPushButton("Make Default")
        self.default_button.setToolTip("New projects start with this model")
        self.default_button.clicked.connect(self.make_default)
        self.remove_button = QPushButton("Remove…")
        self.remove_button.clicked.connect(self.remove_selected)
        self.import_file_button = QPushButton("Import File…")
        self.import_file_button.clicked.connect(self.import_file)
        self.import_folder_button = QPushButton("Import Folder…")
        self.import_folder_button.clicked.connect(self.import_folder)
        self.pickle_box = QCheckBox("Allow pickled .ckpt files (only their weights are read)")
        buttons = QHBoxLayout()
        for b in (self.download_button, self.cancel_button, self.use_button, self.default_button, self.remove_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        for b in (self.import_file_button, self.import_folder_button):
            buttons.addWidget(b)
        close = QDialogButtonBox(QDialogButtonBox.Close)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addWidget(self.recommendation)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.pickle_box)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(close)

        self._fill()
        self._run(find_gpu, on_result=self._gpu, on_error=lambda exc: self._gpu(None))
        self.refresh()

    @property
    def qsettings(self) -> QSettings:
        return self.preferences.qsettings

    def _run(self, func, *args, **callbacks) -> ThreadWorker:
        worker = run_in_thread(func, *args, name="StoryStudio models", **callbacks)
        self.works = [w for w in self.works if w.isRunning()] + [worker]
        return worker

    # ---- table -----------------------------------------------------------------------------
    def refresh(self) -> None:
        self._run(list_models, on_result=self._listed, on_error=self._list_failed)

    def rows(self) -> list[tuple[str, Any]]:
        """What each table row shows: ("catalog", entry) or ("installed", InstalledModel)."""
        return [("catalog", e) for e in self.entries] + [("installed", m) for m in self.others]

    def _fill(self) -> None:
        selected = self.selected()
        rows = self.rows()
        self.table.setRowCount(len(rows))
        default = self.preferences.get("default_model")
        for r, (kind, item) in enumerate(rows):
            if kind == "catalog":
                e: CatalogEntry = item
                there = self.installed.get(e.id)
                state = "Not installed"
                if there is not None and there.state == "partial":
                    state = f"Partly downloaded ({human_bytes(there.size_bytes)})"
                elif there is not None:
                    state = f"Installed, {human_bytes(there.size_bytes)}"
                cells = [e.name + (" ★ default" if default == e.id else ""), KIND_WORDS.get(e.kind, e.kind) + (
                    f"; {', '.join(e.good_for)}" if e.good_for else ""),
                    ("about " if e.size_approximate else "") + human_bytes(e.size_bytes),
                    f"{e.gpu_memory_gb:g} GB GPU" if e.gpu_memory_gb else "-",
                    e.licence + (" (accept on the Hub)" if e.gated else ""), state]
                tip = e.description + (f"\n\nOn this computer: {there.where}" if there is not None else "")
            else:
                m = item
                cells = [m.name + (" ★ default" if default == m.load_id else ""), KIND_WORDS.get(m.kind, m.kind),
                         "-", "-", "-", f"{m.source.replace('-', ' ')}, {human_bytes(m.size_bytes)}"]
                tip = str(m.where)
            for c, text in enumerate(cells):
                cell = QTableWidgetItem(text)
                cell.setToolTip(tip)
                self.table.setItem(r, c, cell)
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        if selected is not None:
            for r, row in enumerate(rows):
                if self._key(row) == self._key(selected):
                    self.table.selectRow(r)
        self._update_buttons()

    @staticmethod
    def _key(row: tuple[str, Any]) -> str:
        return f"{row[0]}:{row[1].id}"

    def selected(self) -> tuple[str, Any] | None:
        rows = self.rows()
        picked = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not picked or picked[0].row() >= len(rows):
            return None
        return rows[picked[0].row()]

    def select_id(self, model_id: str) -> None:
        for r, row in enumerate(self.rows()):
            if row[1].id == model_id:
                self.table.selectRow(r)
                return

    def _installed_row(self, row: tuple[str, Any] | None):
        if row is None:
            return None
        kind, item = row
        if kind == "installed":
            return item
        there = self.installed.get(item.id)
        return there if there is not None and there.state == "installed" else None

    def _update_buttons(self) -> None:
        row = self.selected()
        ready = self._installed_row(row)
        idle = self.busy is None
        is_catalog = row is not None and row[0] == "catalog"
        self.download_button.setEnabled(idle and is_catalog and ready is None)
        partial = is_catalog and self.installed.get(row[1].id) is not None
        self.download_button.setText("Continue Download" if partial and ready is None else "Download")
        base = ready is not None and (ready.kind or "").startswith("base")
        self.use_button.setEnabled(idle and base)
        self.default_button.setEnabled(idle and base)
        self.remove_button.setEnabled(idle and (ready is not None or partial))
        for b in (self.import_file_button, self.import_folder_button):
            b.setEnabled(idle)

    # ---- worker answers ---------------------------------------------------------------------
    def _listed(self, models: list) -> None:
        self.installed = {m.catalog_id: m for m in models if m.catalog_id}
        self.others = [m for m in models if not m.catalog_id]
        self._fill()
        if self.select_after_listing is not None:
            wanted, self.select_after_listing = self.select_after_listing, None
            self.select_id(wanted)

    def _list_failed(self, exc: BaseException) -> None:
        self.status.setText(f"The models on this computer could not be listed: {exc}")

    def _gpu(self, gb) -> None:
        self.gpu_gb, self.gpu_known = gb, True
        entry = recommend(gb)
        where = f"this computer's GPU ({gb:.0f} GB)" if gb else "this computer (no GPU found: pictures are drawn on the CPU, slowly)"
        self.recommendation.setText(f"Recommended for {where}: <b>{entry.name}</b>. {entry.description}")
        self.recommended = entry
        if self.selected() is None:
            self.select_id(entry.id)

    def _progress(self, p) -> None:
        self.progress.setVisible(True)
        self.progress.setMaximum(1000)
        self.progress.setValue(round(p.fraction * 1000))
        self.status.setText(f"{p.stage.capitalize()} {p.file or ''}: {describe_progress(p)}")

    def _finish(self) -> None:
        self.busy = None
        self.cancel_button.setVisible(False)
        self.progress.setVisible(False)
        self.refresh()
        self._update_buttons()

    def _done(self, answer: tuple[str, str]) -> None:
        message, model_id = answer
        if self.busy == "import" and model_id:
            self.select_after_listing = model_id  # the new model is the one the user wants next
        self._finish()
        self.status.setText(message)

    def _failed(self, exc: BaseException) -> None:
        from ..engine.errors import ModelError

        if isinstance(exc, ModelError):
            message = str(exc)
        else:  # the dialog must survive anything; the user gets words, the log the details
            traceback.print_exception(exc)
            message = f"That did not work: {exc}"
        self._finish()
        self.status.setText(message)
        QMessageBox.warning(self, "Models", message)

    def _cancelled(self) -> None:
        self._finish()
        self.status.setText("Download stopped. What was fetched is kept: Continue Download picks up from there.")

    # ---- actions -----------------------------------------------------------------------------
    def _start(self, what: str, func, args: tuple, text: str) -> None:
        self.busy = what
        self.status.setText(text)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.cancel_button.setVisible(what in ("download", "import"))
        self._update_buttons()
        self.job = self._run(func, *args, on_progress=self._progress, on_result=self._done,
                             on_error=self._failed, on_cancel=self._cancelled)

    def download_selected(self) -> None:
        row = self.selected()
        if row is None or row[0] != "catalog":
            return
        entry: CatalogEntry = row[1]
        token = hub_token()
        if entry.gated and not token:
            QMessageBox.information(
                self, "Models", f"{entry.name} is gated: accept its licence on its Hugging Face page, then add "
                "your access token in Preferences, and download again.")
            return
        self._start("download", download_model, (entry.id, token), f"Downloading {entry.name}…")

    def cancel(self) -> None:
        if getattr(self, "job", None) is not None:
            self.job.cancel()

    def import_file(self) -> None:
        path = ask_open_file(self, self.preferences, "Import a model file",
                             "Model files (*.safetensors *.ckpt *.bin *.pt)")
        if path:
            self.import_path(path)

    def import_folder(self) -> None:
        path = ask_folder(self, self.preferences, "Import a diffusers model folder")
        if path:
            self.import_path(path)

    def import_path(self, path: str) -> None:
        self._start("import", import_path_model, (path, self.pickle_box.isChecked()), f"Importing {path}…")

    def remove_selected(self, confirm: bool = True) -> None:
        row = self.selected()
        if row is None:
            return
        model = self._installed_row(row) or self.installed.get(row[1].id)
        if model is None:
            return
        if confirm and QMessageBox.question(
                self, "Remove model", f"Remove {model.name}" + (f" ({human_bytes(model.size_bytes)})?" if model.owned
                                                                  else " from the list? Its folder stays.")) \
                != QMessageBox.Yes:
            return
        self._start("remove", remove_model_files, (model.id,), f"Removing {model.name}…")

    def use_selected(self) -> None:
        model = self._installed_row(self.selected())
        if model is not None:
            self.model_family.emit(model.load_id, model.arch or "")
            self.model_chosen.emit(model.load_id)
            self.status.setText(f"This project now uses {model.name}.")
            if self.close_on_use:
                self.accept()  # the waiting generation starts now

    def make_default(self) -> None:
        model = self._installed_row(self.selected())
        if model is not None:
            self.preferences.set("default_model", model.load_id)
            self._fill()

    def shutdown(self) -> None:
        """Stop a running download or import (what it fetched is kept) and wait for the dialog's threads."""
        for worker in self.works:
            if self.busy in ("download", "import"):
                worker.cancel()
        for worker in self.works:
            worker.wait(10000)
        self.works = []

    def done(self, result: int) -> None:
        self.shutdown()
        super().done(result)
