"""The Animatic tab: a timeline strip, the shot or cut editor, and a preview player.

The strip shows each panel as wide as it lasts and each transition between
them; clicking one opens its editor: a panel's duration, caption and camera
move (drawn as two rectangles on the picture, start and end, that can be
dragged and resized), or a cut's kind and length and its generated clip. The
player plays the animatic in the window; its frames are rendered on a thread
of their own. Every edit is one undo step.
"""

from __future__ import annotations

import copy
import threading

from PySide6.QtCore import QObject, QPointF, QRectF, QSignalBlocker, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..export.animatic import AnimaticRenderer
from ..project.animatic import (
    CAMERA_PRESETS,
    CUT_KINDS,
    EASINGS,
    FITS,
    FRAME_RATES,
    SIZE_PRESETS,
    Animatic,
    AnimaticError,
    CameraMove,
    Segment,
    Shot,
    auto_duration,
    shot_duration,
)
from .commands import EditAnimatic, SetPanelDuration
from .flow_layout import FlowRow
from .session import ProjectSession
from .threads import WorkerThread

PREVIEW_WIDTH = 640
START_COLOUR = QColor(40, 170, 90)
END_COLOUR = QColor(220, 60, 60)


# ---------------------------------------------------------------------------
# frames off the GUI thread


class FrameWorker(QObject):
    """Renders preview frames in its own thread; only the newest request is drawn."""

    frame_ready = Signal(int, int, QImage)  # generation, frame index, picture

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._renderer: AnimaticRenderer | None = None
        self._generation = 0
        self._wanted: int | None = None

    def set_renderer(self, renderer: AnimaticRenderer | None, generation: int) -> None:
        with self._lock:  # called from the GUI thread; the renderer is a snapshot the GUI no longer touches
            self._renderer, self._generation = renderer, generation

    def want(self, index: int) -> None:
        with self._lock:
            self._wanted = index

    @Slot()
    def draw(self) -> None:
        with self._lock:
            renderer, generation, index, self._wanted = self._renderer, self._generation, self._wanted, None
        if renderer is None or index is None or not 0 <= index < renderer.frame_count:
            return
        # the very frame the MP4 export writes, at preview size (the renderer never paints on it again)
        self.frame_ready.emit(generation, index, renderer.frame(index))


