"""The main window: panel timeline, character sheet, generation settings and the panel view."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTabWidget,
    QTextBrowser,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from .. import __version__
from ..engine.errors import ErrorKind
from ..export.preflight import animatic_problems, comic_problems
from ..project.fileio import ProjectFileError, RecentFiles, discard_autosave, pending_autosaves, write_autosave
from ..project.model import Project
from ..project.script import ScriptError
from ..resources_path import resource
from . import commands as cmd
from .animatic_editor import AnimaticEditor
from .character_sheet import CharacterSheet
from .defaults import apply_fitting, at_defaults, fitting
from .export_dialog import ExportOptionsDialog, export_title, run_export
from .files import ask_open_file, ask_save_file, start_folder
from .jobs import Job, JobKind, JobQueue, JobState
from .layout_canvas import LayoutCanvas
from .machine import Machine
from .messages import Message, MessageList, Severity, note_subject
from .models_dialog import ModelsDialog
from .preferences import Preferences, PreferencesDialog
from .recipes import would_repeat
from .script_view import ScriptView
from .session import ProjectSession
from .region_editor import RegionOverlay
from .settings_panel import SettingsPanel
from .texts import readable_time, window_title
from .pose_editor import PoseEditorDialog, pose_summary
from .timeline import PanelTimeline
from .timing import Speed, SpeedTable, estimate_text, human_duration
from .worker import GenerationService, ModelChoice, RenderJob, TransitionJob

FILE_FILTER = "StoryStudio projects (*.storystudio)"
SCRIPT_FILTER = "Story scripts (*.txt *.story);;All files (*)"
AUTOSAVE_MS = 60_000
DOCK_MIN_WIDTH = 300  # a side dock narrower than this would hide its controls


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


class PromptEdit(QPlainTextEdit):
    """What a panel shows: one line of text that wraps to the box's width (Enter finishes, as in a line edit)."""

    editing_finished = Signal()

    def __init__(self, lines: int = 3):
        super().__init__()
        self.setTabChangesFocus(True)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        height = self.fontMetrics().lineSpacing() * lines + 2 * (self.frameWidth() + 4)
        self.setFixedHeight(height)

    def text(self) -> str:
        return " ".join(self.toPlainText().split())  # a prompt is one line: pasted line breaks become spaces

    def setText(self, text: str) -> None:
        if self.toPlainText() != text:
            self.setPlainText(text)

    def keyPressEvent(self, event) -> None:
        if event.key() in (Qt.Key_Return, Qt.Key_Enter):
            self.editing_finished.emit()
            return
        super().keyPressEvent(event)

    def focusOutEvent(self, event) -> None:
        super().focusOutEvent(event)
        self.editing_finished.emit()


class PanelTextDialog(QDialog):
    """Edit prompt and caption…: what the panel shows, its caption and its dialogue, in boxes that wrap."""

    def __init__(self, panel, number: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(f"Panel {number}")
        self.resize(520, 360)
        self.prompt = QPlainTextEdit(panel.prompt)
        self.prompt.setTabChangesFocus(True)
        self.prompt.setToolTip("What the panel shows; [Name] puts a character in it.")
        self.caption = QLineEdit(panel.caption)
        self.dialogue = QPlainTextEdit(panel.dialogue)
        self.dialogue.setTabChangesFocus(True)
        self.dialogue.setToolTip("One speech balloon per line; \"Name: words\" says who speaks.")
        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapAllRows)
        form.addRow("Shows", self.prompt)
        form.addRow("Caption", self.caption)
        form.addRow("Dialogue (one balloon per line)", self.dialogue)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def values(self) -> dict[str, str]:
        lines = [line.rstrip() for line in self.dialogue.toPlainText().splitlines()]
        return {"prompt": " ".join(self.prompt.toPlainText().split()), "caption": self.caption.text().strip(),
                "dialogue": "\n".join(line for line in lines if line.strip())}


