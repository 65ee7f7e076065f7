"""Preferences: every app-wide setting declared once, and the dialog built from the declarations.

Each preference is one :class:`Preference` (its key in ``QSettings``, its
default, the words the dialog shows, a description, and the choices where
there are some). Code reads and writes them through :class:`Preferences` by
name, never by raw ``QSettings`` key, so a new preference is one line in
``DECLARED`` and the dialog shows it. Those with ``shown=False`` (window
state, measured speeds, the last folder) are the app's memory, not choices
for the user.

The Hub access token is not one of them: it is kept where Hugging Face's own
tools keep it (a file only this user can read) so that both find it, and it
is never shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..engine.distributed.cluster import RAY_EXTRA, check_address, connection_check
from ..engine.errors import InputError
from ..engine.models.base import MEMORY_MODES
from .machine import Machine

#: Where pictures are drawn, in the words both the Preferences and the Generation dock show.
DEVICE_LABELS = {
    "auto": "Automatic (the best here)",
    "cuda": "NVIDIA graphics card (CUDA)",
    "mps": "Apple graphics (Metal)",
    "cpu": "Processor only (slow)",
}
DTYPE_LABELS = {
    "auto": "Automatic",
    "fp16": "Half (fp16): fast, less memory",
    "bf16": "Half (bf16): newer cards",
    "fp32": "Full (fp32): most memory",
}
RUN_ON = "Run on"  # the one label for DEVICE_LABELS, in the dialog and in the dock
RENDER_ON_LABELS = {"here": "This computer", "ray": "A Ray cluster (the address below)"}


@dataclass(frozen=True)
class Preference:
    """One setting: how it is stored, what it starts as, and how the Preferences dialog shows it."""

    name: str  # how code asks for it
    key: str  # its QSettings key
    default: Any
    label: str = ""  # the dialog's words for it
    description: str = ""  # the dialog's tooltip
    choices: dict[str, str] | None = None  # value -> words, for a choice among a few
    shown: bool = True  # False: the app's own memory, not in the dialog
    minimum: float | None = None  # numbers: the range the dialog allows
    maximum: float | None = None
    #: which choices fit this computer (None: every one); the value in use is always offered
    offered: Callable[[Machine | None], list[str]] | None = field(default=None, compare=False)
    only_choice: str = ""  # the words for the one value left when this computer leaves no choice

    def read(self, raw: Any) -> Any:
        """A stored value as this preference's type; the default where it is missing or unreadable."""
        if raw is None or raw == "":
            return self.default
        kind = type(self.default)
        try:
            if kind is bool:
                return raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
            if kind in (int, float):
                return kind(raw)
            if kind is dict:
                return dict(raw) if isinstance(raw, dict) else self.default
            if kind is str:
                value = str(raw)
                if self.choices is not None and value not in self.choices:
                    return self.default
                return value
        except (TypeError, ValueError):
            return self.default
        return raw


def _memory_offered(machine: Machine | None) -> list[str]:
    # without a graphics card the model always sits in the computer's memory: there is nothing to choose
    return list(MEMORY_MODES) if machine is None or machine.gpu else ["full"]


def _devices_offered(machine: Machine | None) -> list[str]:
    return list(DEVICE_LABELS) if machine is None else ["auto", *machine.devices]