class PreviewPlayer(QWidget):
    """Plays the animatic at its frame rate, at preview size; frames come from a FrameWorker thread."""

    request = Signal()
    position_changed = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.picture = QLabel("No animatic yet")
        self.picture.setAlignment(Qt.AlignCenter)
        self.picture.setMinimumSize(160, 90)
        self.picture.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Ignored)
        self.picture.setStyleSheet("background: #111; color: #bbb;")
        self.play_button = QPushButton("Pause")
        self.play_button.setCheckable(True)
        # as wide as its longer word, and never squeezed below it
        self.play_button.setFixedWidth(self.play_button.sizeHint().width())
        self.play_button.setText("Play")
        self.play_button.toggled.connect(self._toggle)
        self.slider = QSlider(Qt.Horizontal)
        self.slider.valueChanged.connect(self.seek)
        self.time_label = QLabel("00:00.0 / 00:00.0")
        self.time_label.setMinimumWidth(self.time_label.sizeHint().width())  # the clock never loses digits
        self.time_label.setText("0:00.0 / 0:00.0")
        self.slider.setMinimumWidth(self.slider.sizeHint().width())
        row = QHBoxLayout()  # the scrub bar gets a row of its own: a narrow player never squeezes it
        row.addWidget(self.play_button)
        row.addStretch(1)
        row.addWidget(self.time_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.picture, 1)
        layout.addWidget(self.slider)
        layout.addLayout(row)
        self.fps = 24
        self.frames = 0
        self.position = 0
        self.generation = 0
        self.shown: tuple[int, int] | None = None  # (generation, frame) on screen
        self.last_image: QImage | None = None
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._tick)
        self.worker = FrameWorker()
        self.thread = WorkerThread(self.worker, "StoryStudio preview")
        self.request.connect(self.worker.draw)
        self.worker.frame_ready.connect(self._show)

    def set_renderer(self, renderer: AnimaticRenderer | None) -> None:
        self.generation += 1
        self.worker.set_renderer(renderer, self.generation)
        self.frames = renderer.frame_count if renderer else 0
        self.fps = renderer.animatic.fps if renderer else 24
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, self.frames - 1))
        self.position = min(self.position, max(0, self.frames - 1))
        self.slider.setValue(self.position)
        self.slider.blockSignals(False)
        self.timer.setInterval(round(1000 / self.fps))
        self._update_time()
        if renderer is None:
            self.picture.setText("No animatic yet")
            self.play_button.setChecked(False)
        else:
            self._ask(self.position)

    def seek(self, index: int) -> None:
        self.position = max(0, min(index, self.frames - 1))
        self._update_time()
        self._ask(self.position)
        self.position_changed.emit(self.position)

    def _ask(self, index: int) -> None:
        self.worker.want(index)
        self.request.emit()

    def _toggle(self, playing: bool) -> None:
        self.play_button.setText("Pause" if playing else "Play")
        if playing:
            if self.position >= self.frames - 1:
                self.position = 0
            self.timer.start()
        else:
            self.timer.stop()

    def _tick(self) -> None:
        if self.position >= self.frames - 1:
            self.play_button.setChecked(False)
            return
        # a frame that is not drawn in time is skipped, so the preview keeps the animatic's pace
        self.position += 1
        self.slider.blockSignals(True)
        self.slider.setValue(self.position)
        self.slider.blockSignals(False)
        self._update_time()
        self._ask(self.position)
        self.position_changed.emit(self.position)

    @Slot(int, int, QImage)
    def _show(self, generation: int, index: int, image: QImage) -> None:
        if generation != self.generation:
            return
        self.shown = (generation, index)
        self.last_image = image
        self.picture.setPixmap(QPixmap.fromImage(image).scaled(self.picture.size(), Qt.KeepAspectRatio,
                                                               Qt.SmoothTransformation))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.last_image is not None:
            self.picture.setPixmap(QPixmap.fromImage(self.last_image).scaled(
                self.picture.size(), Qt.KeepAspectRatio, Qt.SmoothTransformation))

    def _update_time(self) -> None:
        def clock(frames: int) -> str:
            seconds = frames / self.fps
            return f"{int(seconds // 60)}:{seconds % 60:04.1f}"
        self.time_label.setText(f"{clock(self.position)} / {clock(self.frames)}")

    def shutdown(self) -> None:
        self.timer.stop()
        self.thread.stop(5000)


# ---------------------------------------------------------------------------
# the strip