class PanelView(QWidget):
    """The chosen panel large, its words, its picture size and its versions."""

    def __init__(self, session: ProjectSession, parent=None):
        super().__init__(parent)
        self.session = session
        self.panel_id: str | None = None
        self.image = ImageLabel("Select a panel in the timeline.")
        self.image.setAlignment(Qt.AlignCenter)
        self.image.setMinimumSize(160, 80)  # small on a short screen; the picture takes whatever height is left
        self.image.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.image.setStyleSheet("background:#202124; color:#bdc1c6;")
        self.image.setWordWrap(True)
        self.prompt = PromptEdit(2)
        self.prompt.setToolTip("What the panel shows; [Name] puts a character in it.")
        self.caption = QLineEdit()
        self.dialogue = QLineEdit()
        self.versions = QListWidget()
        self.versions.setViewMode(QListWidget.IconMode)
        self.versions.setFlow(QListWidget.LeftToRight)
        self.versions.setWrapping(False)
        self.versions.setFixedHeight(84)
        self.versions.setIconSize(QPixmap(56, 56).size())
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
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
        # A shared panel's boxes go back side by side from the Size row (no row of their own: the tab's
        # height is what the 1280x800 window has).
        self.regions_reset = QPushButton("Side by Side")
        self.regions_reset.setToolTip("Put the characters' boxes back side by side, in the order they are tagged")
        self.regions_reset.clicked.connect(self._reset_regions)
        size_row.addWidget(self.regions_reset)
        form.addRow("Size", size_row)
        self.pose_label = QLabel()
        self.pose_label.setWordWrap(True)
        self.pose_button = QPushButton("Poses…")
        self.pose_button.setToolTip("Draw each character's pose as a skeleton, or import an OpenPose picture "
                                    "(needs a pose ControlNet, see the Models dialog)")
        self.pose_button.clicked.connect(self.edit_poses)
        pose_row = QHBoxLayout()
        pose_row.addWidget(self.pose_label, 1)
        pose_row.addWidget(self.pose_button)
        form.addRow("Pose", pose_row)
        form.addRow("Versions", self.versions)
        # Where each character stands in a shared panel: boxes over the picture, dragged with the mouse.
        self.region_overlay = RegionOverlay(self.image)
        self.region_overlay.edited.connect(self._commit_regions)
        layout = QVBoxLayout(self)
        layout.addWidget(self.image, 1)
        layout.addLayout(form)
        self.prompt.editing_finished.connect(lambda: self._commit("prompt", self.prompt.text()))
        for field, edit in (("caption", self.caption), ("dialogue", self.dialogue)):
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

    def drop_preview(self) -> None:
        """A stopped or failed job leaves no half-drawn picture behind."""
        if self._preview is not None:
            self._preview = None
            self.refresh()

    @property
    def showing_preview(self) -> bool:
        return self._preview is not None

    def _maybe_refresh(self, panel_id: str) -> None:
        if panel_id == self.panel_id:
            self._preview = None
            self.refresh()

    def _set_pixmap(self, pix: QPixmap) -> None:
        self.image.set_picture(pix)

    def refresh(self) -> None:
        panel = self.session.project.panel_by_id(self.panel_id) if self.panel_id else None
        enabled = panel is not None
        for w in (self.prompt, self.caption, self.dialogue, self.versions, self.pose_button):
            w.setEnabled(enabled)
        self.versions.clear()
        if panel is None:
            self.region_overlay.set_regions([], [], 1.0)
            self.regions_reset.setVisible(False)
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
        self._refresh_regions(panel)
        self.pose_label.setText(pose_summary(panel))
        for i, version in enumerate(panel.versions):
            pix = QPixmap()
            pix.loadFromData(self.session.project.images.get(version.image, b""))
            item = QListWidgetItem(pix.scaled(56, 56, Qt.KeepAspectRatio), f"{i + 1}")
            item.setData(Qt.UserRole, i)
            item.setToolTip(f"seed {version.parameters.get('seed')}")
            self.versions.addItem(item)
            if i == panel.chosen:
                item.setSelected(True)
        if self._preview is not None:
            return
        version = panel.chosen_version
        if version is None:
            self.image.set_picture(QPixmap())
            self.image.setText("No picture yet: Generate ▸ Generate All, or right-click the panel ▸ Regenerate.")
            return
        pix = QPixmap()
        pix.loadFromData(self.session.project.images.get(version.image, b""))
        self._set_pixmap(pix)

    def _refresh_regions(self, panel) -> None:
        cast = [c.name for c in self.session.project.characters]
        regions = self.session.project.shown_regions(panel)
        settings = self.session.project.settings
        width, height = panel.size or (settings.width, settings.height)
        self.region_overlay.set_regions(regions, cast, width / max(height, 1))
        self.region_overlay.setToolTip("Where each character stands: drag a box to move it, its corner to resize "
                                       "it. Each box draws only its own character." if regions else "")
        self.regions_reset.setVisible(bool(regions) and panel.regions is not None)

    def _commit_regions(self, regions: list) -> None:
        if self.panel_id is not None:
            self.session.undo.push(cmd.SetPanelRegions(self.session, self.panel_id, regions))

    def _reset_regions(self) -> None:
        if self.panel_id is not None:
            self.session.undo.push(cmd.SetPanelRegions(self.session, self.panel_id, None))

    def edit_poses(self) -> PoseEditorDialog | None:
        """Open the pose editor on this panel; its poses change (one undo step) when it is accepted."""
        panel = self.session.project.panel_by_id(self.panel_id) if self.panel_id else None
        if panel is None:
            return None
        project = self.session.project
        size = panel.size or (project.settings.width, project.settings.height)
        version = panel.chosen_version
        backdrop = QImage.fromData(project.images.get(version.image, b"")) if version else None
        dialog = PoseEditorDialog(panel, project.panel_index(panel.id) + 1,
                                  panel.characters([c.name for c in project.characters]), project.images, size,
                                  backdrop, self)
        self.pose_dialog = dialog  # tests and the screenshot tool reach the open dialog here
        if dialog.exec() == QDialog.Accepted:
            new, images = dialog.values()
            command = cmd.SetPanelPoses(self.session, panel.id, new, images)
            if not command.changes_nothing:
                self.session.undo.push(command)
        return dialog

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


class MessagesView(QWidget):
    """The Messages dock: the list, and Clear."""

    def __init__(self, messages, parent: QWidget | None = None):
        super().__init__(parent)
        self.messages = messages
        self.list = QListView()
        self.list.setModel(messages)
        self.list.setWordWrap(True)
        self.list.setUniformItemSizes(False)
        self.list.setResizeMode(QListView.Adjust)
        self.list.setToolTip("Notes and problems of generation and export. Click one about a panel to go there.")
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(lambda: messages.clear())
        self.empty = QLabel("No messages.")
        self.empty.setStyleSheet("color: #777;")
        row = QHBoxLayout()
        row.addWidget(self.empty, 1)
        row.addWidget(self.clear_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.list, 1)
        layout.addLayout(row)
        for signal in (messages.rowsInserted, messages.modelReset):
            signal.connect(self._update)
        self._update()

    def _update(self, *args) -> None:
        count = self.messages.rowCount()
        self.empty.setText("No messages." if not count else f"{count} message(s)")
        self.clear_button.setEnabled(bool(count))
        if count:
            self.list.scrollToBottom()


