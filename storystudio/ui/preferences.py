"""Preferences: where pictures are drawn and how, which model new projects use, the Hub token.

Stored in ``QSettings`` (the platform's place for an app's settings), except
the Hub access token, which is kept where Hugging Face's own tools keep it
(a file only this user can read) so that both find it; it is never shown.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..engine.models.base import MEMORY_MODES
from .models_dialog import hub_token, save_hub_token

DEVICES = {"auto": "Automatic (the best this computer has)", "cuda": "NVIDIA GPU (CUDA)", "mps": "Apple GPU (MPS)",
           "cpu": "CPU (slow)"}
PRECISIONS = {"auto": "Automatic", "fp16": "Half (fp16)", "bf16": "bfloat16", "fp32": "Full (fp32)"}


def preference(settings: QSettings, key: str, default: str) -> str:
    value = settings.value(key, default)
    return str(value) if value not in (None, "") else default


class PreferencesDialog(QDialog):
    def __init__(self, settings: QSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self.qsettings = settings
        self.device_box = self._combo(DEVICES, preference(settings, "defaults/device", "auto"))
        self.device_box.setToolTip("For new projects; each project can change it in its Generation panel")
        self.precision_box = self._combo(PRECISIONS, preference(settings, "defaults/dtype", "auto"))
        self.memory_box = self._combo(MEMORY_MODES, preference(settings, "models/memory", "full"))
        self.memory_box.setToolTip("On an NVIDIA GPU with little memory, offloading keeps parts of the model in "
                                   "the computer's memory until they are needed")
        self.default_model = QLineEdit(preference(settings, "models/default", ""))
        self.default_model.setPlaceholderText("None: choose in Models…")
        folders_note = QLabel("Models in other folders: <i>Models… ▸ Import Folder</i> adds a folder where it "
                              "is (nothing is copied); the Hugging Face cache is always searched.")
        folders_note.setWordWrap(True)
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.Password)
        self.token_state = QLabel()
        self.forget_token = QPushButton("Forget Token")
        self.forget_token.clicked.connect(self._forget_token)
        self._show_token_state()
        form = QFormLayout()
        form.addRow("Draw on", self.device_box)
        form.addRow("Precision", self.precision_box)
        form.addRow("GPU memory", self.memory_box)
        form.addRow("Model for new projects", self.default_model)
        form.addRow("Model folders", folders_note)
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

    @staticmethod
    def _combo(options: dict[str, str], value: str) -> QComboBox:
        box = QComboBox()
        for key, label in options.items():
            box.addItem(label, key)
        box.setCurrentIndex(max(0, box.findData(value)))
        return box

    def _show_token_state(self) -> None:
        saved = hub_token() is not None
        self.token_state.setText("A token is saved (it is never shown). Type a new one to replace it."
                                 if saved else "No token saved: needed only for gated models.")
        self.forget_token.setEnabled(saved)

    def _forget_token(self) -> None:
        save_hub_token(None)
        self._show_token_state()

    def accept(self) -> None:
        s = self.qsettings
        s.setValue("defaults/device", self.device_box.currentData())
        s.setValue("defaults/dtype", self.precision_box.currentData())
        s.setValue("models/memory", self.memory_box.currentData())
        s.setValue("models/default", self.default_model.text().strip())
        if self.token.text().strip():
            save_hub_token(self.token.text().strip())
        super().accept()