class TimelineStrip(QWidget):
    """Panels as blocks as wide as they last, transitions between them; a click selects one."""

    selected = Signal(str, str)  # "shot" | "cut", panel id

    def __init__(self, editor: AnimaticEditor):
        super().__init__()
        self.editor = editor
        self.segments: list[Segment] = []
        self.playhead = 0
        self.selection: tuple[str, str] | None = None
        self.setMinimumHeight(92)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.thumbs: dict[str, QPixmap] = {}

    def set_segments(self, segments: list[Segment]) -> None:
        self.segments = segments
        self.update()

    def _scale(self) -> float:
        total = self.segments[-1].first + self.segments[-1].frames if self.segments else 1
        return (self.width() - 8) / max(total, 1)

    def block_rect(self, seg: Segment) -> QRectF:
        s = self._scale()
        return QRectF(4 + seg.first * s, 6, max(seg.frames * s, 3), self.height() - 22)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(45, 47, 52))
        numbers = self.editor.numbers()
        for seg in self.segments:
            rect = self.block_rect(seg)
            chosen = self.selection == ("shot" if seg.kind == "hold" else "cut", seg.panel)
            if seg.kind == "hold":
                thumb = self.editor.thumbnail(seg.panel)
                if thumb is not None:
                    painter.drawPixmap(rect.toRect(), thumb)
                else:
                    painter.fillRect(rect, QColor(90, 92, 100))
                painter.setPen(QPen(QColor(40, 110, 220) if chosen else QColor(20, 20, 20), 3 if chosen else 1))
                painter.drawRect(rect)
                painter.setPen(Qt.white)
                label = f"{numbers.get(seg.panel, '?')}  {seg.end - seg.start:.1f}s"
                painter.drawText(QRectF(rect.x(), rect.bottom(), rect.width(), 16), Qt.AlignLeft, label)
            else:
                colour = QColor(230, 180, 40) if seg.cut and seg.cut.kind == "generated" else QColor(160, 160, 170)
                painter.fillRect(rect.adjusted(0, 14, 0, -14), colour)
                if chosen:
                    painter.setPen(QPen(QColor(40, 110, 220), 3))
                    painter.drawRect(rect.adjusted(0, 10, 0, -10))
        x = 4 + self.playhead * self._scale()
        painter.setPen(QPen(QColor(255, 80, 80), 2))
        painter.drawLine(QPointF(x, 0), QPointF(x, self.height()))
        painter.end()

    def mousePressEvent(self, event) -> None:
        pos = event.position()
        for seg in self.segments:
            if self.block_rect(seg).adjusted(-2, 0, 2, 0).contains(pos):
                kind = "shot" if seg.kind == "hold" else "cut"
                self.selection = (kind, seg.panel)
                self.selected.emit(kind, seg.panel)
                self.editor.player.seek(seg.first)
                self.update()
                return

    def sizeHint(self) -> QSize:
        return QSize(600, 92)


# ---------------------------------------------------------------------------
# camera rectangles on the picture


class CameraRect(QGraphicsRectItem):
    """The start or end rectangle of a camera move: drag it, or drag its bottom-right corner to resize."""

    def __init__(self, editor: CameraEditor, which: str, colour: QColor):
        super().__init__()
        self.editor, self.which = editor, which
        self.setPen(QPen(colour, 0))
        self.setBrush(QColor(colour.red(), colour.green(), colour.blue(), 40))
        self.setFlag(QGraphicsItem.ItemIsSelectable, True)
        self.setAcceptHoverEvents(True)
        self.mode = ""
        self.start_rect = QRectF()
        self.press = QPointF()

    def mousePressEvent(self, event) -> None:
        r = self.rect()
        corner = QRectF(r.right() - 0.06 * self.editor.side, r.bottom() - 0.06 * self.editor.side,
                        0.12 * self.editor.side, 0.12 * self.editor.side)
        self.mode = "resize" if corner.contains(event.pos()) else "move"
        self.start_rect, self.press = QRectF(r), event.scenePos()
        event.accept()

    def mouseMoveEvent(self, event) -> None:
        d = event.scenePos() - self.press
        r = QRectF(self.start_rect)
        bounds = self.editor.bounds
        if self.mode == "move":
            r.translate(d)
            r.moveLeft(min(max(r.left(), bounds.left()), bounds.right() - r.width()))
            r.moveTop(min(max(r.top(), bounds.top()), bounds.bottom() - r.height()))
        else:
            r.setRight(min(max(r.left() + 0.1 * bounds.width(), r.right() + d.x()), bounds.right()))
            r.setBottom(min(max(r.top() + 0.1 * bounds.height(), r.bottom() + d.y()), bounds.bottom()))
        self.setRect(r)

    def mouseReleaseEvent(self, event) -> None:
        if self.mode:
            self.mode = ""
            self.editor.rect_edited(self.which, self.rect())