class MainWindow(QMainWindow):
    def __init__(self, project: Project | None = None, path: str | None = None,
                 service: GenerationService | None = None, settings: QSettings | Preferences | None = None,
                 recovered_from: Path | None = None):
        """``recovered_from``: the autosave this (unsaved) project was recovered from."""
        super().__init__()
        self.prefs = settings if isinstance(settings, Preferences) else Preferences(settings, self)
        self.qsettings = self.prefs.qsettings
        self.machine: Machine | None = Machine.from_dict(self.prefs.get("machine"))
        self.session = ProjectSession(project or Project.example(), path, self)
        # a project made here and now (the example, a script, New) gets this computer's defaults
        self._fresh = path is None and recovered_from is None
        self.apply_defaults(self.session.project, full=self._fresh)
        self.service = service or GenerationService(self)
        self.jobs = JobQueue(self.service, self)
        self.messages = MessageList(self)
        self.messages.panel_label = self._panel_label
        self.recent = RecentFiles()
        self._autosave_path: Path | None = recovered_from

        self.timeline = PanelTimeline(self.session, self.jobs, self.messages)
        self.panel_view = PanelView(self.session)
        self.characters = CharacterSheet(self.session, self.prefs)
        self.settings_panel = SettingsPanel(self.session, self.prefs)
        self.canvas = LayoutCanvas(self.session)
        self.script_view = ScriptView(self.session)
        self.messages_view = MessagesView(self.messages)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.panel_view, "Panel")
        self.tabs.addTab(self.canvas, "Pages")
        self.animatic = AnimaticEditor(self.session)
        self.tabs.addTab(self.animatic, "Animatic")
        self.setCentralWidget(self.tabs)
        self.export_job = None
        self.active_models_dialog: ModelsDialog | None = None
        self.docks: dict[str, QDockWidget] = {}
        self._dock("Panels", self.timeline, Qt.BottomDockWidgetArea, "timeline")
        self._dock("Script", self.script_view, Qt.BottomDockWidgetArea, "script")
        self._dock("Messages", self.messages_view, Qt.BottomDockWidgetArea, "messages")
        self._dock("Characters", self.characters, Qt.LeftDockWidgetArea, "characters", scroll=True)
        self._dock("Generation", self.settings_panel, Qt.RightDockWidgetArea, "settings", scroll=True)
        self.splitDockWidget(self.docks["timeline"], self.docks["script"], Qt.Horizontal)
        self.tabifyDockWidget(self.docks["script"], self.docks["messages"])
        self.docks["script"].raise_()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(200)
        self.progress.setVisible(False)
        self.time_left = QLabel()
        self.statusBar().addPermanentWidget(self.time_left)
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
        if self.machine is not None:
            self.settings_panel.set_machine(self.machine)
        self._update_estimate()
        self.warm_up_job = self.jobs.submit(JobKind.WARM_UP, None, label="Warm-up").id

    # ---- construction ------------------------------------------------------------------
    def _dock(self, title: str, widget: QWidget, area, name: str, scroll: bool = False) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        if scroll:  # long forms scroll up and down (never sideways) instead of forcing a taller window
            area_widget = QScrollArea()
            area_widget.setWidgetResizable(True)
            area_widget.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
            area_widget.setFrameShape(QScrollArea.NoFrame)
            area_widget.setWidget(widget)
            widget = area_widget
        dock.setMinimumWidth(DOCK_MIN_WIDTH if area in (Qt.LeftDockWidgetArea, Qt.RightDockWidgetArea) else 0)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        self.docks[name] = dock
        return dock

    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(tip)
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
        a["export_animatic"] = self._action("Export &Animatic (MP4)…", self.export_animatic_dialog, "Ctrl+Shift+E",
                                            "Export the animatic as an MP4 video")
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
                                       "Ctrl+R", "Draw the selected panels again with the same seed")
        a["variation"] = self._action("New &Variation", lambda: self.new_variation(self.timeline.selected_ids()),
                                      "Ctrl+Shift+R", "Draw the selected panels with a new seed, keeping the old "
                                      "picture as a version")
        a["stop"] = self._action("&Stop", self.stop, "Esc", "Stop drawing after the current step")
        a["stop"].setEnabled(False)
        a["getting_started"] = self._action("&Getting Started", self.getting_started, QKeySequence.HelpContents)
        a["shortcuts"] = self._action("&Keyboard Shortcuts", self.keyboard_shortcuts)
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
        for key in ("save", "save_as", None, "import", "export_script", "export_comic", "export_animatic", None,
                    "quit"):
            file_menu.addSeparator() if key is None else file_menu.addAction(a[key])
        edit_menu = bar.addMenu("&Edit")
        for key in ("undo", "redo", None, "insert", "delete", None, "prefs"):
            edit_menu.addSeparator() if key is None else edit_menu.addAction(a[key])
        self.view_menu = bar.addMenu("&View")
        gen_menu = bar.addMenu("&Generate")
        for key in ("generate", "regenerate", "variation", None, "stop", None, "models"):
            gen_menu.addSeparator() if key is None else gen_menu.addAction(a[key])
        pages_menu = bar.addMenu("&Pages")
        pages_menu.addAction(a["layout"])
        pages_menu.addAction("Show Pages", lambda: self.tabs.setCurrentWidget(self.canvas))
        pages_menu.addAction(a["shape"])
        pages_menu.addAction(a["export_comic"])
        help_menu = bar.addMenu("&Help")
        for key in ("getting_started", "shortcuts", None, "about"):
            help_menu.addSeparator() if key is None else help_menu.addAction(a[key])
        tools = self.addToolBar("Main")
        tools.setObjectName("main-toolbar")
        for key in ("new", "open", "save", None, "undo", "redo", None, "generate", "stop"):
            tools.addSeparator() if key is None else tools.addAction(a[key])
        self.toolbars = [bar for bar in self.findChildren(QToolBar) if bar.parentWidget() is self]
        # every dock and toolbar can be shown and hidden here (a closed one comes back the same way)
        for name in ("characters", "settings", "timeline", "script", "messages"):
            action = self.docks[name].toggleViewAction()
            action.setStatusTip(f"Show or hide the {self.docks[name].windowTitle()} dock")
            self.view_menu.addAction(action)
        self.view_menu.addSeparator()
        for toolbar in self.toolbars:
            action = toolbar.toggleViewAction()
            action.setText(f"{toolbar.windowTitle() or 'Toolbar'} Toolbar")
            self.view_menu.addAction(action)

    def _connect(self) -> None:
        s = self.session
        s.undo.cleanChanged.connect(self._update_title)
        s.project_replaced.connect(self._project_replaced)
        s.settings_changed.connect(self._update_estimate)
        s.panels_changed.connect(self._update_estimate)
        self.timeline.selectionModel().currentChanged.connect(lambda cur, prev: self._panel_selected())
        self.timeline.panel_model.modelReset.connect(self._reselect)
        self.timeline.regenerate_requested.connect(self.regenerate)
        self.timeline.variation_requested.connect(self.new_variation)
        self.timeline.duplicate_requested.connect(lambda pid: s.undo.push(cmd.duplicate_panel(s, pid)))
        self.timeline.delete_requested.connect(self.delete_panels)
        self.timeline.insert_requested.connect(self.insert_panel)
        self.timeline.edit_requested.connect(self.edit_panel_text)
        self.characters.generate_references_requested.connect(self.generate_references)
        self.characters.panel_activated.connect(self.timeline.select_id)
        self.canvas.panel_activated.connect(self._show_panel)
        self.canvas.regenerate_requested.connect(self.regenerate)
        self.settings_panel.models_requested.connect(lambda: self.models_dialog())
        self.animatic.generate_transition_requested.connect(self.generate_transition)
        self.animatic.export_requested.connect(self.export_animatic_dialog)
        self.messages_view.list.clicked.connect(self._message_clicked)
        self.messages.rowsInserted.connect(self._count_messages)
        self.messages.modelReset.connect(self._count_messages)
        j = self.jobs
        j.changed.connect(self._job_changed)
        j.preview.connect(self._on_preview)
        j.image.connect(self._on_image)
        j.clip.connect(self._on_clip)
        j.note.connect(self._on_note)
        j.failed.connect(self._on_failed)
        j.ended.connect(self._on_ended)
        j.model_loading.connect(self._on_model_loading)
        j.model_ready.connect(self._on_model_ready)
        self.service.worker.machine_found.connect(self._on_machine)

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

    def _panel_label(self, panel_id: str | None) -> str:
        try:
            return f"Panel {self.session.project.panel_index(panel_id) + 1}" if panel_id else ""
        except KeyError:
            return "A deleted panel"

    def _message_clicked(self, index) -> None:
        panel_id = index.data(MessageList.PanelRole)
        if panel_id and self.session.project.panel_by_id(panel_id):
            self._show_panel(panel_id)

    def _count_messages(self, *args) -> None:
        count = self.messages.rowCount()
        self.docks["messages"].setWindowTitle(f"Messages ({count})" if count else "Messages")

    def _show_panel(self, panel_id: str) -> None:
        self.timeline.select_id(panel_id)
        self.tabs.setCurrentWidget(self.panel_view)

    # ---- files -----------------------------------------------------------------------------
    def _update_title(self) -> None:
        self.setWindowTitle(window_title(self.session.project.title, self.session.path, self.session.dirty))

    def _project_replaced(self) -> None:
        self.jobs.cancel()  # work for the project that was open belongs to it
        self.jobs.forget_panels()
        self.messages.clear()
        self._update_title()
        self._update_estimate()

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
            self._fresh = True

    def apply_defaults(self, project: Project, full: bool = True) -> None:
        """A project without a model gets the preferred one; a new project (``full``) also the preferred
        device and precision, and the size and steps that suit this computer."""
        st = project.settings
        st.model = st.model or self.prefs.get("default_model")
        if not full:
            return
        if st.device == "auto":  # a device the project names itself stays
            st.device = self.prefs.get("device")
        if st.dtype == "auto":
            st.dtype = self.prefs.get("dtype")
        if not any(p.versions for p in project.panels) and at_defaults(st, self.machine):
            apply_fitting(st, self.machine, self._family(st.model))

    def _family(self, model: str) -> str | None:
        return self.prefs.get("model_families").get(model) if model else None

    def _ask_open(self, title: str, filters: str, suggested: str = "") -> str:
        return ask_open_file(self, self.prefs, title, filters, suggested)

    def _ask_save(self, title: str, filters: str, suggested: str = "") -> str:
        return ask_save_file(self, self.prefs, title, filters, suggested)

    def open_dialog(self) -> None:
        path = self._ask_open("Open project", FILE_FILTER)
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
        self._fresh = False
        self.apply_defaults(self.session.project, full=False)
        self.recent.add(path)
        self._reselect()
        return True

    def save(self) -> bool:
        if not self.session.path:
            return self.save_as()
        return self._save_to(self.session.path)

    def save_as(self) -> bool:
        suggested = self.session.path or (self.session.project.title or "story").replace("/", "-") + ".storystudio"
        path = self._ask_save("Save project", FILE_FILTER, suggested)
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
        self._fresh = False
        if self._autosave_path is not None:
            discard_autosave(self._autosave_path)
            self._autosave_path = None
        self.statusBar().showMessage(f"Saved {path}", 4000)
        self._update_title()
        return True

    def import_script_dialog(self) -> None:
        path = self._ask_open("Import story script", SCRIPT_FILTER)
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
        self.apply_defaults(project)
        self.session.replace(project, None)
        self._fresh = True
        self._reselect()
        return True

    def export_script_dialog(self) -> None:
        path = self._ask_save("Export story script", SCRIPT_FILTER, "story.txt")
        if path:
            try:
                Path(path).write_text(self.session.project.export_script(), encoding="utf-8")
            except (OSError, ValueError) as exc:
                QMessageBox.warning(self, "StoryStudio", f"The story could not be exported: {exc}")

    def edit_panel_text(self, panel_id: str) -> bool:
        """Edit prompt and caption…: a dialog with the panel's words; OK changes them as one undo step."""
        panel = self.session.project.panel_by_id(panel_id)
        if panel is None:
            return False
        self.timeline.select_id(panel_id)
        dialog = PanelTextDialog(panel, self.session.project.panel_index(panel_id) + 1, self)
        if dialog.exec() != QDialog.Accepted:
            return False
        # a panel always shows something: an emptied prompt keeps the old one
        changes = [(f, v) for f, v in dialog.values().items() if getattr(panel, f) != v and (v or f != "prompt")]
        if not changes:
            return False
        self.session.undo.beginMacro("Edit panel")
        for field, value in changes:
            self.session.undo.push(cmd.SetPanelText(self.session, panel_id, field, value))
        self.session.undo.endMacro()
        return True

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
        models = self.prefs.get("video_models")
        models.setdefault("device", project.settings.device)
        models.setdefault("dtype", project.settings.dtype)
        work = TransitionJob(before, after, png(start), png(end), max(2, frames), size, prompts.get(before, ""),
                             prompts.get(after, ""), seed=project.settings.seed, backend=backend,
                             video_models=models, options=self._transition_options(backend))
        job = self.jobs.submit(JobKind.TRANSITION, work, [before], label="Transition")
        self.statusBar().showMessage("Making the transition…")
        return job.id

    def _transition_options(self, backend: str) -> dict:
        """Backend settings kept in the preferences (e.g. fewer steps for a quick look)."""
        if backend != "diffusion":
            return {}
        options = self.prefs.get("video_options")
        return {k: options[k] for k in ("steps", "native_frames", "width", "height", "guidance") if k in options}

    def _on_clip(self, job: Job, before, after, frames, parameters) -> None:
        if self.session.project.panel_by_id(before) is None:
            return
        self.session.undo.push(cmd.apply_clip(self.session, before, after, list(frames), parameters))
        self.statusBar().showMessage(f"Transition ready: {len(frames)} frames.", 6000)

    def export_animatic_dialog(self) -> None:
        if self.export_job is not None:
            QMessageBox.information(self, "StoryStudio", "An export is already running.")
            return
        if not self._check_before_export("animatic"):
            return
        base = Path(self.session.path).with_suffix("") if self.session.path else Path(
            (self.session.project.title or "animatic").replace("/", "-"))
        path = self._ask_save("Export Animatic", "MP4 video (*.mp4)", str(base) + ".mp4")
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
        if not self._check_before_export("comic"):
            return
        base = Path(self.session.path).with_suffix("") if self.session.path else Path(
            start_folder(self.prefs)) / (project.title or "comic").replace("/", "-")
        dialog = ExportOptionsDialog(project, base, self, fmt, self.prefs)
        if dialog.exec() != QDialog.Accepted:
            return
        self.start_export(dialog.options())

    def export_problems(self, what: str) -> list:
        """What the export would lack (``preflight``), also listed in Messages."""
        problems = comic_problems(self.session.project) if what == "comic" else animatic_problems(
            self.session.project)
        self.messages.clear(source="export")
        for problem in problems:
            severity = Severity.WARNING
            self.messages.add(Message(severity, problem.text, problem.panel, source="export"))
        return problems

    def _check_before_export(self, what: str) -> bool:
        """A short summary of what the export would lack; True to go on."""
        problems = self.export_problems(what)
        if not problems:
            return True
        missing = sum(1 for p in problems if p.kind == "no-picture")
        overflow = sum(1 for p in problems if p.kind == "overflow")
        parts = []
        if missing:
            parts.append(f"{missing} panel(s) have no picture yet")
        if overflow:
            parts.append(f"the text of {overflow} balloon(s) does not fit")
        summary = " and ".join(parts)
        self.statusBar().showMessage(f"Before the export: {summary} (see Messages).", 10000)
        answer = QMessageBox.question(
            self, "Export Animatic" if what == "animatic" else "Export Comic",
            f"Before you export: {summary}.\n\n" + "\n".join(f"• {p.text}" for p in problems[:8])
            + ("\n• …" if len(problems) > 8 else "") + "\n\nThe list is in Messages. Export anyway?",
            QMessageBox.Yes | QMessageBox.No, QMessageBox.Yes)
        return answer == QMessageBox.Yes

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
                self.messages.add(Message(Severity.ERROR, message, source="export"))
                QMessageBox.warning(self, self._export_title, message)
            return
        if hasattr(result, "pages"):
            text = f"Exported {result.pages} page(s) to {result.path}."
        else:
            text = f"Exported the animatic ({result.seconds:.1f} s, {result.frames} frames) to {result.path}."
        self.statusBar().showMessage(text, 10000)
        self.messages.add(Message(Severity.INFO, text, source="export-done"))
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
            # first generation: pick (and if needed download) a model; Use for This Project carries on with it
            self.models_dialog("To draw pictures StoryStudio needs a picture model. Pick one that is on this "
                               "computer and press <b>Use for This Project</b>, or download the one recommended "
                               "below (or import a .safetensors file or a model folder you have).", waiting=True)
            if not st.model:
                self.statusBar().showMessage("No model chosen: nothing was generated.", 6000)
                return None
        return ModelChoice(st.model, device=st.device, dtype=st.dtype, memory=self.prefs.get("memory"))

    def speed_table(self) -> SpeedTable:
        return SpeedTable(self.prefs.get("speeds"))

    def _speed(self, settings) -> tuple[Speed | None, str]:
        """The measured speed for this project's model, device and size, and the device in words."""
        machine = self.machine or Machine()
        device = machine.device_summary(settings.device)
        family = self._family(settings.model)
        if family is None:
            return None, device
        return self.speed_table().lookup(device, family, settings.width, settings.height), device

    def estimate(self, pictures: int) -> tuple[float | None, str]:
        """Seconds for ``pictures`` pictures with the project's settings (None before any measurement), and
        the sentence the app shows."""
        st = self.session.project.settings
        speed, device = self._speed(st)
        seconds = pictures * st.steps * speed.seconds_per_step if speed else None
        return seconds, estimate_text(pictures, st.steps, speed, device)

    def _update_estimate(self) -> None:
        _seconds, text = self.estimate(len(self.session.project.panels))
        self.settings_panel.set_estimate(f"All panels: {text}" if text else "")

    def _start(self, panel_ids: list[str] | None, kind: JobKind = JobKind.PANELS) -> int | None:
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
        targets = only if only is not None else [p.id for p in self.session.project.panels]
        seconds, text = self.estimate(len(targets))
        speed, _device = self._speed(settings)
        budget = tuple(int(self.prefs.get(name) * 2**30) for name in ("bank_ram_gib", "bank_disk_gib"))
        work = RenderJob(story, settings, choice, only=only, bank_budget=budget, compile=self.prefs.get("compile"),
                         ray_address=self.prefs.ray_address())
        job = self.jobs.submit(kind, work, targets,
                               label="References" if kind is JobKind.REFERENCES else "Generate",
                               estimate_s=seconds, stored_rate=speed.seconds_per_step if speed else None)
        self.statusBar().showMessage(f"Drawing: {text}" if text else "Drawing…", 15000)
        return job.id

    def generate_all(self) -> int | None:
        return self._start(None)

    def regenerate(self, ids: list[str]) -> int | None:
        """Draw panels again with their seed; a panel that would come out as a picture it already has is
        offered a new variation instead (nothing identical is added silently)."""
        if not ids:
            return None
        repeats = self.repeating(ids)
        if repeats:
            answer = self.ask_repeat([self.session.project.panel_index(pid) + 1 for pid in repeats])
            if answer == "variation":
                self._bump_variation(repeats)
            elif answer != "anyway":
                return None
        return self._start(ids)

    def ask_repeat(self, numbers: list[int]) -> str | None:
        """"variation", "anyway" or None (cancel), when panels would come out as pictures they have."""
        box = QMessageBox(QMessageBox.Question, "Regenerate",
                          f"Panel(s) {', '.join(map(str, numbers))} would come out exactly as a picture they already "
                          "have: the same words, seed and settings draw the same picture. Draw a new variation "
                          "(a new seed) instead?", parent=self)
        variation = box.addButton("New Variation", QMessageBox.AcceptRole)
        anyway = box.addButton("Regenerate Anyway", QMessageBox.DestructiveRole)
        box.addButton(QMessageBox.Cancel)
        box.setDefaultButton(variation)
        box.exec()
        return {variation: "variation", anyway: "anyway"}.get(box.clickedButton())

    def repeating(self, ids: list[str]) -> list[str]:
        """The panels among ``ids`` that the same seed would draw exactly as one of their versions."""
        project = self.session.project
        try:
            story = project.to_story()
        except (KeyError, ValueError):
            return []
        panels = [project.panel_by_id(pid) for pid in ids]
        return [p.id for p in panels if p is not None and would_repeat(p, story, project.settings)]

    def _bump_variation(self, ids: list[str]) -> None:
        self.session.undo.beginMacro("New variation")
        for pid in ids:
            self.session.undo.push(cmd.NewVariation(self.session, pid))
        self.session.undo.endMacro()

    def new_variation(self, ids: list[str]) -> int | None:
        if not ids:
            return None
        self._bump_variation(ids)
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
        return self._start(keys, kind=JobKind.REFERENCES)

    def stop(self) -> None:
        self.jobs.cancel()
        self.statusBar().showMessage("Stopping after the current step…", 3000)

    # ---- what the jobs say -----------------------------------------------------------------------
    def _job_changed(self, job: Job) -> None:
        busy = self.jobs.busy
        self.actions_by_name["stop"].setEnabled(busy)
        self.progress.setVisible(busy)
        self.time_left.setVisible(busy)
        running = next((j for j in self.jobs.active() if j.state is JobState.RUNNING and j.progress), None)
        if running is None:
            if not busy:
                self.time_left.setText("")
            return
        p = running.progress
        self.progress.setRange(0, 100)
        self.progress.setValue(round(100 * p.fraction))
        left = running.seconds_left()
        pictures = len(running.targets)
        what = (f"{pictures} picture{'s' if pictures != 1 else ''}, step {p.step} of {p.steps}"
                if running.draws_pictures else "transition")
        self.time_left.setText(f"Drawing {what} · {human_duration(left)} left" if left is not None
                               else f"Drawing {what} · measuring this computer's speed…")

    def _on_preview(self, job: Job, keys: list, preview: QImage) -> None:
        for key in keys:
            if key in job.targets:
                self.panel_view.show_preview(key, preview)

    def _on_image(self, job: Job, key: str, role: str, png: bytes, params: dict) -> None:
        if self.session.project.panel_by_id(key) is not None:
            self.session.undo.push(cmd.ApplyPanelImage(self.session, key, png, params))

    def _on_note(self, job: Job, text: str) -> None:
        panel, character = note_subject(text, job.panel_key_at)
        self.messages.add(Message(Severity.NOTE, text, panel, character, source="generation"))

    def _on_failed(self, job: Job) -> None:
        error = job.error
        panel = job.targets[0] if len(job.targets) == 1 else None
        self.messages.add(Message(Severity.ERROR, error.message, panel, source="generation"))
        if job.kind is JobKind.TRANSITION and error.kind is ErrorKind.MISSING_MODEL:
            # the same way as for pictures: the Models dialog gets what is missing
            answer = QMessageBox.question(self, "Video models", error.message + "\n\nOpen Models to download "
                                          "them? (Stable Diffusion 1.5, the AnimateDiff motion module, SparseCtrl "
                                          "RGB, the IP-Adapter for SD1.5 and its image encoder.)")
            if answer == QMessageBox.Yes:
                self.models_dialog("The generated transitions need the video models: download Stable Diffusion "
                                   "1.5, the AnimateDiff motion module, SparseCtrl RGB, the IP-Adapter for SD1.5 "
                                   "and its image encoder, then generate the transition again.")
            return
        if error.kind is ErrorKind.MISSING_MODEL and job.draws_pictures:
            answer = QMessageBox.question(self, "Models", error.message + "\n\nOpen Models to choose or "
                                          "download what is missing?")
            if answer == QMessageBox.Yes:
                self.models_dialog("A model these pictures need is not on this computer: a picture model (pick "
                                   "one that is here and press <b>Use for This Project</b>, or download one), or "
                                   "the pose guide (ControlNet) of the model's family for panels with a pose.")
            return
        if error.kind is ErrorKind.OUT_OF_MEMORY and job.draws_pictures:
            lower = {"full": "model-offload", "model-offload": "sequential-offload"}
            memory = self.prefs.get("memory")
            if memory in lower:
                answer = QMessageBox.question(
                    self, "StoryStudio", error.message + f"\n\nSwitch to the lower-memory setting ({lower[memory]}) "
                    "and generate these pictures again?")
                if answer == QMessageBox.Yes:
                    self.prefs.set("memory", lower[memory])
                    targets, kind = list(job.targets), job.kind
                    QTimer.singleShot(0, lambda: self._start(targets, kind))
                return
        QMessageBox.warning(self, "StoryStudio", error.message)

    def _on_ended(self, job: Job) -> None:
        if job.kind is JobKind.REFERENCES:
            for name, images in job.references.items():
                character = self.session.project.character_by_name(name)
                if character is not None and images:
                    self.session.undo.push(cmd.ApplyReferences(self.session, character.id, images))
        if job.state is not JobState.DONE:
            self.panel_view.drop_preview()  # the half-drawn picture of a stopped job is no picture
        self._learn_speed(job)
        self._job_changed(job)
        if job.kind is JobKind.WARM_UP:
            return
        summary = job_summary(job)
        if summary:
            self.messages.add(Message(Severity.INFO, summary, source="generation"))
            self.statusBar().showMessage(summary + (" See Messages." if job.notes or job.error else ""), 12000)

    def _learn_speed(self, job: Job) -> None:
        """Keep this job's measured seconds per picture-step for the next estimates."""
        rate = job.clock.rate(minimum_steps=4)
        arch, device = job.model.get("arch"), job.model.get("device")
        settings = getattr(job.params, "settings", None)
        if rate is None or not arch or not device or settings is None or job.state is JobState.FAILED:
            return
        table = self.speed_table()
        table.record(device, arch, settings.width, settings.height, rate)
        self.prefs.set("speeds", table.data)
        self._update_estimate()

    def _on_model_loading(self, job: Job, source: str) -> None:
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)  # busy: loading has no steps to count
        self.statusBar().showMessage(f"Loading the model {source}…")

    def _on_model_ready(self, job: Job, info: dict) -> None:
        self.progress.setRange(0, 100)
        text = f"{info.get('name')} ({str(info.get('arch', '')).upper()}) on {info.get('device')}"
        self.statusBar().showMessage(f"Model ready: {text}", 4000)
        self.model_label.setText(text)
        self.settings_panel.set_device_info(str(info.get("device", "")))
        families = self.prefs.get("model_families")
        if info.get("source") and info.get("arch") and families.get(info["source"]) != info["arch"]:
            families[info["source"]] = info["arch"]
            self.prefs.set("model_families", families)
            self._update_estimate()

    def _on_machine(self, info: dict) -> None:
        machine = Machine.from_dict(info)
        if machine is None:
            return
        first = self.machine is None
        self.machine = machine
        self.prefs.set("machine", machine.to_dict())
        self.settings_panel.set_machine(machine)
        self.settings_panel.set_device_info(machine.summary)
        project = self.session.project
        # the first start learns what this computer has only now: a project nobody touched yet follows it
        if first and self._fresh and self.session.undo.count() == 0 and not any(p.versions for p in project.panels) \
                and at_defaults(project.settings, None):
            fit = apply_fitting(project.settings, machine, self._family(project.settings.model))
            self.session.settings_changed.emit()
            self.statusBar().showMessage(f"New projects on this computer start at {fit.reason}.", 8000)
        self._update_estimate()

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
        PreferencesDialog(self.prefs, self, self.machine).exec()

    def use_model(self, model: str, family: str = "") -> None:
        """This project draws with ``model``: one undo step; size and steps still at a default follow the
        model's family (SD 1.5 at 512, SDXL at 768)."""
        st = self.session.project.settings
        fit = fitting(self.machine, family) if family else None
        follow = fit is not None and at_defaults(st, self.machine) and (st.width, st.height, st.steps) != (
            fit.width, fit.height, fit.steps)
        if model == st.model and not follow:
            return
        self.session.undo.beginMacro("Use model")
        if model != st.model:
            self.session.undo.push(cmd.SetSetting(self.session, "model", model))
        if follow:
            for field, value in (("width", fit.width), ("height", fit.height), ("steps", fit.steps)):
                if getattr(st, field) != value:
                    self.session.undo.push(cmd.SetSetting(self.session, field, value))
        self.session.undo.endMacro()
        if family:
            families = self.prefs.get("model_families")
            families[model] = family
            self.prefs.set("model_families", families)
        self._update_estimate()

    def models_dialog(self, intro: str = "", waiting: bool = False) -> ModelsDialog:
        """Open the Models dialog; a model picked there becomes this project's (one undo step). ``waiting``:
        a generation waits for it, so *Use for This Project* closes the dialog and the generation starts."""
        dialog = ModelsDialog(self, self.prefs, intro, close_on_use=waiting)
        chosen: dict[str, str] = {}
        dialog.model_family.connect(lambda model, family: chosen.__setitem__(model, family))
        dialog.model_chosen.connect(lambda model: self.use_model(model, chosen.get(model, "")))
        self.active_models_dialog = dialog
        dialog.exec()
        dialog.shutdown()
        self.active_models_dialog = None
        return dialog

    def getting_started(self) -> None:
        """Help ▸ Getting Started: the first steps, as the docs tell them."""
        dialog = QDialog(self)
        dialog.setWindowTitle("Getting Started")
        dialog.resize(640, 560)
        browser = QTextBrowser()
        browser.setOpenExternalLinks(True)
        browser.setMarkdown(resource("getting-started.md").read_text(encoding="utf-8"))
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(dialog.reject)
        layout = QVBoxLayout(dialog)
        layout.addWidget(browser)
        layout.addWidget(buttons)
        self.help_dialog = dialog
        dialog.show()

    def shortcut_list(self) -> list[tuple[str, str]]:
        """(keys, what they do) for every action of the window that has a shortcut."""
        rows = []
        for action in self.findChildren(QAction):
            keys = action.shortcut().toString(QKeySequence.NativeText)
            if keys and action.text():
                rows.append((keys, action.text().replace("&", "").rstrip("…").strip()))
        extra = [("Ctrl+Return", "Apply the script (in the Script dock)"),
                 ("Ctrl+wheel", "Zoom the page (on the Pages tab)"),
                 ("Double-click", "Edit a balloon's words (on the Pages tab)")]
        return sorted(set(rows)) + extra

    def keyboard_shortcuts(self) -> None:
        rows = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{t}</td></tr>" for k, t in self.shortcut_list())
        QMessageBox.information(self, "Keyboard Shortcuts", f"<table>{rows}</table>")

    def about(self) -> None:
        QMessageBox.about(self, "About StoryStudio",
                          f"StoryStudio {__version__}\n\nComics with the same characters in every panel, "
                          "drawn with StoryDiffusion's consistent self-attention on Stable Diffusion models.")

    # ---- window state ---------------------------------------------------------------------------
    def _restore_window_state(self) -> None:
        geometry = self.prefs.get("window_geometry")
        state = self.prefs.get("window_state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            screen = self.screen().availableGeometry() if self.screen() else None
            w, h = (1280, 800) if screen is None else (min(1280, screen.width()), min(800, screen.height()))
            self.resize(w, h)
            self.resizeDocks([self.docks["characters"], self.docks["settings"]], [330, 330], Qt.Horizontal)
            self.resizeDocks([self.docks["timeline"], self.docks["script"]], [760, 500], Qt.Horizontal)
        if isinstance(state, QByteArray):
            self.restoreState(state)

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.maybe_save():
            event.ignore()
            return
        self.prefs.set("window_geometry", self.saveGeometry())
        self.prefs.set("window_state", self.saveState())
        if self._autosave_path is not None:
            discard_autosave(self._autosave_path)
        self.autosave_timer.stop()
        self.animatic.shutdown()
        self.service.shutdown()
        event.accept()


def job_summary(job: Job) -> str:
    """One sentence after a job: what it drew, how long it took, what it left to read."""
    if not job.draws_pictures and job.kind is not JobKind.TRANSITION:
        return ""
    took = f" in {human_duration(job.seconds or 0).removeprefix('about ')}" if job.seconds else ""
    if job.kind is JobKind.TRANSITION:
        what = "Transition made" if job.state is JobState.DONE else "Transition not made"
        return what + (took if job.state is JobState.DONE else "") + "."
    drawn = len(job.drawn)
    missing = len([t for t in job.targets if t not in job.drawn])
    if job.state is JobState.DONE:
        text = f"Drew {drawn} panel(s){took}." if job.kind is JobKind.PANELS else f"Drew the references{took}."
    elif job.state is JobState.CANCELLED:
        text = f"Stopped: {drawn} panel(s) drawn, {missing} not."
    else:
        text = f"Failed: {drawn} panel(s) drawn, {missing} not ({job.error.message if job.error else 'no reason'})."
    if job.notes:
        text += f" {len(job.notes)} note(s) to read."
    return text


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
        f"StoryStudio closed without saving \"{info.title}\" (autosaved {readable_time(info.saved_at)}). "
        "Recover the autosaved copy?",
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
