"""Preferences declared once: read with their types, the dialog built from the declarations, choices that fit
this computer, and the tests' own settings file."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFormLayout, QLabel

import qt_fixtures
from storystudio.ui import preferences as prefs_module
from storystudio.ui.machine import Machine
from storystudio.ui.preferences import DEVICE_LABELS, RUN_ON, Preference, Preferences, PreferencesDialog

CPU = Machine("CPU", None, ("cpu",))
GPU = Machine("NVIDIA RTX 4090, 24 GiB", 24.0, ("cuda", "cpu"))


def store(tmp_path) -> Preferences:
    return Preferences(QSettings(str(tmp_path / "p.ini"), QSettings.IniFormat))


def test_values_keep_their_type_and_fall_back_to_the_default(tmp_path):
    prefs = store(tmp_path)
    assert prefs.get("memory") == "full" and prefs.get("speeds") == {}
    prefs.qsettings.setValue("models/memory", "no-such-mode")  # written by hand, or by a newer version
    assert prefs.get("memory") == "full"
    changed = []
    prefs.changed.connect(changed.append)
    prefs.set("speeds", {"CPU|sd15|512x512": 1.5})
    prefs.set("speeds", {"CPU|sd15|512x512": 1.5})  # the same value again: no change
    again = Preferences(QSettings(str(tmp_path / "p.ini"), QSettings.IniFormat))
    assert again.get("speeds") == {"CPU|sd15|512x512": 1.5} and changed == ["speeds"]
    assert Preference("n", "k", 3).read("7") == 7 and Preference("b", "k", False).read("true") is True


def test_the_dialog_is_built_from_the_declarations(qtbot, tmp_path, monkeypatch):
    extra = Preference("compile_unet", "engine/compile-unet", False, "Compile the UNet", "Faster after a warm-up")
    monkeypatch.setattr(prefs_module, "DECLARED", prefs_module.DECLARED + [extra])  # a new preference: one line
    monkeypatch.setitem(prefs_module.BY_NAME, "compile_unet", extra)
    prefs = store(tmp_path)
    dialog = PreferencesDialog(prefs)
    qtbot.addWidget(dialog)
    form = dialog.findChild(QFormLayout)
    role = QFormLayout.ItemRole.LabelRole
    labels = [form.itemAt(r, role).widget().text() for r in range(form.rowCount())
              if form.itemAt(r, role) and isinstance(form.itemAt(r, role).widget(), QLabel)]
    for pref in prefs.shown():
        assert pref.label in labels and pref.name in dialog.fields
    assert "Compile the UNet" in labels and RUN_ON in labels
    dialog.fields["compile_unet"].setChecked(True)
    dialog.device_box.setCurrentIndex(dialog.device_box.findData("cpu"))
    dialog.accept()
    assert prefs.get("compile_unet") is True and prefs.get("device") == "cpu"


def test_choices_fit_this_computer(qtbot, tmp_path):
    prefs = store(tmp_path)
    on_cpu = PreferencesDialog(prefs, machine=CPU)
    qtbot.addWidget(on_cpu)
    memory = [on_cpu.memory_box.itemData(i) for i in range(on_cpu.memory_box.count())]
    devices = [on_cpu.device_box.itemData(i) for i in range(on_cpu.device_box.count())]
    assert memory == ["full"] and not on_cpu.memory_box.isEnabled()  # no GPU: nothing to offload
    assert "GPU" not in on_cpu.memory_box.itemText(0)  # "everything on the GPU" is not offered
    assert devices == ["auto", "cpu"]
    assert on_cpu.device_box.itemText(0) == DEVICE_LABELS["auto"]  # the same words as the Generation dock
    on_gpu = PreferencesDialog(prefs, machine=GPU)
    qtbot.addWidget(on_gpu)
    assert on_gpu.memory_box.count() == 3 and on_gpu.device_box.findData("cuda") >= 0
    prefs.set("device", "cuda")  # set on another computer: still shown, so nothing changes behind one's back
    again = PreferencesDialog(prefs, machine=CPU)
    qtbot.addWidget(again)
    assert again.device_box.currentData() == "cuda"


def test_the_tests_never_touch_the_users_settings_file(qtbot):
    from storystudio.ui.main_window import MainWindow

    default = QSettings("StoryStudio", "StoryStudio")
    assert Path(default.fileName()).is_relative_to(qt_fixtures.SETTINGS_DIR)
    window = MainWindow()  # no settings given: the app's own place, which the tests moved
    qtbot.addWidget(window)
    assert Path(window.qsettings.fileName()).is_relative_to(qt_fixtures.SETTINGS_DIR)
    window.session.undo.setClean()
    window.close()
    assert QSettings("StoryStudio", "StoryStudio").value("window/geometry") is not None


def test_render_on_a_ray_cluster_with_a_connection_check(qtbot, tmp_path, monkeypatch):
    prefs = store(tmp_path)
    assert prefs.ray_address() == ""  # this computer by default
    dialog = PreferencesDialog(prefs)
    qtbot.addWidget(dialog)
    asked = []

    def check(address):
        asked.append(address)
        return f"Connected: 2 GPU(s) and 32 processor core(s) at {address}."

    monkeypatch.setattr(prefs_module, "connection_check", check)
    dialog.fields["render_on"].setCurrentIndex(dialog.fields["render_on"].findData("ray"))
    dialog.fields["ray_address"].setText("gpu-box:6379")
    dialog.ray_check.click()
    qtbot.waitUntil(lambda: dialog.ray_state.text().startswith("Connected"), timeout=5000)
    assert asked == ["gpu-box:6379"] and dialog.ray_check.isEnabled()
    dialog.fields["ray_address"].setText("not an address")
    dialog.accept()  # refused: the dialog says why and saves nothing
    assert "is not a Ray cluster address" in dialog.ray_state.text() and prefs.get("render_on") == "here"
    dialog.fields["ray_address"].setText("ray://gpu-box:10001")
    dialog.accept()
    assert prefs.ray_address() == "ray://gpu-box:10001"


def test_the_connection_check_without_ray_says_how_to_get_it(qtbot, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)
    dialog = PreferencesDialog(store(tmp_path))
    qtbot.addWidget(dialog)
    dialog.ray_check.click()  # the real check, in its thread
    qtbot.waitUntil(lambda: "pip install" in dialog.ray_state.text(), timeout=5000)
    assert dialog.ray_state.text() == ('Rendering through Ray needs Ray, which is not installed; install it with '
                                       'pip install "storystudio[ray]".')