class CameraEditor(QGraphicsView):
    """The panel's picture with its camera move's start (green) and end (red) rectangles."""

    def __init__(self, tab: AnimaticEditor):
        super().__init__()
        self.tab = tab
        self.scene_ = QGraphicsScene(self)
        self.setScene(self.scene_)
        self.setRenderHints(QPainter.Antialiasing | QPainter.SmoothPixmapTransform)
        self.setMinimumSize(160, 100)
        self.side = 100.0
        self.bounds = QRectF()
        self.panel_id: str | None = None
        self.start_item: CameraRect | None = None
        self.end_item: CameraRect | None = None

    def show_shot(self, panel_id: str, picture: QPixmap | None, move: CameraMove) -> None:
        self.panel_id = panel_id
        self.scene_.clear()
        if picture is None or picture.isNull():
            picture = QPixmap(320, 180)
            picture.fill(QColor(60, 62, 70))
        item = QGraphicsPixmapItem(picture)
        self.scene_.addItem(item)
        self.bounds = QRectF(0, 0, picture.width(), picture.height())
        self.side = min(picture.width(), picture.height())
        self.start_item = CameraRect(self, "start", START_COLOUR)
        self.end_item = CameraRect(self, "end", END_COLOUR)
        for rect_item, box in ((self.start_item, move.start), (self.end_item, move.end)):
            x, y, w, h = box
            rect_item.setRect(QRectF(x * self.bounds.width(), y * self.bounds.height(), w * self.bounds.width(),
                                     h * self.bounds.height()))
            self.scene_.addItem(rect_item)
        self.setSceneRect(self.bounds)
        self.fitInView(self.bounds, Qt.KeepAspectRatio)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if not self.bounds.isEmpty():
            self.fitInView(self.bounds, Qt.KeepAspectRatio)

    def rect_edited(self, which: str, rect: QRectF) -> None:
        b = self.bounds
        box = (max(0.0, rect.x() / b.width()), max(0.0, rect.y() / b.height()),
               min(1.0, rect.width() / b.width()), min(1.0, rect.height() / b.height()))
        box = (box[0], box[1], min(box[2], 1 - box[0]), min(box[3], 1 - box[1]))
        self.tab.set_camera_box(self.panel_id, which, tuple(round(v, 4) for v in box))


# ---------------------------------------------------------------------------
# the tab


def _form(widget: QWidget) -> QFormLayout:
    """A form whose fields go under their labels when the column is too narrow for both."""
    form = QFormLayout(widget)
    form.setRowWrapPolicy(QFormLayout.WrapLongRows)
    form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
    return form


