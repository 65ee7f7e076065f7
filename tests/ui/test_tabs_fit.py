"""The Pages and Animatic tabs show every control whole at 1280x800 and 1920x1080: nothing clipped,
nothing behind a toolbar's "»"."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLabel,
    QLineEdit,
    QSlider,
    QWidget,
)

from helpers import COLOURS, flat_png

from storystudio.project.layout import auto_layout
from storystudio.project.model import Project
from storystudio.ui.commands import MovePanels
from storystudio.ui.main_window import MainWindow

CONTROLS = (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit, QSlider, QLabel)


def clipped_controls(root: QWidget) -> list[str]:
    """Every visible control under ``root`` whose visible part is smaller than its size hint.

    A spin box's or combo box's own line edit is part of it (it is checked as a whole); a label
    that wraps its words is allowed to be narrower than one line of them.
    """
    found = []
    for widget in root.findChildren(QWidget):
        if not isinstance(widget, CONTROLS) or not widget.isVisible():
            continue
        if isinstance(widget.parentWidget(), (QAbstractSpinBox, QComboBox)):
            continue
        if isinstance(widget, QLabel) and (widget.wordWrap() or not widget.text()):
            continue
        if widget.objectName() == "qt_toolbar_ext_button":
            found.append(f'a toolbar "»" in {type(widget.parentWidget()).__name__} hides controls')
            continue
        visible = widget.visibleRegion().boundingRect()
        hint = widget.sizeHint()
        if visible.width() < hint.width() or visible.height() < hint.height():
            text = getattr(widget, "text", lambda: "")() if not isinstance(widget, QComboBox) else widget.currentText()
            found.append(f"{type(widget).__name__} {text!r}: shows {visible.width()}x{visible.height()} of "
                         f"{hint.width()}x{hint.height()}")
    return found


@pytest.fixture
def project() -> Project:
    project = Project.example()
    for panel, colour in zip(project.panels, COLOURS):
        project.add_version(panel.id, flat_png(colour, (160, 120)), {})
    project.layout = auto_layout(project.panels)
    return project


@pytest.fixture
def window(qtbot, tmp_path, project):
    settings = QSettings(str(tmp_path / "qsettings.ini"), QSettings.IniFormat)
    window = MainWindow(project, settings=settings)
    yield window
    window.session.undo.setClean()  # close without asking to save
    window.close()


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_pages_and_animatic_tabs_show_every_control_whole(qtbot, window, size):
    window.resize(*size)
    window.show()
    qtbot.waitExposed(window)
    problems = []

    def look(what: str) -> None:
        for _ in range(3):  # wrapped rows settle over a couple of layout passes
            QApplication.processEvents()
        problems.extend(f"{what}: {p}" for p in clipped_controls(window.tabs.currentWidget()))

    window.tabs.setCurrentWidget(window.canvas)
    canvas = window.canvas
    look("Pages")
    canvas.scene.clearSelection()
    balloon = next(i for i in canvas.scene.items() if getattr(i, "item_id", None) == canvas.page.balloons[0].id)
    balloon.setSelected(True)  # the balloon tools are enabled
    look("Pages, a balloon selected")
    session = window.session
    session.undo.push(MovePanels(session, [session.project.panels[0].id], 3))
    look("Pages out of story order")
    assert canvas.check_bar.isVisible()  # the bar that says so is there, and whole

    window.tabs.setCurrentWidget(window.animatic)
    editor = window.animatic
    look("Animatic")
    editor._picked("shot", session.project.panels[0].id)
    look("Animatic, a shot")
    editor._picked("cut", session.project.panels[0].id)
    look("Animatic, a transition")
    editor.side.setCurrentIndex(1)
    look("Animatic, video settings")
    assert problems == [], "\n".join(problems)


def test_the_check_finds_a_clipped_control(qtbot):
    """The check itself: a button squeezed narrower than its words is found."""
    holder = QWidget()
    qtbot.addWidget(holder)
    from PySide6.QtWidgets import QPushButton

    button = QPushButton("A button with a long name", holder)
    button.setGeometry(0, 0, 40, 30)
    holder.resize(200, 100)
    holder.show()
    qtbot.waitExposed(holder)
    assert clipped_controls(holder) and "A button with a long name" in clipped_controls(holder)[0]
    button.setGeometry(0, 0, button.sizeHint().width(), button.sizeHint().height())
    assert clipped_controls(holder) == []