DECLARED: list[Preference] = [
    Preference("device", "defaults/device", "auto", RUN_ON, "Where new projects draw their pictures; each project "
               "can change it in its Generation dock.", DEVICE_LABELS, offered=_devices_offered),
    Preference("dtype", "defaults/dtype", "auto", "Precision", "Number precision for new projects. Half precision "
               "is faster and needs about half the memory on a graphics card.", DTYPE_LABELS),
    Preference("memory", "models/memory", "full", "GPU memory", "On a graphics card with little memory, offloading "
               "keeps parts of the model in the computer's memory until they are needed.", MEMORY_MODES,
               offered=_memory_offered, only_choice="Not needed: this computer has no graphics card"),
    Preference("default_model", "models/default", "", "Model for new projects", "New projects start with this "
               "model (Models… ▸ Make Default sets it)."),
    Preference("compile", "generation/compile", False, "Compile the model (graphics cards)", "Run the picture "
               "model through torch.compile: the first picture of each size waits a few minutes (about 2 on a "
               "large card for SDXL at 1024) while it is compiled and stored on disk; then every step is faster "
               "(on an H200 a whole SDXL story went from 35.6 to 31.7 s). Not worth it on a processor."),
    Preference("bank_ram_gib", "generation/bank-ram-gib", 0.0, "Keep characters in memory (GiB)", "Memory for "
               "keeping characters' references between jobs, so that redrawing one panel skips drawing them "
               "again (about twice as fast). One SDXL character at 1024 with 4 references and 30 steps needs about 25 GiB; 0 keeps none.",
               minimum=0.0, maximum=512.0),
    Preference("bank_disk_gib", "generation/bank-disk-gib", 0.0, "Keep characters on disk (GiB)", "The same on "
               "disk, in StoryStudio's cache folder; the least recently used character is dropped first.",
               minimum=0.0, maximum=4096.0),
    Preference("render_on", "generation/render-on", "here", "Render on", "Where stories are drawn: on this "
               "computer, or on the GPUs of a Ray cluster (one actor per GPU; needs " + RAY_EXTRA + ").",
               RENDER_ON_LABELS),
    Preference("ray_address", "generation/ray-address", "auto", "Ray cluster address", "auto starts a Ray on "
               "this computer's GPUs; or HOST:6379 (a node of the cluster) or ray://HOST:10001 (Ray Client). The "
               "model must be on the cluster's machines at the same place (or in their Hugging Face cache)."),
    # ---- the app's memory --------------------------------------------------------------------
    Preference("window_geometry", "window/geometry", None, shown=False),
    Preference("window_state", "window/state", None, shown=False),
    Preference("last_folder", "files/last-folder", "", shown=False,
               description="The folder of the last file opened or saved: file dialogs start there."),
    Preference("speeds", "timing/seconds-per-step", {}, shown=False,
               description="Measured seconds per picture and step, by device, model family and size."),
    Preference("model_families", "timing/model-families", {}, shown=False,
               description="The family (sd15, sdxl) of each model loaded here, for estimates before it loads."),
    Preference("machine", "machine/last-seen", {}, shown=False,
               description="What the last start found on this computer (GPU, its memory)."),
    Preference("video_models", "video/models", {}, shown=False,
               description="Where the video stage's models are (Hub ids in the cache by default)."),
    Preference("video_options", "video/options", {}, shown=False,
               description="Settings for the generated transitions (e.g. fewer steps for a quick look)."),
]
BY_NAME = {p.name: p for p in DECLARED}


