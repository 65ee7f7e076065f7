"""The project's generation settings: model, style, picture size, quality and consistency.

Each change the user makes is one ``SetSetting`` undo command (a size preset
is one undo step for width and height together); the panel redraws itself
from the session's signals. Nothing here imports torch: the main window
fills the device line through :meth:`SettingsPanel.set_device_info`.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..engine.story.styles import default_style, style_names
from .commands import SetSetting
from .files import ask_folder, ask_open_file
from .machine import Machine
from .preferences import DEVICE_LABELS, DTYPE_LABELS, RUN_ON, Preferences
from .session import ProjectSession

#: The samplers the story pipeline knows (the keys of ``story_pipeline.SCHEDULERS``; a test keeps them equal),
#: with the words shown for them.
SCHEDULER_LABELS = {
    "ddim": "DDIM (StoryDiffusion's)",
    "euler": "Euler",
    "euler_a": "Euler ancestral (varied)",
    "dpm++_2m": "DPM++ 2M (few steps)",
    "unipc": "UniPC (few steps)",
}
SCHEDULERS = list(SCHEDULER_LABELS)

#: (label, width, height); "Custom" is the last entry of the combo.
SIZE_PRESETS = [
    ("512 x 512 (square, SD 1.5)", 512, 512),
    ("768 x 768 (square)", 768, 768),
    ("1024 x 1024 (square)", 1024, 1024),
    ("832 x 1216 (portrait)", 832, 1216),
    ("1216 x 832 (landscape)", 1216, 832),
]
CUSTOM_SIZE = "Custom"
SIZE_STEP = 64
MAX_SEED = 2**31 - 1
MODEL_FILTER = "Model files (*.safetensors *.ckpt);;All files (*)"


def _narrow(combo: QComboBox) -> QComboBox:
    """A combo box that may be narrower than its longest item (shown whole in its list), so a narrow dock
    never scrolls sideways."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(8)
    combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    return combo


def _labelled_combo(labels: dict[str, str]) -> QComboBox:
    """A combo box showing plain words; each item's data is the setting's value."""
    combo = _narrow(QComboBox())
    for value, label in labels.items():
        combo.addItem(label, value)
    return combo


