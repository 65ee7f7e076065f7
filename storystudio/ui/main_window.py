"""The main window: panel timeline, character sheet, generation settings and the panel view."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QCloseEvent, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .. import __version__
from ..engine.errors import ErrorKind
from ..project.fileio import ProjectFileError, RecentFiles, discard_autosave, pending_autosaves, write_autosave
from ..project.model import Project
from ..project.script import ScriptError
from . import commands as cmd
from .character_sheet import CharacterSheet
from .animatic_editor import AnimaticEditor
from .export_dialog import ExportOptionsDialog, export_title, run_export
from .layout_canvas import LayoutCanvas
from .models_dialog import ModelsDialog
from .preferences import PreferencesDialog, preference
from .session import ProjectSession
from .settings_panel import SettingsPanel
from .timeline import PanelTimeline
from .worker import GenerationService, ModelChoice, RenderJob, TransitionJob

FILE_FILTER = "StoryStudio projects (*.storystudio)"
SCRIPT_FILTER = "Story scripts (*.txt *.story);;All files (*)"
AUTOSAVE_MS = 60_000


class ImageLabel(QLabel):
    """Shows a picture as large as fits, keeping its shape, and refits when resized."""

    def __init__(self, text: str = ""):
        super().__init__(text)
        self._source = QPixmap()

    def set_picture(self, pix: QPixmap) -> None:
        """Show ``pix``; a null pixmap clears the picture (then ``setText`` shows a message)."""
        self._source = pix
        if pix.isNull():
            self.clear()
        else:
            self._fit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if not self._source.isNull():  # a message shown instead of a picture stays as it is
            self._fit()

    def _fit(self) -> None:
        w, h = max(1, self.width() - 8), max(1, self.height() - 8)
        self.setPixmap(self._source.scaled(w, h, Qt.KeepAspectRatio, Qt.SmoothTransformation))


class PanelView(QWidget):
    """The chosen panel large, its words, its picture size and its versions."""

    def __init__(self, session: ProjectSession, parent=None):
        super().__init__(parent)
        self.session = session
        self.panel_id: str | None = None
        self.image = ImageLabel("Select a panel in the timeline.")
        self.image.setAlignment(Qt.AlignCenter)
        self.image.setMinimumSize(160, 120)
        self.image.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.image.setStyleSheet("background:#202124; color:#bdc1c6;")
        self.prompt = QLineEdit()
        self.caption = QLineEdit()
        self.dialogue = QLineEdit()
        self.versions = QListWidget()
        self.versions.setViewMode(QListWidget.IconMode)
        self.versions.setFlow(QListWidget.LeftToRight)
        self.versions.setWrapping(False)
        self.versions.setFixedHeight(96)
        self.versions.setIconSize(QPixmap(64, 64).size())
        form = QFormLayout()
        form.addRow("Shows", self.prompt)
        form.addRow("Caption", self.caption)
        form.addRow("Dialogue", self.dialogue)
        self.size_label = QLabel()
        self.size_label.setWordWrap(True)  # a narrow window wraps it instead of growing
        self.size_reset = QPushButton("Story Size")
        self.size_reset.setToolTip("Draw this panel at the picture size of the Generation settings again")
        self.size_reset.clicked.connect(self._reset_size)
        size_row = QHBoxLayout()
        size_row.addWidget(self.size_label, 1)
        size_row.addWidget(self.size_reset)
        form.addRow("Size", size_row)
        form.addRow("Versions", self.versions)
        layout = QVBoxLayout(self)
        layout.addWidget(self.image, 1)
        layout.addLayout(form)
        for field, edit in (("prompt", self.prompt), ("caption", self.caption), ("dialogue", self.dialogue)):
            edit.editingFinished.connect(lambda f=field, e=edit: self._commit(f, e.text()))
        self.versions.itemClicked.connect(self._choose)
        session.panel_changed.connect(self._maybe_refresh)
        session.panels_changed.connect(self.refresh)
        session.settings_changed.connect(self.refresh)
        session.project_replaced.connect(lambda: self.show_panel(None))
        self._preview: QImage | None = None

    def show_panel(self, panel_id: str | None) -> None:
        self.panel_id = panel_id
        self._preview = None
        self.refresh()

    def show_preview(self, panel_id: str, preview: QImage) -> None:
        if panel_id == self.panel_id and not preview.isNull():
            self._preview = preview
            self._set_pixmap(QPixmap.fromImage(preview))

    def _maybe_refresh(self, panel_id: str) -> None:
        if panel_id == self.panel_id:
            self._preview = None
            self.refresh()

    def _set_pixmap(self, pix: QPixmap) -> None:
        self.image.set_picture(pix)

    def refresh(self) -> None:
        panel = self.session.project.panel_by_id(self.panel_id) if self.panel_id else None
        enabled = panel is not None
        for w in (self.prompt, self.caption, self.dialogue, self.versions):
            w.setEnabled(enabled)
        self.versions.clear()
        if panel is None:
            self.image.set_picture(QPixmap())
            self.image.setText("Select a panel in the timeline.")
            for w in (self.prompt, self.caption, self.dialogue):
                w.setText("")
            return
        for w, text in ((self.prompt, panel.prompt), (self.caption, panel.caption), (self.dialogue, panel.dialogue)):
            if not w.hasFocus():
                w.setText(text)
        settings = self.session.project.settings
        if panel.size:
            self.size_label.setText(f"{panel.size[0]} x {panel.size[1]} (its frame's shape)")
        else:
            self.size_label.setText(f"{settings.width} x {settings.height} (the story's size)")
        self.size_reset.setVisible(bool(panel.size))
        for i, version in enumerate(panel.versions):
            pix = QPixmap()
            pix.loadFromData(self.session.project.images.get(version.image, b""))
            item = QListWidgetItem(pix.scaled(64, 64, Qt.KeepAspectRatio), f"{i + 1}")
            item.setData(Qt.UserRole, i)
            item.setToolTip(f"seed {version.parameters.get('seed')}")
            self.versions.addItem(item)
            if i == panel.chosen:
                item.setSelected(True)
        version = panel.chosen_version
        if version is None:
            self.image.set_picture(QPixmap())
            self.image.setText("No picture yet: Generate ▸ Generate all, or right-click the panel ▸ Regenerate.")
            return
        pix = QPixmap()
        pix.loadFromData(self.session.project.images.get(version.image, b""))
        self._set_pixmap(pix)

    def _reset_size(self) -> None:
        if self.panel_id is not None:
            self.session.undo.push(cmd.SetPanelSizes(self.session, {self.panel_id: None}))

    def _commit(self, field: str, text: str) -> None:
        if self.panel_id is None:
            return
        panel = self.session.project.panel_by_id(self.panel_id)
        if panel is not None and getattr(panel, field) != text:
            self.session.undo.push(cmd.SetPanelText(self.session, self.panel_id, field, text))

    def _choose(self, item: QListWidgetItem) -> None:
        index = item.data(Qt.UserRole)
        panel = self.session.project.panel_by_id(self.panel_id) if self.panel_id else None
        if panel is not None and panel.chosen != index:
            self.session.undo.push(cmd.ChooseVersion(self.session, self.panel_id, index))


class MainWindow(QMainWindow):
    def __init__(self, project: Project | None = None, path: str | None = None,
                 service: GenerationService | None = None, settings: QSettings | None = None,
                 recovered_from: Path | None = None):
        """``recovered_from``: the autosave this (unsaved) project was recovered from."""
        super().__init__()
        self.session = ProjectSession(project or Project.example(), path, self)
        self.service = service or GenerationService(self)
        self.qsettings = settings or QSettings("StoryStudio", "StoryStudio")
        if not self.session.project.settings.model:  # e.g. the example story: use the preferred model
            self.session.project.settings.model = preference(self.qsettings, "models/default", "")
        self.recent = RecentFiles()
        self.job_panels: dict[int, list[str]] = {}
        self.job_references: dict[int, dict[str, list[tuple[bytes, dict]]]] = {}
        self.job_apply: dict[int, str] = {}  # job -> "panels" | "references"
        self._autosave_path: Path | None = recovered_from

        self.timeline = PanelTimeline(self.session)
        self.panel_view = PanelView(self.session)
        self.characters = CharacterSheet(self.session)
        self.settings_panel = SettingsPanel(self.session)
        self.canvas = LayoutCanvas(self.session)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.panel_view, "Panel")
        self.tabs.addTab(self.canvas, "Pages")
        self.animatic = AnimaticEditor(self.session)
        self.tabs.addTab(self.animatic, "Animatic")
        self.job_transitions: dict[int, str] = {}  # job -> the panel before the cut
        self.setCentralWidget(self.tabs)
        self.export_job = None
        self.active_models_dialog: ModelsDialog | None = None
        self._dock("Panels", self.timeline, Qt.BottomDockWidgetArea, "timeline")
        self._dock("Characters", self.characters, Qt.LeftDockWidgetArea, "characters", scroll=True)
        self._dock("Generation", self.settings_panel, Qt.RightDockWidgetArea, "settings", scroll=True)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(240)
        self.progress.setVisible(False)
        self.statusBar().addPermanentWidget(self.progress)
        self.model_label = QLabel("No model loaded")
        self.statusBar().addPermanentWidget(self.model_label)

        self._actions()
        self._connect()
        if recovered_from is not None:
            self.session.undo.resetClean()  # recovered work is unsaved work
        self._update_title()
        self._restore_window_state()
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setInterval(AUTOSAVE_MS)
        self.autosave_timer.timeout.connect(self.autosave)
        self.autosave_timer.start()
        if self.session.project.panels:
            self.timeline.select_id(self.session.project.panels[0].id)
        self.warm_up_job = self.service.warm_up()

    # ---- construction ------------------------------------------------------------------
    def _dock(self, title: str, widget: QWidget, area, name: str, scroll: bool = False) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        if scroll:  # long forms scroll instead of forcing a window larger than a laptop screen
            area_widget = QScrollArea()
            area_widget.setWidgetResizable(True)
            area_widget.setWidget(widget)
            area_widget.setMinimumWidth(260)
            widget = area_widget
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        return action

    def _actions(self) -> None:
        a = self.actions_by_name = {}
        a["new"] = self._action("&New", self.new_project, QKeySequence.New)
        a["open"] = self._action("&Open…", self.open_dialog, QKeySequence.Open)
        a["save"] = self._action("&Save", self.save, QKeySequence.Save)
        a["save_as"] = self._action("Save &As…", self.save_as, QKeySequence.SaveAs)
        a["import"] = self._action("&Import Story Script…", self.import_script_dialog, "Ctrl+I")
        a["export_script"] = self._action("&Export Story Script…", self.export_script_dialog)
        a["export_comic"] = self._action("Export &Comic (PDF, CBZ, PNG)…", lambda: self.export_comic_dialog(), "Ctrl+E",
                                         "Export the laid-out pages for print or for comic readers")
        a["shape"] = self._action("Shape Panels to Their &Frames", self.shape_panels,
                                  tip="Draw each placed panel at its frame's shape the next time it is generated")
        a["layout"] = self._action("&Lay Out Story on Pages", self.lay_out_pages, "Ctrl+L",
                                   "Place every panel on pages with its captions and balloons")
        a["quit"] = self._action("&Quit", self.close, QKeySequence.Quit)
        a["undo"] = self.session.undo.createUndoAction(self, "&Undo")
        a["undo"].setShortcut(QKeySequence.Undo)
        a["redo"] = self.session.undo.createRedoAction(self, "&Redo")
        a["redo"].setShortcut(QKeySequence.Redo)
        a["prefs"] = self._action("&Preferences…", self.preferences, QKeySequence.Preferences)
        a["models"] = self._action("&Models…", lambda: self.models_dialog(), "Ctrl+Shift+M",
                                   "Install, import, remove and choose picture and video models")
        a["generate"] = self._action("&Generate All", self.generate_all, "Ctrl+G",
                                     "Draw every panel: references first, then the rest")
        a["regenerate"] = self._action("&Regenerate Panel", lambda: self.regenerate(self.timeline.selected_ids()),
                                       "Ctrl+R")
        a["variation"] = self._action("New &Variation", lambda: self.new_variation(self.timeline.selected_ids()),
                                      "Ctrl+Shift+R")
        a["stop"] = self._action("&Stop", self.stop, "Esc")
        a["stop"].setEnabled(False)
        a["about"] = self._action("&About StoryStudio", self.about)
        a["insert"] = self._action("&Insert Panel", lambda: self.insert_panel(None), "Ctrl+Shift+N")
        a["delete"] = self._action("&Delete Panels", lambda: self.delete_panels(self.timeline.selected_ids()),
                                   QKeySequence.Delete)
        # the Delete key deletes panels only from the timeline; on the canvas it deletes balloons and frames
        a["delete"].setShortcutContext(Qt.WidgetWithChildrenShortcut)
        self.timeline.addAction(a["delete"])

        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        for key in ("new", "open"):
            file_menu.addAction(a[key])
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        for key in ("save", "save_as", None, "import", "export_script", "export_comic", None, "quit"):
            file_menu.addSeparator() if key is None else file_menu.addAction(a[key])
        edit_menu = bar.addMenu("&Edit")
        for key in ("undo", "redo", None, "insert", "delete", None, "prefs"):
            edit_menu.addSeparator() if key is None else edit_menu.addAction(a[key])
        gen_menu = bar.addMenu("&Generate")
        for key in ("generate", "regenerate", "variation", None, "stop", None, "models"):
            gen_menu.addSeparator() if key is None else gen_menu.addAction(a[key])
        pages_menu = bar.addMenu("&Pages")
        pages_menu.addAction(a["layout"])
        pages_menu.addAction("Show Pages", lambda: self.tabs.setCurrentWidget(self.canvas))
        pages_menu.addAction(a["shape"])
        pages_menu.addAction(a["export_comic"])
        bar.addMenu("&Help").addAction(a["about"])
        tools = self.addToolBar("Main")
        tools.setObjectName("main-toolbar")
        for key in ("new", "open", "save", None, "undo", "redo", None, "generate", "stop"):
            tools.addSeparator() if key is None else tools.addAction(a[key])

    def _connect(self) -> None:
        s = self.session
        s.undo.cleanChanged.connect(self._update_title)
        s.project_replaced.connect(self._update_title)
        self.timeline.selectionModel().currentChanged.connect(lambda cur, prev: self._panel_selected())
        self.timeline.panel_model.modelReset.connect(self._reselect)
        self.timeline.regenerate_requested.connect(self.regenerate)
        self.timeline.variation_requested.connect(self.new_variation)
        self.timeline.duplicate_requested.connect(lambda pid: s.undo.push(cmd.duplicate_panel(s, pid)))
        self.timeline.delete_requested.connect(self.delete_panels)
        self.timeline.insert_requested.connect(self.insert_panel)
        self.timeline.edit_requested.connect(lambda pid: (self.timeline.select_id(pid), self.panel_view.prompt.setFocus()))
        self.characters.generate_references_requested.connect(self.generate_references)
        self.characters.panel_activated.connect(self.timeline.select_id)
        self.canvas.panel_activated.connect(self._show_panel)
        self.canvas.regenerate_requested.connect(self.regenerate)
        self.settings_panel.models_requested.connect(lambda: self.models_dialog())
        self.animatic.generate_transition_requested.connect(self.generate_transition)
        self.animatic.export_requested.connect(self.export_animatic_dialog)
        w = self.service.worker
        w.progress.connect(self._on_progress)
        w.image_ready.connect(self._on_image)
        w.failed.connect(self._on_failed)
        w.finished.connect(self._on_finished)
        w.clip_ready.connect(self._on_clip)
        w.model_loaded.connect(self._on_model_loaded)
        w.model_loading.connect(self._on_model_loading)
        w.device_found.connect(self.settings_panel.set_device_info)
        w.message.connect(self._on_message)

    # ---- selection -------------------------------------------------------------------------
    def _panel_selected(self) -> None:
        self.panel_view.show_panel(self.timeline.current_id())

    def _reselect(self) -> None:
        pid = self.panel_view.panel_id
        if pid and self.session.project.panel_by_id(pid):
            self.timeline.select_id(pid)
        elif self.session.project.panels:
            self.timeline.select_id(self.session.project.panels[0].id)
        else:
            self.panel_view.show_panel(None)

    # ---- files -----------------------------------------------------------------------------
    def _update_title(self) -> None:
        star = "*" if self.session.dirty else ""
        self.setWindowTitle(f"{self.session.display_name}{star} - StoryStudio")

    def maybe_save(self) -> bool:
        """True when it is fine to drop the current project (saved, discarded, or unchanged)."""
        if not self.session.dirty:
            return True
        answer = QMessageBox.question(
            self, "StoryStudio", f"Save the changes to {self.session.display_name}?",
            QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, QMessageBox.Save)
        if answer == QMessageBox.Save:
            return self.save()
        return answer == QMessageBox.Discard

    def new_project(self) -> None:
        if self.maybe_save():
            project = Project(title="Untitled")
            self.apply_defaults(project)
            self.session.replace(project, None)

    def apply_defaults(self, project: Project) -> None:
        """A new project starts with the preferred model, device and precision."""
        st = project.settings
        st.model = st.model or preference(self.qsettings, "models/default", "")
        st.device = preference(self.qsettings, "defaults/device", st.device)
        st.dtype = preference(self.qsettings, "defaults/dtype", st.dtype)

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open project", "", FILE_FILTER)
        if path:
            self.open_path(path)

    def open_path(self, path: str) -> bool:
        if not self.maybe_save():
            return False
        try:
            self.session.open(path)
        except (ProjectFileError, OSError) as exc:
            QMessageBox.warning(self, "StoryStudio", f"The project cannot be opened.\n\n{exc}")
            return False
        self.recent.add(path)
        self._reselect()
        return True

    def save(self) -> bool:
        if not self.session.path:
            return self.save_as()
        return self._save_to(self.session.path)

    def save_as(self) -> bool:
        path, _ = QFileDialog.getSaveFileName(self, "Save project", self.session.display_name, FILE_FILTER)
        if not path:
            return False
        if not path.endswith(".storystudio"):
            path += ".storystudio"
        return self._save_to(path)

    def _save_to(self, path: str) -> bool:
        try:
            self.session.save(path)
        except (ProjectFileError, OSError) as exc:
            QMessageBox.warning(self, "StoryStudio", f"The project could not be saved to {path}.\n\n{exc}\n\n"
                                "Nothing was lost: the project is still open. Try another folder.")
            return False
        self.recent.add(path)
        if self._autosave_path is not None:
            discard_autosave(self._autosave_path)
            self._autosave_path = None
        self.statusBar().showMessage(f"Saved {path}", 4000)
        self._update_title()
        return True

    def import_script_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import story script", "", SCRIPT_FILTER)
        if path:
            self.import_script(path)

    def import_script(self, path: str) -> bool:
        """A story script becomes a new project (the current one is offered for saving first)."""
        if not self.maybe_save():
            return False
        try:
            text = Path(path).read_text(encoding="utf-8")
            project = Project(title=Path(path).stem.removesuffix(".story"))
            project.import_script(text)
        except (OSError, UnicodeDecodeError) as exc:
            QMessageBox.warning(self, "StoryStudio", f"{path} cannot be read: {exc}")
            return False
        except ScriptError as exc:
            QMessageBox.warning(self, "StoryStudio", f"The story script has problems:\n\n{exc}")
            return False
        self.session.replace(project, None)
        self._reselect()
        return True

    def export_script_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export story script", "story.txt", SCRIPT_FILTER)
        if path:
            try:
                Path(path).write_text(self.session.project.export_script(), encoding="utf-8")
            except (OSError, ValueError) as exc:
                QMessageBox.warning(self, "StoryStudio", f"The story could not be exported: {exc}")

    def _show_panel(self, panel_id: str) -> None:
        self.timeline.select_id(panel_id)
        self.tabs.setCurrentWidget(self.panel_view)

    # ---- the animatic -------------------------------------------------------------------------
    def generate_transition(self, before: str, backend: str = "blend") -> int | None:
        """Make the clip of the transition after panel ``before`` on the worker thread."""
        from ..export.animatic import AnimaticRenderer
        from ..project.animatic import AnimaticError

        project = self.session.project
        order = [p.id for p in project.panels]
        if before not in order or order.index(before) + 1 >= len(order):
            return None
        after = order[order.index(before) + 1]
        animatic = project.animatic
        w, h = animatic.resolution
        scale = min(1.0, 960 / max(w, h))  # clips are kept at up to 960 px and scaled up when played
        size = (round(w * scale / 2) * 2, round(h * scale / 2) * 2)
        try:
            renderer = AnimaticRenderer(project, size=size)
        except AnimaticError as exc:
            QMessageBox.warning(self, "Animatic", f"The transition cannot be made: {exc}.")
            return None
        seg = next((s for s in renderer.segments if s.kind != "hold" and s.panel == before), None)
        frames = seg.frames if seg is not None else max(2, round(animatic.cut(before).duration * animatic.fps))
        start, end = renderer.transition_keyframes(before, after)
        story = project.to_story()
        prompts = {p.key: story.expand(p) for p in story.panels}

        def png(image) -> bytes:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            return buffer.getvalue()

        # where the video models are (Hub ids in the cache by default; folders once set), on the story's device
        models = dict(self.qsettings.value("video/models", {}) or {})
        models.setdefault("device", project.settings.device)
        models.setdefault("dtype", project.settings.dtype)
        work = TransitionJob(before, after, png(start), png(end), max(2, frames), size, prompts.get(before, ""),
                             prompts.get(after, ""), seed=project.settings.seed, backend=backend,
                             video_models=models, options=self._transition_options(backend))
        job = self.service.transition(work)
        self.job_transitions[job] = before
        self.actions_by_name["stop"].setEnabled(True)
        self.progress.setVisible(True)
        self.statusBar().showMessage("Making the transition…")
        return job

    def _transition_options(self, backend: str) -> dict:
        """Backend settings kept in the preferences (e.g. fewer steps for a quick look)."""
        if backend != "diffusion":
            return {}
        options = dict(self.qsettings.value("video/options", {}) or {})
        return {k: options[k] for k in ("steps", "native_frames", "width", "height", "guidance") if k in options}

    @Slot(int, str, str, list, dict)
    def _on_clip(self, job, before, after, frames, parameters) -> None:
        if self.session.project.panel_by_id(before) is None:
            return
        self.session.undo.push(cmd.apply_clip(self.session, before, after, list(frames), parameters))
        self.statusBar().showMessage(f"Transition ready: {len(frames)} frames.", 6000)

    def export_animatic_dialog(self) -> None:
        if self.export_job is not None:
            QMessageBox.information(self, "StoryStudio", "An export is already running.")
            return
        base = Path(self.session.path).with_suffix("") if self.session.path else Path.home() / (
            self.session.project.title or "animatic").replace("/", "-")
        path, _ = QFileDialog.getSaveFileName(self, "Export Animatic", str(base) + ".mp4", "MP4 video (*.mp4)")
        if path:
            self.start_export({"format": "mp4", "path": path})

    # ---- pages and comic export ---------------------------------------------------------------
    def lay_out_pages(self) -> None:
        self.tabs.setCurrentWidget(self.canvas)
        self.canvas.lay_out_story()

    def shape_panels(self) -> None:
        changed = self.canvas.shape_panels()
        if not self.session.project.layout.pages:
            self.statusBar().showMessage("Lay the story out on pages first: panels take the shape of their frames.",
                                         8000)
        else:
            self.statusBar().showMessage(f"{len(changed)} panel(s) will be drawn at their frame's shape the next "
                                         "time they are generated (Generate All or Regenerate).", 10000)

    def export_comic_dialog(self, fmt: str = "pdf") -> None:
        if self.export_job is not None:
            QMessageBox.information(self, "StoryStudio", "An export is already running.")
            return
        project = self.session.project
        if not project.layout.pages:
            answer = QMessageBox.question(
                self, "Export Comic",
                "This project has no pages yet. Lay out the story on pages now (you can change them "
                "afterwards on the Pages tab)?")
            if answer != QMessageBox.Yes:
                return
            self.lay_out_pages()
        base = Path(self.session.path).with_suffix("") if self.session.path else Path.home() / (
            project.title or "comic").replace("/", "-")
        dialog = ExportOptionsDialog(project, base, self, fmt)
        if dialog.exec() != QDialog.Accepted:
            return
        self.start_export(dialog.options())

    def start_export(self, options: dict):
        self.statusBar().showMessage("Exporting…")
        self._export_title = export_title(options)
        self.export_job = run_export(self, self.session.project, options, self._export_done)
        return self.export_job

    def _export_done(self, result, message: str) -> None:
        self.export_job = None
        if result is None:
            self.statusBar().showMessage(message, 8000)
            if "cancelled" not in message:
                QMessageBox.warning(self, self._export_title, message)
            return
        if hasattr(result, "pages"):
            text = f"Exported {result.pages} page(s) to {result.path}."
        else:
            text = f"Exported the animatic ({result.seconds:.1f} s, {result.frames} frames) to {result.path}."
        self.statusBar().showMessage(text, 10000)
        if result.warnings:
            QMessageBox.information(self, self._export_title,
                                    text + "\n\nPlease check:\n• " + "\n• ".join(result.warnings))

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        items = self.recent.items()
        for path in items:
            self.recent_menu.addAction(str(path), lambda p=str(path): self.open_path(p))
        if not items:
            self.recent_menu.addAction("(none)").setEnabled(False)

    def autosave(self) -> None:
        if self.session.dirty:
            try:
                self._autosave_path = write_autosave(self.session.project, self.session.path)
            except (OSError, ProjectFileError):
                pass  # a full disk must not interrupt the work; the next save will say so

    # ---- generation ---------------------------------------------------------------------------
    def _model_choice(self) -> ModelChoice | None:
        st = self.session.project.settings
        if not st.model:
            # first generation: pick (and if needed download) a model, then carry on with it
            self.models_dialog("To draw pictures StoryStudio needs a picture model. Pick one that is on this "
                               "computer and press <b>Use for This Project</b>, or download the one recommended "
                               "below (or import a .safetensors file or a model folder you have).")
            if not st.model:
                self.statusBar().showMessage("No model chosen: nothing was generated.", 6000)
                return None
        return ModelChoice(st.model, device=st.device, dtype=st.dtype,
                           memory=preference(self.qsettings, "models/memory", "full"))

    def _start(self, panel_ids: list[str] | None, apply: str = "panels") -> int | None:
        choice = self._model_choice()
        if choice is None:
            return None
        try:
            story = self.session.project.to_story()
        except (KeyError, ValueError) as exc:
            QMessageBox.warning(self, "StoryStudio", f"The story cannot be drawn yet: {exc}")
            return None
        only = list(panel_ids) if panel_ids is not None else None
        settings = dataclasses.replace(self.session.project.settings)  # a snapshot: later edits don't reach it
        job = self.service.render(RenderJob(story, settings, choice, only=only))
        targets = only if only is not None else [p.id for p in self.session.project.panels]
        self.job_panels[job] = targets
        self.job_apply[job] = apply
        self.job_references[job] = {}
        for pid in targets:
            self.session.set_status(pid, "queued")
        self.actions_by_name["stop"].setEnabled(True)
        self.progress.setVisible(True)
        self.progress.setValue(0)
        return job

    def generate_all(self) -> int | None:
        return self._start(None)

    def regenerate(self, ids: list[str]) -> int | None:
        return self._start(ids) if ids else None

    def new_variation(self, ids: list[str]) -> int | None:
        if not ids:
            return None
        self.session.undo.beginMacro("New variation")
        for pid in ids:
            self.session.undo.push(cmd.NewVariation(self.session, pid))
        self.session.undo.endMacro()
        return self._start(ids)

    def generate_references(self, character_id: str) -> int | None:
        character = self.session.character(character_id)
        story = self.session.project.to_story()
        refs = story.reference_panels(character.name, self.session.project.settings.id_length)
        if refs:
            keys = [p.key for p in refs]
        else:
            showing = self.session.panels_showing(character_id)
            if not showing:
                QMessageBox.information(self, "StoryStudio",
                                        f"[{character.name}] is in no panel yet; tag it in a panel first.")
                return None
            keys = [showing[0].id]
        return self._start(keys, apply="references")

    def stop(self) -> None:
        self.service.cancel()
        self.statusBar().showMessage("Stopping after the current step…", 3000)

    @Slot(int, str, list, int, int, int, int, QImage)
    def _on_progress(self, job, phase, keys, step, steps, done, total, preview) -> None:
        wanted = self.job_panels.get(job, [])
        for key in keys:
            # a batch may draw panels only to rebuild a character's references: those keep their status
            if key in wanted and self.session.project.panel_by_id(key):
                self.timeline.panel_model.progress[key] = f"{step}/{steps}"
                self.session.set_status(key, "generating")
                self.panel_view.show_preview(key, preview)
        self.progress.setMaximum(max(1, total * steps))
        self.progress.setValue(done * steps + step * len(keys))

    @Slot(int, str, str, bytes, dict)
    def _on_image(self, job, key, role, png, params) -> None:
        name = params.get("characters", [None])[0] if role in ("reference", "sheet") else None
        if name and self.job_apply.get(job) == "references":
            self.job_references.setdefault(job, {}).setdefault(name, []).append((png, params))
        if self.session.project.panel_by_id(key) is not None:
            self.session.undo.push(cmd.ApplyPanelImage(self.session, key, png, params))
            self.session.set_status(key, "done")

    @Slot(int, str, str)
    def _on_failed(self, job, kind, message) -> None:
        for pid in self.job_panels.get(job, []):
            if self.session.status.get(pid) in ("queued", "generating"):
                self.session.set_status(pid, "failed")
        if job in self.job_transitions and kind == ErrorKind.MISSING_MODEL.value:
            # the same way as for pictures: the Models dialog gets what is missing
            answer = QMessageBox.question(self, "Video models", message + "\n\nOpen Models to download them? "
                                          "(Stable Diffusion 1.5, the AnimateDiff motion module, SparseCtrl RGB, "
                                          "the IP-Adapter for SD1.5 and its image encoder.)")
            if answer == QMessageBox.Yes:
                self.models_dialog("The generated transitions need the video models: download Stable Diffusion "
                                   "1.5, the AnimateDiff motion module, SparseCtrl RGB, the IP-Adapter for SD1.5 "
                                   "and its image encoder, then generate the transition again.")
            return
        if kind == ErrorKind.MISSING_MODEL.value and job in self.job_panels:
            answer = QMessageBox.question(self, "Picture model", message + "\n\nOpen Models to choose or download "
                                          "a picture model?")
            if answer == QMessageBox.Yes:
                self.models_dialog("The project's picture model cannot be used. Pick one that is on this computer "
                                   "and press <b>Use for This Project</b>, or download one.")
            return
        if kind == ErrorKind.OUT_OF_MEMORY.value and job in self.job_panels:
            lower = {"full": "model-offload", "model-offload": "sequential-offload"}
            memory = preference(self.qsettings, "models/memory", "full")
            if memory in lower:
                answer = QMessageBox.question(
                    self, "StoryStudio", message + f"\n\nSwitch to the lower-memory setting ({lower[memory]}) and "
                    "generate these pictures again?")
                if answer == QMessageBox.Yes:
                    self.qsettings.setValue("models/memory", lower[memory])
                    targets, apply = list(self.job_panels.get(job, [])), self.job_apply.get(job, "panels")
                    QTimer.singleShot(0, lambda: self._start(targets, apply))
                return
        QMessageBox.warning(self, "StoryStudio", message)

    @Slot(int, str)
    def _on_finished(self, job, status) -> None:
        for name, images in self.job_references.pop(job, {}).items():
            character = self.session.project.character_by_name(name)
            if character is not None and images:
                self.session.undo.push(cmd.ApplyReferences(self.session, character.id, images))
        for pid in self.job_panels.pop(job, []):
            if self.session.status.get(pid) in ("queued", "generating"):
                self.session.status.pop(pid, None)
                self.session.status_changed.emit(pid)
        self.job_apply.pop(job, None)
        self.job_transitions.pop(job, None)
        busy = bool(self.job_panels or self.job_transitions)
        self.actions_by_name["stop"].setEnabled(busy)
        self.progress.setVisible(busy)
        if status == "cancelled":
            self.statusBar().showMessage("Stopped.", 4000)

    @Slot(int, str)
    def _on_message(self, job, text) -> None:
        self.statusBar().showMessage(text, 8000)

    @Slot(int, str)
    def _on_model_loading(self, job, source) -> None:
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)  # busy: loading has no steps to count
        self.statusBar().showMessage(f"Loading the model {source}…")

    @Slot(int, str)
    def _on_model_loaded(self, job, text) -> None:
        self.progress.setRange(0, 100)
        self.statusBar().showMessage(f"Model ready: {text}", 4000)
        self.model_label.setText(text)
        self.settings_panel.set_device_info(text.split(" on ", 1)[-1])

    # ---- edits -------------------------------------------------------------------------------
    def insert_panel(self, row: int | None) -> None:
        if row is None:
            current = self.timeline.current_id()
            row = self.session.project.panel_index(current) + 1 if current else len(self.session.project.panels)
        command = cmd.new_panel(self.session, row)
        self.session.undo.push(command)
        self.timeline.select_id(command.panels[0].id)

    def delete_panels(self, ids: list[str]) -> None:
        if ids:
            self.session.undo.push(cmd.DeletePanels(self.session, ids))

    def preferences(self) -> None:
        PreferencesDialog(self.qsettings, self).exec()

    def models_dialog(self, intro: str = "") -> ModelsDialog:
        """Open the Models dialog; a model picked there becomes this project's (one undo step)."""
        dialog = ModelsDialog(self, self.qsettings, intro)
        dialog.model_chosen.connect(self.settings_panel.set_model)
        self.active_models_dialog = dialog
        dialog.exec()
        dialog.shutdown()
        self.active_models_dialog = None
        return dialog

    def about(self) -> None:
        QMessageBox.about(self, "About StoryStudio",
                          f"StoryStudio {__version__}\n\nComics with the same characters in every panel, "
                          "drawn with StoryDiffusion's consistent self-attention on Stable Diffusion models.")

    # ---- window state ---------------------------------------------------------------------------
    def _restore_window_state(self) -> None:
        geometry = self.qsettings.value("window/geometry")
        state = self.qsettings.value("window/state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            screen = self.screen().availableGeometry() if self.screen() else None
            w, h = (1280, 820) if screen is None else (min(1280, screen.width()), min(820, screen.height()))
            self.resize(w, h)
            docks = [self.findChild(QDockWidget, n) for n in ("characters", "settings")]
            self.resizeDocks(docks, [340, 400], Qt.Horizontal)
        if isinstance(state, QByteArray):
            self.restoreState(state)

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.maybe_save():
            event.ignore()
            return
        self.qsettings.setValue("window/geometry", self.saveGeometry())
        self.qsettings.setValue("window/state", self.saveState())
        if self._autosave_path is not None:
            discard_autosave(self._autosave_path)
        self.autosave_timer.stop()
        self.animatic.shutdown()
        self.service.shutdown()
        event.accept()


def offer_recovery(parent: QWidget | None = None) -> tuple[Project, str | None, Path] | None:
    """After a crash: offer the newest autosaved project.

    Returns the project, the path it was saved at before (if any) and the autosave it came from, which
    stays on disk until the recovered work is saved or the window closes without it.
    """
    from ..project.fileio import load_project

    pending = pending_autosaves()
    if not pending:
        return None
    info = pending[0]
    answer = QMessageBox.question(
        parent, "Recover your work?",
        f"StoryStudio closed without saving \"{info.title}\" ({info.saved_at}). Recover the autosaved copy?",
        QMessageBox.Yes | QMessageBox.No, QMessageBox.Yes)
    if answer != QMessageBox.Yes:
        for item in pending:
            discard_autosave(item.path)
        return None
    try:
        project = load_project(info.path)
    except ProjectFileError as exc:
        QMessageBox.warning(parent, "StoryStudio", f"The autosaved copy cannot be read: {exc}")
        return None
    return project, info.source_path, Path(info.path)