class Preferences(QObject):
    """The declared preferences over one ``QSettings`` store; ``changed(name)`` after each change."""

    changed = Signal(str)

    def __init__(self, settings: QSettings | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.qsettings = settings if settings is not None else QSettings("StoryStudio", "StoryStudio")

    @staticmethod
    def declared(name: str) -> Preference:
        try:
            return BY_NAME[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a declared preference") from None

    def get(self, name: str) -> Any:
        pref = self.declared(name)
        value = pref.read(self.qsettings.value(pref.key))
        return dict(value) if isinstance(value, dict) else value

    def set(self, name: str, value: Any) -> None:
        pref = self.declared(name)
        if self.get(name) == value and self.qsettings.contains(pref.key):
            return
        self.qsettings.setValue(pref.key, value)
        self.changed.emit(name)

    def shown(self) -> list[Preference]:
        return [p for p in DECLARED if p.shown]

    def ray_address(self) -> str:
        """The Ray cluster renders go to ("" for this computer)."""
        return self.get("ray_address") if self.get("render_on") == "ray" else ""


class PreferencesDialog(QDialog):
    """The shown preferences, one row each, made from their declarations; then the Hub token."""

    def __init__(self, preferences: Preferences | QSettings, parent: QWidget | None = None,
                 machine: Machine | None = None):
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self.preferences = preferences if isinstance(preferences, Preferences) else Preferences(preferences)
        self.machine = machine
        self.fields: dict[str, QWidget] = {}
        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        for pref in self.preferences.shown():
            widget = self._field(pref, self.preferences.get(pref.name))
            widget.setToolTip(pref.description)
            self.fields[pref.name] = widget
            form.addRow(pref.label, widget)
        self.ray_check = QPushButton("Check Connection")
        self.ray_check.clicked.connect(self.check_ray)
        self.ray_state = QLabel()
        self.ray_state.setWordWrap(True)
        self._ray_thread = None
        form.addRow("", self.ray_check)
        form.addRow("", self.ray_state)
        folders_note = QLabel("Models in other folders: <i>Models… ▸ Import Folder</i> adds a folder where it "
                              "is (nothing is copied); the Hugging Face cache is always searched.")
        folders_note.setWordWrap(True)
        form.addRow("Model folders", folders_note)
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.Password)
        self.token_state = QLabel()
        self.token_state.setWordWrap(True)
        self.forget_token = QPushButton("Forget Token")
        self.forget_token.clicked.connect(self._forget_token)
        self._show_token_state()
        token_row = QHBoxLayout()
        token_row.addWidget(self.token, 1)
        token_row.addWidget(self.forget_token)
        form.addRow("Hugging Face token", token_row)
        form.addRow("", self.token_state)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

    # the boxes by their old names, for callers that set one directly
    @property
    def device_box(self) -> QComboBox:
        return self.fields["device"]

    @property
    def precision_box(self) -> QComboBox:
        return self.fields["dtype"]

    @property
    def memory_box(self) -> QComboBox:
        return self.fields["memory"]

    def _field(self, pref: Preference, value: Any) -> QWidget:
        if pref.choices is not None:
            box = QComboBox()
            offered = pref.offered(self.machine) if pref.offered else list(pref.choices)
            if value not in offered:
                offered.append(value)  # what is set stays visible, even where this computer cannot do it
            for key in offered:
                words = pref.only_choice if len(offered) == 1 and pref.only_choice else pref.choices.get(key, str(key))
                box.addItem(words, key)
            box.setCurrentIndex(max(0, box.findData(value)))
            box.setEnabled(box.count() > 1)
            return box
        if isinstance(pref.default, bool):
            box = QCheckBox()
            box.setChecked(bool(value))
            return box
        if isinstance(pref.default, int):
            spin = QSpinBox()
            spin.setRange(int(pref.minimum if pref.minimum is not None else -2**31),
                          int(pref.maximum if pref.maximum is not None else 2**31 - 1))
            spin.setValue(int(value))
            return spin
        if isinstance(pref.default, float):
            spin = QDoubleSpinBox()
            spin.setRange(pref.minimum if pref.minimum is not None else -1e9,
                          pref.maximum if pref.maximum is not None else 1e9)
            spin.setValue(float(value))
            return spin
        edit = QLineEdit(str(value))
        if pref.name == "default_model":
            edit.setPlaceholderText("None: choose in Models…")
        return edit

    @staticmethod
    def _value(widget: QWidget) -> Any:
        if isinstance(widget, QComboBox):
            return widget.currentData()
        if isinstance(widget, QCheckBox):
            return widget.isChecked()
        if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
            return widget.value()
        return widget.text().strip()

    def _show_token_state(self) -> None:
        saved = hub_token() is not None
        self.token_state.setText("A token is saved (it is never shown). Type a new one to replace it."
                                 if saved else "No token saved: needed only for gated models.")
        self.forget_token.setEnabled(saved)

    def _forget_token(self) -> None:
        save_hub_token(None)
        self._show_token_state()

    def check_ray(self) -> None:
        """Connect to the address typed, off the GUI thread; the answer shows under the button."""
        from .threads import run_in_thread

        address = self.fields["ray_address"].text().strip()
        self.ray_check.setEnabled(False)
        self.ray_state.setText(f"Checking {address}…")

        def done(text: str) -> None:
            self.ray_check.setEnabled(True)
            self.ray_state.setText(text)

        def failed(exc: BaseException) -> None:
            done(str(exc) if isinstance(exc, InputError) else f"The check failed: {exc}")

        self._ray_thread = run_in_thread(connection_check, address, name="StoryStudio Ray check",
                                         on_result=done, on_error=failed)

    def accept(self) -> None:
        if self._value(self.fields["render_on"]) == "ray":
            try:
                check_address(self.fields["ray_address"].text())
            except InputError as exc:  # the dialog stays open with the reason; nothing is saved
                self.ray_state.setText(str(exc))
                return
        for name, widget in self.fields.items():
            self.preferences.set(name, self._value(widget))
        if self.token.text().strip():
            save_hub_token(self.token.text().strip())
        super().accept()


# ---------------------------------------------------------------------------
# the Hub token, where the Hugging Face tools keep it


def hub_token() -> str | None:
    """The access token saved for the Hugging Face Hub (ours or one the ``hf`` tool saved), never shown."""
    from huggingface_hub import constants

    try:
        text = open(constants.HF_TOKEN_PATH, encoding="utf-8").read().strip()
    except OSError:
        return None
    return text or None


def save_hub_token(token: str | None) -> None:
    """Keep (or forget, with None) the token where Hugging Face's tools keep it, readable only by this user."""
    import os

    from huggingface_hub import constants

    path = constants.HF_TOKEN_PATH
    if not token:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token.strip())
    if os.name == "posix":
        os.chmod(path, 0o600)