class SettingsPanel(QWidget):
    """A form over ``session.project.settings``."""

    models_requested = Signal()  # the user wants the Models dialog

    def __init__(self, session: ProjectSession, preferences: Preferences | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.preferences = preferences
        self.machine: Machine | None = None
        self._updating = False
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        # in a narrow dock a row's field goes under its label instead of pushing the form wider
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)

        # ---- model ---------------------------------------------------------------------
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("No model chosen yet")
        self.model_edit.setToolTip(
            "The picture model that draws your comic: a Stable Diffusion XL (or 1.5) model folder, a single "
            ".safetensors file, or a Hugging Face name such as stabilityai/stable-diffusion-xl-base-1.0."
        )
        self.model_folder_button = QToolButton()
        self.model_folder_button.setText("Folder…")
        self.model_folder_button.setToolTip("Use a model folder (one that holds model_index.json).")
        self.model_file_button = QToolButton()
        self.model_file_button.setText("File…")
        self.model_file_button.setToolTip("Use a single model file (.safetensors).")
        self.models_button = QToolButton()
        self.models_button.setText("Models…")
        self.models_button.setToolTip("Download, import or pick a model (the ones that fit this computer first).")
        self.models_button.clicked.connect(self.models_requested.emit)
        model_buttons = QHBoxLayout()
        model_buttons.addWidget(self.models_button)
        model_buttons.addWidget(self.model_folder_button)
        model_buttons.addWidget(self.model_file_button)
        model_buttons.addStretch(1)
        model_row = QVBoxLayout()
        model_row.addWidget(self.model_edit)
        model_row.addLayout(model_buttons)
        form.addRow("Model", model_row)

        # ---- style ------------------------------------------------------------------------
        self.style_combo = _narrow(QComboBox())
        for name in style_names():
            self.style_combo.addItem(name, name)
        self.style_combo.setToolTip("The drawing style added to every panel's description.")
        form.addRow("Style", self.style_combo)

        # ---- size --------------------------------------------------------------------------
        self.size_combo = _narrow(QComboBox())
        for label, width, height in SIZE_PRESETS:
            self.size_combo.addItem(label, f"{width}x{height}")
        self.size_combo.addItem(CUSTOM_SIZE, "custom")
        self.size_combo.setToolTip("Common picture sizes; choose Custom to type your own width and height.")
        self.width_spin = self._int_spin(256, 2048, SIZE_STEP, " px")
        self.width_spin.setToolTip("Picture width in pixels (a multiple of 64). Bigger pictures take longer.")
        self.height_spin = self._int_spin(256, 2048, SIZE_STEP, " px")
        self.height_spin.setToolTip("Picture height in pixels (a multiple of 64). Bigger pictures take longer.")
        spins = QHBoxLayout()
        spins.addWidget(self.width_spin, 1)
        spins.addWidget(QLabel("x"))
        spins.addWidget(self.height_spin, 1)
        size_row = QVBoxLayout()
        size_row.addWidget(self.size_combo)
        size_row.addLayout(spins)
        form.addRow("Picture size", size_row)

        # ---- quality -----------------------------------------------------------------------
        self.steps_spin = self._int_spin(1, 150, 1)
        self.steps_spin.setToolTip(
            "How many times the model refines each picture. More steps: more detail but slower "
            "(25 to 50 is usual; 35 is the default)."
        )
        form.addRow("Steps", self.steps_spin)
        self.guidance_spin = self._float_spin(1.0, 20.0, 0.5, 1)
        self.guidance_spin.setToolTip(
            "How closely pictures follow the panel's description (guidance scale). Higher follows the words "
            "more strictly but can look harsh; 5 is the default."
        )
        form.addRow("Follow the words", self.guidance_spin)

        # ---- consistency ----------------------------------------------------------------------
        self.rate_spin = self._float_spin(0.0, 1.0, 0.05, 2)
        self.rate_spin.setToolTip(
            "How strongly characters keep the same look in every panel: the share of picture tokens each "
            "image borrows from the character's reference pictures. 0.3 is weaker, 0.5 the default, 0.7 "
            "stronger but follows each panel's description less."
        )
        form.addRow("Consistency", self.rate_spin)
        self.id_length_spin = self._int_spin(1, 8, 1)
        self.id_length_spin.setToolTip(
            "How many reference pictures are drawn for each character and used to keep them consistent. "
            "More uses more memory (4 is the default)."
        )
        form.addRow("References each", self.id_length_spin)
        self.regions_check = QCheckBox("Keep characters apart in shared panels")
        self.regions_check.setToolTip(
            "In a panel with two or more characters, each one is drawn in its own box (Panel tab) from its own "
            "references and description. Turn it off to let every character's looks act on the whole panel, "
            "as StoryDiffusion's own code does (looks may mix)."
        )
        form.addRow(self.regions_check)

        # ---- poses (ControlNet guides) ------------------------------------------------------------
        self.pose_strength_spin = self._float_spin(0.0, 2.0, 0.05, 2)
        self.pose_strength_spin.setToolTip(
            "How strongly a panel's poses (Panel tab, Poses…) hold: 1 is the default, lower leaves the model "
            "more freedom, 0 ignores them."
        )
        form.addRow("Pose strength", self.pose_strength_spin)
        self.pose_start_spin = self._float_spin(0.0, 0.95, 0.05, 2)
        self.pose_end_spin = self._float_spin(0.05, 1.0, 0.05, 2)
        for spin, words in ((self.pose_start_spin, "from"), (self.pose_end_spin, "to")):
            spin.setToolTip(f"Poses act {words} this fraction of the steps (0 to 1: every step). Ending early "
                            "fixes the figure and leaves the details to the words.")
        pose_row = QHBoxLayout()
        pose_row.addWidget(self.pose_start_spin, 1)
        pose_row.addWidget(QLabel("to"))
        pose_row.addWidget(self.pose_end_spin, 1)
        form.addRow("Pose steps", pose_row)

        # ---- seed -----------------------------------------------------------------------------
        self.seed_spin = self._int_spin(0, MAX_SEED, 1)
        self.seed_spin.setToolTip(
            "The starting number for the random noise. The same seed and settings give the same pictures; "
            "change it for a different take on the whole story."
        )
        self.seed_button = QToolButton()
        self.seed_button.setText("Random")  # plain words: an emoji die is a missing-glyph box in many fonts
        self.seed_button.setToolTip("Pick a random seed.")
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed_spin, 1)
        seed_row.addWidget(self.seed_button)
        form.addRow("Seed", seed_row)

        # ---- sampler, FreeU, negative prompt ------------------------------------------------------
        self.scheduler_combo = _labelled_combo(SCHEDULER_LABELS)
        self.scheduler_combo.setToolTip(
            "The method (scheduler) that removes noise step by step. Each gives slightly different pictures; "
            "DDIM is what StoryDiffusion uses."
        )
        form.addRow("Sampler", self.scheduler_combo)
        self.freeu_check = QCheckBox("Sharper details (FreeU)")
        self.freeu_check.setToolTip(
            "FreeU re-balances the model's inner layers for richer detail and colour, at no extra time. "
            "Turn it off if pictures look over-processed."
        )
        form.addRow(self.freeu_check)
        self.negative_edit = QLineEdit()
        self.negative_edit.setPlaceholderText("e.g. blurry, extra fingers, text")
        self.negative_edit.setToolTip(
            "Things to keep out of every picture (the negative prompt), added to the style's own list."
        )
        form.addRow("Avoid", self.negative_edit)

        # ---- hardware ----------------------------------------------------------------------------
        self.device_combo = _labelled_combo(DEVICE_LABELS)
        self.device_combo.setToolTip("Which part of the computer draws the pictures.")
        form.addRow(RUN_ON, self.device_combo)
        self.dtype_combo = _labelled_combo(DTYPE_LABELS)
        self.dtype_combo.setToolTip(
            "Number precision (dtype). Half precision is faster and needs about half the memory; Automatic "
            "picks half on graphics cards and full on the processor."
        )
        form.addRow("Precision", self.dtype_combo)
        self.device_label = QLabel("Not checked yet")
        self.device_label.setWordWrap(True)
        self.device_label.setToolTip("The graphics card or processor StoryStudio found on this computer.")
        form.addRow("This computer", self.device_label)
        self.estimate_label = QLabel("")
        self.estimate_label.setWordWrap(True)
        self.estimate_label.setToolTip("How long drawing takes here, measured from this computer's earlier jobs.")
        form.addRow("Time", self.estimate_label)

        # ---- wiring: only user actions push commands ----------------------------------------------
        self.model_edit.editingFinished.connect(lambda: self.set_model(self.model_edit.text()))
        self.model_folder_button.clicked.connect(self.choose_model_folder)
        self.model_file_button.clicked.connect(self.choose_model_file)
        self.style_combo.activated.connect(lambda _i: self._push("style", self.style_combo.currentData()))
        self.size_combo.activated.connect(self._on_size_preset)
        self.width_spin.valueChanged.connect(lambda v: self._push("width", self._snap(self.width_spin)))
        self.height_spin.valueChanged.connect(lambda v: self._push("height", self._snap(self.height_spin)))
        self.steps_spin.valueChanged.connect(lambda v: self._push("steps", int(v)))
        self.guidance_spin.valueChanged.connect(lambda v: self._push("guidance", round(float(v), 2)))
        self.rate_spin.valueChanged.connect(lambda v: self._push("rate", round(float(v), 3)))
        self.id_length_spin.valueChanged.connect(lambda v: self._push("id_length", int(v)))
        self.pose_strength_spin.valueChanged.connect(lambda v: self._push("control_strength", round(float(v), 3)))
        self.pose_start_spin.valueChanged.connect(lambda v: self._push_pose_steps("control_start", float(v)))
        self.pose_end_spin.valueChanged.connect(lambda v: self._push_pose_steps("control_end", float(v)))
        self.seed_spin.valueChanged.connect(lambda v: self._push("seed", int(v)))
        self.seed_button.clicked.connect(self.random_seed)
        self.scheduler_combo.activated.connect(lambda _i: self._push("scheduler", self.scheduler_combo.currentData()))
        self.freeu_check.toggled.connect(lambda checked: self._push("freeu", bool(checked)))
        self.regions_check.toggled.connect(lambda checked: self._push("regions", bool(checked)))
        self.negative_edit.editingFinished.connect(
            lambda: self._push("negative_prompt", self.negative_edit.text().strip())
        )
        self.device_combo.activated.connect(lambda _i: self._push("device", self.device_combo.currentData()))
        self.dtype_combo.activated.connect(lambda _i: self._push("dtype", self.dtype_combo.currentData()))

        session.settings_changed.connect(self.refresh)
        session.project_replaced.connect(self.refresh)
        self.refresh()

    # ---- public API ------------------------------------------------------------------------
    def set_device_info(self, text: str) -> None:
        """Show what hardware was found, e.g. "NVIDIA RTX 4090, 24 GiB" or "CPU"."""
        self.device_label.setText(text)

    def set_machine(self, machine: Machine) -> None:
        """Offer only the devices this computer has (the project's own choice stays visible)."""
        self.machine = machine
        self.refresh()

    def set_estimate(self, text: str) -> None:
        self.estimate_label.setText(text or "Nothing to draw.")

    def set_model(self, model: str) -> None:
        """Use this model (a folder, a file or a Hugging Face name); one undo step."""
        self._push("model", model.strip())

    def choose_model_folder(self) -> None:
        folder = ask_folder(self, self.preferences, "Choose a model folder", self.session.project.settings.model)
        if folder:
            self.set_model(folder)

    def choose_model_file(self) -> None:
        path = ask_open_file(self, self.preferences, "Choose a model file", MODEL_FILTER,
                             self.session.project.settings.model)
        if path:
            self.set_model(path)

    def set_size(self, width: int, height: int) -> None:
        """Change width and height as one undo step."""
        settings = self.session.project.settings
        changes = [(f, v) for f, v in (("width", int(width)), ("height", int(height))) if getattr(settings, f) != v]
        if not changes:
            self.refresh()
            return
        self.session.undo.beginMacro("Change picture size")
        try:
            for field, value in changes:
                self.session.undo.push(SetSetting(self.session, field, value))
        finally:
            self.session.undo.endMacro()

    def _push_pose_steps(self, field: str, value: float) -> None:
        """A pose step range whose start comes before its end (else the boxes show the range as it was)."""
        s = self.session.project.settings
        start, end = (value, s.control_end) if field == "control_start" else (s.control_start, value)
        if start >= end:
            self.refresh()
            return
        self._push(field, round(value, 3))

    def random_seed(self) -> int:
        """Pick a random seed (one undo step) and return it."""
        seed = random.randint(0, MAX_SEED)
        self._push("seed", seed)
        return seed

    def refresh(self) -> None:
        """Show the project's settings; pushes nothing."""
        s = self.session.project.settings
        with self._quiet():
            self.model_edit.setText(s.model)
            self.model_edit.setCursorPosition(0)
            self._set_combo(self.style_combo, s.style or default_style())
            self.width_spin.setValue(int(s.width))
            self.height_spin.setValue(int(s.height))
            preset = next((i for i, (_l, w, h) in enumerate(SIZE_PRESETS) if (w, h) == (s.width, s.height)), None)
            self.size_combo.setCurrentIndex(len(SIZE_PRESETS) if preset is None else preset)
            self.steps_spin.setValue(int(s.steps))
            self.guidance_spin.setValue(float(s.guidance))
            self.rate_spin.setValue(float(s.rate))
            self.id_length_spin.setValue(int(s.id_length))
            self.pose_strength_spin.setValue(float(s.control_strength))
            self.pose_start_spin.setValue(float(s.control_start))
            self.pose_end_spin.setValue(float(s.control_end))
            self.seed_spin.setValue(int(s.seed))
            self._set_combo(self.scheduler_combo, s.scheduler)
            self.freeu_check.setChecked(bool(s.freeu))
            self.regions_check.setChecked(bool(s.regions))
            self.negative_edit.setText(s.negative_prompt)
            self._offer_devices(s.device)
            self._set_combo(self.device_combo, s.device)
            self._set_combo(self.dtype_combo, s.dtype)

    def _offer_devices(self, current: str) -> None:
        offered = ["auto", *self.machine.devices] if self.machine is not None else list(DEVICE_LABELS)
        if current not in offered:
            offered.append(current)
        if [self.device_combo.itemData(i) for i in range(self.device_combo.count())] == offered:
            return
        self.device_combo.clear()
        for value in offered:
            label = DEVICE_LABELS.get(value, str(value))
            if self.machine is not None and value not in ("auto", *self.machine.devices):
                label += " (not on this computer)"
            self.device_combo.addItem(label, value)

    # ---- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _int_spin(low: int, high: int, step: int, suffix: str = "") -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(low, high)
        spin.setSingleStep(step)
        spin.setSuffix(suffix)
        spin.setKeyboardTracking(False)  # typing "35" is one change, made on Enter or leaving the box
        spin.setAccelerated(True)
        return spin

    @staticmethod
    def _float_spin(low: float, high: float, step: float, decimals: int) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setDecimals(decimals)
        spin.setRange(low, high)
        spin.setSingleStep(step)
        spin.setKeyboardTracking(False)
        return spin

    @staticmethod
    def _snap(spin: QSpinBox) -> int:
        """The box's value rounded to a multiple of 64, which every model accepts."""
        value = int(round(spin.value() / SIZE_STEP)) * SIZE_STEP
        return max(spin.minimum(), min(spin.maximum(), value))

    @contextlib.contextmanager
    def _quiet(self):
        self._updating = True
        try:
            yield
        finally:
            self._updating = False

    @staticmethod
    def _set_combo(combo: QComboBox, value: Any) -> None:
        index = combo.findData(value)
        if index < 0:  # a value this version does not list (say, from a newer project): show it as it is
            combo.addItem(str(value), value)
            index = combo.count() - 1
        combo.setCurrentIndex(index)

    def _push(self, field: str, value: Any) -> None:
        if self._updating or value is None:
            return
        current = getattr(self.session.project.settings, field)
        if field == "style" and current is None and value == default_style():
            pass  # choosing the default explicitly still records the choice
        elif isinstance(value, float) and isinstance(current, (int, float)) and abs(current - value) < 1e-9:
            return
        elif value == current:
            if field in ("width", "height"):
                self.refresh()  # a typed 800 snapped back to the stored 768: show it
            return
        self.session.undo.push(SetSetting(self.session, field, value))

    def _on_size_preset(self, index: int) -> None:
        if self._updating:
            return
        if 0 <= index < len(SIZE_PRESETS):
            _label, width, height = SIZE_PRESETS[index]
            self.set_size(width, height)