def _scrolling(widget: QWidget) -> QScrollArea:
    """Room to scroll down in a window smaller than the app is made for; never sideways."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    area.setWidget(widget)
    return area


class AnimaticEditor(QWidget):
    """Settings, strip, editor and player for the project's animatic."""

    generate_transition_requested = Signal(str, str)  # panel before, backend ("blend" | "diffusion")
    export_requested = Signal()

    def __init__(self, session: ProjectSession, parent=None):
        super().__init__(parent)
        self.session = session
        self.renderer: AnimaticRenderer | None = None
        self.current: tuple[str, str] | None = None  # ("shot" | "cut", panel id)
        self._thumbs: dict[str, QPixmap] = {}
        self._pictures: dict[str, QPixmap] = {}
        self.player = PreviewPlayer()
        self.strip = TimelineStrip(self)
        self.camera = CameraEditor(self)
        self.problem = QLabel()
        self.problem.setStyleSheet("color: #b3261e;")
        self.problem.setWordWrap(True)
        self._build_settings()
        self._build_editors()
        # the left column: what is picked in the strip (a shot or a cut), and the video's settings
        self.side = QTabWidget()
        self.side.setDocumentMode(True)
        self.side.addTab(_scrolling(self.editors), "Shot")
        self.side.addTab(_scrolling(self.settings_box), "Video")
        self.side.setMinimumWidth(100)
        self.player.setMinimumWidth(100)  # both squeeze in a narrow window instead of widening it
        splitter = QSplitter()
        splitter.addWidget(self.side)
        splitter.addWidget(self.player)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.problem)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.strip)
        self.strip.selected.connect(self._picked)
        self.player.position_changed.connect(self._playhead)
        self.rebuild_timer = QTimer(self)
        self.rebuild_timer.setSingleShot(True)
        self.rebuild_timer.setInterval(150)
        self.rebuild_timer.timeout.connect(self.rebuild)
        for signal in (session.animatic_changed, session.panels_changed, session.project_replaced,
                       session.panel_changed):
            signal.connect(self._changed)
        self.rebuild()

    # ---- building --------------------------------------------------------------------------
    def _build_settings(self) -> None:
        self.settings_box = QWidget()
        form = _form(self.settings_box)
        self.fps_box = QComboBox()
        for fps in FRAME_RATES:
            self.fps_box.addItem(f"{fps} fps", fps)
        self.fps_box.activated.connect(lambda _: self.set_setting("fps", self.fps_box.currentData()))
        self.size_box = QComboBox()
        for key, (_, _, label) in SIZE_PRESETS.items():
            self.size_box.addItem(label, key)
        self.size_box.activated.connect(lambda _: self.set_setting("size", self.size_box.currentData()))
        self.fit_box = QComboBox()
        for key, label in FITS.items():
            self.fit_box.addItem(label, key)
        self.fit_box.activated.connect(lambda _: self.set_setting("fit", self.fit_box.currentData()))
        for box in (self.size_box, self.fit_box):
            box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(12)
        self.audio_button = QPushButton("Sound…")
        self.audio_button.setToolTip("Choose a sound file to play under the animatic")
        self.audio_button.clicked.connect(self.choose_audio)
        self.audio_clear = QPushButton("No Sound")
        self.audio_clear.setToolTip("Take the sound file out of the animatic")
        self.audio_clear.clicked.connect(lambda: self.set_setting("audio", None))
        self.burn_box = QCheckBox("Captions in picture")
        self.burn_box.toggled.connect(lambda on: self.set_setting("burn_captions", on))
        self.soft_box = QCheckBox("Subtitle track")
        self.soft_box.toggled.connect(lambda on: self.set_setting("soft_subtitles", on))
        self.quality_spin = QSpinBox()
        self.quality_spin.setRange(14, 35)
        self.quality_spin.setPrefix("quality ")
        self.quality_spin.setToolTip("H.264 constant rate factor: lower is sharper and larger (20 is a good "
                                     "default)")
        self.quality_spin.editingFinished.connect(lambda: self.set_setting("quality", self.quality_spin.value()))
        self.export_button = QPushButton("Export MP4…")
        self.export_button.setToolTip("Write the animatic as an MP4 video (File ▸ Export Animatic does the same)")
        self.export_button.clicked.connect(self.export_requested.emit)
        form.addRow("Size", self.size_box)
        form.addRow("Fit", self.fit_box)
        form.addRow("Frames", FlowRow(self.fps_box, self.quality_spin))
        form.addRow("Sound", FlowRow(self.audio_button, self.audio_clear))
        form.addRow("Words", FlowRow(self.burn_box, self.soft_box))
        form.addRow(self.export_button)

    def _build_editors(self) -> None:
        self.editors = QStackedWidget()
        note = QLabel("Click a panel or a transition in the strip below to edit it.")
        note.setWordWrap(True)
        note.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        self.editors.addWidget(note)
        shot = QWidget()
        form = _form(shot)
        self.shot_title = QLabel()
        self.shot_title.setWordWrap(True)
        self.duration_spin = QDoubleSpinBox()
        self.duration_spin.setRange(0.5, 60)
        self.duration_spin.setSingleStep(0.25)
        self.duration_spin.setSuffix(" s")
        self.duration_spin.valueChanged.connect(self._duration_changed)
        self.auto_box = QCheckBox("Automatic")
        self.auto_box.setToolTip("Long enough to read its caption and dialogue")
        self.auto_box.toggled.connect(self._auto_toggled)
        self.caption_box = QCheckBox("Show its caption and dialogue")
        self.caption_box.toggled.connect(lambda on: self.edit_shot("Show caption", caption=on))
        self.preset_box = QComboBox()
        for name in CAMERA_PRESETS:
            self.preset_box.addItem(name.replace("-", " ").capitalize(), name)
        self.preset_box.addItem("Custom (drag the rectangles)", "custom")
        self.preset_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.preset_box.setMinimumContentsLength(9)
        self.preset_box.setToolTip("The camera move during the panel's hold")
        self.preset_box.activated.connect(self._preset_chosen)
        self.easing_box = QComboBox()
        for easing in EASINGS:
            self.easing_box.addItem(easing.replace("-", " "), easing)
        self.easing_box.setToolTip("How the camera speeds up and slows down")
        self.easing_box.activated.connect(lambda _: self.set_easing(self.easing_box.currentData()))
        form.addRow(self.shot_title)
        form.addRow("Duration", FlowRow(self.duration_spin, self.auto_box))
        form.addRow(self.caption_box)
        form.addRow("Camera", FlowRow(self.preset_box, self.easing_box))
        hint = QLabel("<span style='color:#28aa5a'>Green</span>: start, <span style='color:#dc3c3c'>red</span>: "
                      "end. Drag one, or its corner.")
        hint.setWordWrap(True)
        hint.setToolTip("Where the camera starts (green) and ends (red): drag a rectangle to move it, or its "
                        "bottom-right corner to resize it")
        form.addRow(hint)
        form.addRow(self.camera)
        self.editors.addWidget(shot)

        cut = QWidget()
        cform = _form(cut)
        self.cut_title = QLabel()
        self.cut_title.setWordWrap(True)
        self.kind_box = QComboBox()
        for key, label in CUT_KINDS.items():
            self.kind_box.addItem(label, key)
        self.kind_box.activated.connect(lambda _: self.edit_cut("Change transition", kind=self.kind_box.currentData()))
        self.cut_spin = QDoubleSpinBox()
        self.cut_spin.setRange(0.1, 10)
        self.cut_spin.setSingleStep(0.1)
        self.cut_spin.setSuffix(" s")
        self.cut_spin.editingFinished.connect(
            lambda: self.edit_cut("Change transition length", duration=self.cut_spin.value()))
        self.clip_label = QLabel()
        self.clip_label.setWordWrap(True)
        self.backend_box = QComboBox()
        self.backend_box.addItem("Blend (no model, always available)", "blend")
        self.backend_box.addItem("AnimateDiff + SparseCtrl (video models)", "diffusion")
        for box in (self.kind_box, self.backend_box):
            box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(10)
        self.generate_button = QPushButton("Generate Transition")
        self.generate_button.clicked.connect(
            lambda: self.current and self.generate_transition_requested.emit(self.current[1],
                                                                             self.backend_box.currentData()))
        cform.addRow(self.cut_title)
        cform.addRow("Transition", self.kind_box)
        cform.addRow("Length", self.cut_spin)
        cform.addRow("Made with", self.backend_box)
        cform.addRow(self.generate_button)
        cform.addRow(self.clip_label)
        self.editors.addWidget(cut)

    # ---- data --------------------------------------------------------------------------------
    @property
    def animatic(self) -> Animatic:
        return self.session.project.animatic

    def numbers(self) -> dict[str, int]:
        return {p.id: i for i, p in enumerate(self.session.project.panels, 1)}

    def picture(self, panel_id: str) -> QPixmap | None:
        if panel_id not in self._pictures:
            panel = self.session.project.panel_by_id(panel_id)
            version = panel.chosen_version if panel else None
            data = self.session.project.images.get(version.image) if version else None
            self._pictures[panel_id] = QPixmap.fromImage(QImage.fromData(data)) if data else QPixmap()
        pix = self._pictures[panel_id]
        return None if pix.isNull() else pix

    def thumbnail(self, panel_id: str) -> QPixmap | None:
        if panel_id not in self._thumbs:
            pix = self.picture(panel_id)
            self._thumbs[panel_id] = pix.scaled(96, 64, Qt.KeepAspectRatioByExpanding, Qt.SmoothTransformation) \
                if pix else QPixmap()
        thumb = self._thumbs[panel_id]
        return None if thumb.isNull() else thumb

    def _changed(self, *args) -> None:
        if args and isinstance(args[0], str):  # one panel changed: its picture may be new
            self._pictures.pop(args[0], None)
            self._thumbs.pop(args[0], None)
        else:
            self._pictures.clear()
            self._thumbs.clear()
        self.rebuild_timer.start()

    def rebuild(self) -> None:
        """A fresh renderer from a snapshot of the project, for the strip and the player."""
        project = copy.deepcopy(self.session.project)
        try:
            self.renderer = AnimaticRenderer(project, size=self._preview_size(project.animatic)) \
                if project.panels else None
            self.problem.setText("" if project.panels else "The story has no panels yet.")
        except AnimaticError as exc:
            self.renderer = None
            self.problem.setText(f"The animatic cannot play: {exc}.")
        self.player.set_renderer(self.renderer)
        self.strip.set_segments(self.renderer.segments if self.renderer else [])
        self._sync()

    @staticmethod
    def _preview_size(animatic: Animatic) -> tuple[int, int]:
        w, h = animatic.resolution
        scale = min(1.0, PREVIEW_WIDTH / max(w, h))
        return (max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2))

    def _playhead(self, index: int) -> None:
        self.strip.playhead = index
        self.strip.update()

    def _sync(self) -> None:
        a = self.animatic
        with QSignalBlocker(self.fps_box), QSignalBlocker(self.size_box), QSignalBlocker(self.fit_box), \
                QSignalBlocker(self.burn_box), QSignalBlocker(self.soft_box), QSignalBlocker(self.quality_spin):
            for box, value in ((self.fps_box, a.fps), (self.size_box, a.size), (self.fit_box, a.fit)):
                box.setCurrentIndex(max(0, box.findData(value)))
            self.burn_box.setChecked(a.burn_captions)
            self.soft_box.setChecked(a.soft_subtitles)
            self.quality_spin.setValue(a.quality)
        self.audio_button.setText(f"Sound: {a.audio.rsplit('/', 1)[-1]}" if a.audio else "Sound…")
        self.audio_clear.setEnabled(bool(a.audio))
        if self.current is not None and self.session.project.panel_by_id(self.current[1]) is None:
            self.current = None
        if self.current is None:
            self.editors.setCurrentIndex(0)
        else:
            self.select(*self.current)

    def _picked(self, kind: str, panel_id: str) -> None:
        """A click in the strip: show that shot's or cut's editor."""
        self.select(kind, panel_id)
        self.side.setCurrentIndex(0)

    def select(self, kind: str, panel_id: str) -> None:
        self.current = (kind, panel_id)
        self.strip.selection = self.current
        self.strip.update()
        panel = self.session.project.panel_by_id(panel_id)
        if panel is None:
            return
        number = self.numbers()[panel_id]
        self.side.setTabText(0, "Shot" if kind == "shot" else "Transition")
        if kind == "shot":
            self.editors.setCurrentIndex(1)
            shot = self.animatic.shot(panel_id)
            self.shot_title.setText(f"<b>Panel {number}</b>: {panel.caption or panel.prompt[:60]}")
            with QSignalBlocker(self.duration_spin), QSignalBlocker(self.auto_box), \
                    QSignalBlocker(self.caption_box), QSignalBlocker(self.preset_box), QSignalBlocker(self.easing_box):
                self.duration_spin.setValue(shot_duration(panel))
                self.auto_box.setChecked(panel.duration is None)
                self.caption_box.setChecked(shot.caption)
                self.preset_box.setCurrentIndex(self.preset_box.findData(shot.camera.preset_name))
                self.easing_box.setCurrentIndex(self.easing_box.findData(shot.camera.easing))
            self.duration_spin.setEnabled(panel.duration is not None)
            self.camera.show_shot(panel_id, self.picture(panel_id), shot.camera)
        else:
            self.editors.setCurrentIndex(2)
            order = [p.id for p in self.session.project.panels]
            index = order.index(panel_id)
            after = order[index + 1] if index + 1 < len(order) else None
            cut = self.animatic.cut(panel_id)
            self.cut_title.setText(f"<b>After panel {number}</b>" + (f", before panel {number + 1}" if after else ""))
            with QSignalBlocker(self.kind_box), QSignalBlocker(self.cut_spin):
                self.kind_box.setCurrentIndex(self.kind_box.findData(cut.kind))
                self.cut_spin.setValue(max(0.1, cut.duration))
            if cut.clip and after and cut.clip_fits(panel_id, after):
                p = cut.clip_parameters
                self.clip_label.setText(f"Clip: {len(cut.clip)} frames made with {p.get('backend', '?')}.")
            elif cut.clip:
                self.clip_label.setText("The clip was made for other panels (the story was reordered): it plays "
                                        "as a crossfade until you generate it again.")
            else:
                self.clip_label.setText("No clip yet: a generated transition plays as a crossfade until it is made.")
            self.generate_button.setEnabled(after is not None)

    # ---- edits (each one undo step) -----------------------------------------------------------
    def _push(self, text: str, change, merge: str = "") -> None:
        command = EditAnimatic(self.session, text, change, merge)
        if not command.changes_nothing:
            self.session.undo.push(command)
            # the editor shows the change at once, but not from inside the event of an item it would replace
            QTimer.singleShot(0, self._sync)

    def set_setting(self, name: str, value) -> None:
        self._push(f"Change animatic {name.replace('_', ' ')}", lambda a: setattr(a, name, value))

    def choose_audio(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Sound for the animatic", "",
                                              "Sound (*.wav *.mp3 *.ogg *.flac *.m4a *.aac);;All files (*)")
        if path:
            self.set_audio(path)

    def set_audio(self, path: str) -> None:
        from ..export.animatic import VideoExportError, check_audio

        try:
            check_audio(path)
        except VideoExportError as exc:
            self.problem.setText(str(exc)[0].upper() + str(exc)[1:])
            return
        self.set_setting("audio", path)

    def edit_shot(self, text: str, merge: str = "", **fields) -> None:
        if not self.current or self.current[0] != "shot":
            return
        panel_id = self.current[1]

        def change(a: Animatic) -> None:
            shot = a.shots.get(panel_id) or Shot()
            for key, value in fields.items():
                setattr(shot, key, value)
            a.shots[panel_id] = shot
        self._push(text, change, merge)

    def set_camera_box(self, panel_id: str | None, which: str, box) -> None:
        if panel_id is None:
            return
        move = copy.deepcopy(self.animatic.shot(panel_id).camera)
        setattr(move, which, box)
        self.current = ("shot", panel_id)
        self.edit_shot("Move camera", camera=move)

    def _preset_chosen(self, _index: int) -> None:
        name = self.preset_box.currentData()
        if name == "custom" or not self.current:
            return
        self.edit_shot("Camera move", camera=CameraMove.preset(name, self.easing_box.currentData()))

    def set_easing(self, easing: str) -> None:
        if not self.current:
            return
        move = copy.deepcopy(self.animatic.shot(self.current[1]).camera)
        move.easing = easing
        self.edit_shot("Camera easing", camera=move)

    def _duration_changed(self, value: float) -> None:
        if self.current and self.current[0] == "shot" and not self.auto_box.isChecked():
            self.session.undo.push(SetPanelDuration(self.session, self.current[1], round(value, 2)))

    def _auto_toggled(self, automatic: bool) -> None:
        if not self.current or self.current[0] != "shot":
            return
        panel = self.session.panel(self.current[1])
        self.session.undo.push(SetPanelDuration(self.session, panel.id,
                                                None if automatic else auto_duration(panel), merge=False))
        self.duration_spin.setEnabled(not automatic)

    def edit_cut(self, text: str, **fields) -> None:
        if not self.current or self.current[0] != "cut":
            return
        panel_id = self.current[1]

        def change(a: Animatic) -> None:
            cut = a.cut(panel_id)
            for key, value in fields.items():
                setattr(cut, key, value)
            a.cuts[panel_id] = cut
        self._push(text, change)

    def shutdown(self) -> None:
        self.player.shutdown()
