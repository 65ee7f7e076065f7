"""The settings panel: one undo step per change, and it always shows the project's settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from storystudio.engine.story.styles import default_style, style_names
from storystudio.project.model import Project
from storystudio.ui import settings_panel as settings_module
from storystudio.ui.commands import SetSetting
from storystudio.ui.session import ProjectSession
from storystudio.ui.settings_panel import SettingsPanel

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def session() -> ProjectSession:
    return ProjectSession(Project.example())


@pytest.fixture
def panel(qtbot, session) -> SettingsPanel:
    widget = SettingsPanel(session)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def type_into(qtbot, spin, text: str) -> None:
    """Type a number into a spin box and press Enter, as a user does."""
    spin.setFocus()
    spin.lineEdit().selectAll()
    qtbot.keyClicks(spin, text)
    qtbot.keyClick(spin, Qt.Key.Key_Return)


def choose(combo, value) -> None:
    """Pick the item holding ``value`` the way a user does (``activated`` only comes from the user)."""
    index = combo.findData(value)
    assert index >= 0, value
    combo.setCurrentIndex(index)
    combo.activated.emit(index)


def combo_values(combo) -> list:
    return [combo.itemData(i) for i in range(combo.count())]


def last_command(session) -> SetSetting:
    return session.undo.command(session.undo.count() - 1)


def test_shows_the_example_settings(panel, session):
    s = session.project.settings
    assert panel.model_edit.text() == "" and panel.model_edit.placeholderText() == "No model chosen yet"
    assert panel.style_combo.currentText() == default_style()  # no style stored: the default is shown
    assert combo_values(panel.style_combo) == style_names()
    assert (panel.width_spin.value(), panel.height_spin.value()) == (s.width, s.height) == (768, 768)
    assert panel.size_combo.currentText() == "768 x 768 (square)"
    assert panel.steps_spin.value() == s.steps == 35
    assert panel.guidance_spin.value() == s.guidance == 5.0
    assert panel.rate_spin.value() == s.rate == 0.5
    assert panel.id_length_spin.value() == s.id_length == 4
    assert panel.seed_spin.value() == s.seed
    assert panel.scheduler_combo.currentData() == "ddim"
    assert panel.freeu_check.isChecked() is True
    assert panel.negative_edit.text() == ""
    assert panel.device_combo.currentData() == "auto"
    assert panel.dtype_combo.currentData() == "auto"
    assert session.undo.count() == 0


def test_technical_settings_explain_themselves(panel):
    assert "0.3" in panel.rate_spin.toolTip() and "0.7" in panel.rate_spin.toolTip()
    assert "reference" in panel.rate_spin.toolTip()
    for widget in (panel.model_edit, panel.guidance_spin, panel.steps_spin, panel.id_length_spin, panel.seed_spin,
                   panel.scheduler_combo, panel.freeu_check, panel.negative_edit, panel.dtype_combo):
        assert len(widget.toolTip()) > 30, widget


# (field, how to change it, the new value, how to read the widget)
SPINS = [
    ("steps", "steps_spin", "50", 50),
    ("guidance", "guidance_spin", "7.5", 7.5),
    ("rate", "rate_spin", "0.7", 0.7),
    ("id_length", "id_length_spin", "2", 2),
    ("seed", "seed_spin", "123456", 123456),
    ("width", "width_spin", "1024", 1024),
    ("height", "height_spin", "1216", 1216),
]


@pytest.mark.parametrize("field, name, typed, value", SPINS, ids=[s[0] for s in SPINS])
def test_typing_a_number_is_one_command_and_undo_shows_the_old_value(qtbot, panel, session, field, name, typed, value):
    spin = getattr(panel, name)
    old = getattr(session.project.settings, field)
    type_into(qtbot, spin, typed)
    assert session.undo.count() == 1
    assert isinstance(last_command(session), SetSetting) and last_command(session).field == field
    assert getattr(session.project.settings, field) == pytest.approx(value)
    session.undo.undo()
    assert getattr(session.project.settings, field) == old
    assert spin.value() == pytest.approx(old)
    session.undo.redo()
    assert spin.value() == pytest.approx(value)


def test_arrow_keys_step_the_size_by_64(qtbot, panel, session):
    panel.width_spin.setFocus()
    qtbot.keyClick(panel.width_spin, Qt.Key.Key_Up)
    assert session.project.settings.width == 832
    assert session.undo.count() == 1
    assert panel.size_combo.currentText() == "Custom"


def test_a_typed_size_snaps_to_a_multiple_of_64(qtbot, panel, session):
    type_into(qtbot, panel.width_spin, "900")
    assert session.project.settings.width == 896
    assert panel.width_spin.value() == 896
    type_into(qtbot, panel.height_spin, "800")  # snaps back to the stored 768: nothing to undo
    assert session.project.settings.height == 768
    assert panel.height_spin.value() == 768
    assert session.undo.count() == 1


# (field, combo, new value)
COMBOS = [
    ("style", "style_combo", "Comic book"),
    ("scheduler", "scheduler_combo", "euler_a"),
    ("device", "device_combo", "cpu"),
    ("dtype", "dtype_combo", "fp16"),
]


@pytest.mark.parametrize("field, name, value", COMBOS, ids=[c[0] for c in COMBOS])
def test_choosing_from_a_list_is_one_command(panel, session, field, name, value):
    combo = getattr(panel, name)
    old_shown = combo.currentData()
    old = getattr(session.project.settings, field)
    choose(combo, value)
    assert session.undo.count() == 1 and last_command(session).field == field
    assert getattr(session.project.settings, field) == value
    choose(combo, value)  # the same choice again changes nothing
    assert session.undo.count() == 1
    session.undo.undo()
    assert getattr(session.project.settings, field) == old
    assert combo.currentData() == old_shown


def test_keyboard_on_a_list_pushes_a_command(qtbot, panel, session):
    panel.scheduler_combo.setFocus()
    qtbot.keyClick(panel.scheduler_combo, Qt.Key.Key_Down)
    assert session.project.settings.scheduler == "euler"
    assert session.undo.count() == 1


def test_freeu_and_negative_prompt(qtbot, panel, session):
    panel.freeu_check.click()
    assert session.project.settings.freeu is False
    assert session.undo.count() == 1 and last_command(session).field == "freeu"

    panel.negative_edit.setFocus()
    qtbot.keyClicks(panel.negative_edit, "blurry, text")
    qtbot.keyClick(panel.negative_edit, Qt.Key.Key_Return)
    assert session.project.settings.negative_prompt == "blurry, text"
    assert session.undo.count() == 2 and last_command(session).field == "negative_prompt"

    session.undo.undo()
    assert panel.negative_edit.text() == ""
    session.undo.undo()
    assert panel.freeu_check.isChecked()
    assert session.project.settings.freeu is True


def test_model_typed_or_chosen(qtbot, panel, session, monkeypatch, tmp_path):
    panel.model_edit.setFocus()
    qtbot.keyClicks(panel.model_edit, "  stabilityai/stable-diffusion-xl-base-1.0 ")
    qtbot.keyClick(panel.model_edit, Qt.Key.Key_Return)
    assert session.project.settings.model == "stabilityai/stable-diffusion-xl-base-1.0"
    assert session.undo.count() == 1

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path))
    panel.model_folder_button.click()
    assert session.project.settings.model == str(tmp_path)
    assert panel.model_edit.text() == str(tmp_path)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: ("", ""))
    panel.model_file_button.click()  # cancelled: nothing changes
    assert session.undo.count() == 2

    session.undo.undo()
    session.undo.undo()
    assert panel.model_edit.text() == ""


def test_size_preset_is_one_undo_step(panel, session):
    choose(panel.size_combo, "832x1216")
    s = session.project.settings
    assert (s.width, s.height) == (832, 1216)
    assert (panel.width_spin.value(), panel.height_spin.value()) == (832, 1216)
    assert session.undo.count() == 1
    session.undo.undo()
    assert (s.width, s.height) == (768, 768)
    assert (panel.width_spin.value(), panel.height_spin.value()) == (768, 768)
    assert panel.size_combo.currentText() == "768 x 768 (square)"
    choose(panel.size_combo, "768x768")  # already that size: no empty undo step
    assert session.undo.index() == 0
    assert panel.size_combo.itemText(panel.size_combo.count() - 1) == "Custom"


def test_random_seed(panel, session):
    seeds = set()
    for _ in range(3):
        panel.seed_button.click()
        seeds.add(session.project.settings.seed)
        assert panel.seed_spin.value() == session.project.settings.seed
    assert len(seeds) > 1
    assert session.undo.count() == 3
    assert all(0 <= seed <= 2**31 - 1 for seed in seeds)


def test_follows_changes_made_elsewhere_without_pushing(panel, session):
    session.set_setting("steps", 20)
    session.set_setting("scheduler", "unipc")
    assert panel.steps_spin.value() == 20
    assert panel.scheduler_combo.currentData() == "unipc"
    project = Project.example()
    project.settings.style = "Line art"
    project.settings.width, project.settings.height = 1216, 832
    session.replace(project, None)
    assert panel.style_combo.currentText() == "Line art"
    assert panel.size_combo.currentText() == "1216 x 832 (landscape)"
    assert session.undo.count() == 0


def test_device_info(panel):
    panel.set_device_info("NVIDIA RTX 4090, 24 GiB")
    assert panel.device_label.text() == "NVIDIA RTX 4090, 24 GiB"


def test_scheduler_list_matches_the_pipeline(panel):
    from storystudio.engine.story.pipeline import SCHEDULERS

    assert combo_values(panel.scheduler_combo) == list(SCHEDULERS)
    assert settings_module.SCHEDULERS == list(SCHEDULERS)


def test_widgets_import_without_torch():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    code = "import storystudio.ui.settings_panel, storystudio.ui.character_sheet, sys; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
