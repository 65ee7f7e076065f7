"""Every control in view: each tab and dock of the main window at 1280x800 and 1920x1080.

A visible control fails when it is smaller than its minimum size hint (its
text or contents cut), when a parent cuts it off, or when a scroll area's
viewport cuts it sideways (forms scroll up and down, never sideways); a
toolbar fails when actions hide behind its extension button.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QRect, QSettings
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractScrollArea,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDockWidget,
    QLabel,
    QLineEdit,
    QSlider,
    QToolBar,
    QWidget,
)

from storystudio.project.layout import auto_layout
from storystudio.ui.main_window import MainWindow

CONTROLS = (QAbstractButton, QLineEdit, QComboBox, QAbstractSpinBox, QLabel, QSlider)
SIZES = [(1280, 800), (1920, 1080)]


def _rect_in(widget: QWidget, top: QWidget) -> QRect:
    return QRect(widget.mapTo(top, QPoint(0, 0)), widget.size())


def clipped(window: QWidget) -> list[str]:
    """Plain descriptions of every visible control of ``window`` that is not wholly in view."""
    problems = []
    for widget in window.findChildren(QWidget):
        if not isinstance(widget, CONTROLS) or not widget.isVisible() or widget.window() is not window:
            continue
        if isinstance(widget, QLabel) and not widget.text() and widget.pixmap().isNull():
            continue
        if isinstance(widget, QLineEdit) and isinstance(widget.parentWidget(), (QAbstractSpinBox, QComboBox)):
            continue  # a spin box's or combo box's own text field: the box itself is checked
        if not _rect_in(widget, window).intersects(window.rect()):
            continue  # parked outside the window by Qt itself (a dock area's spare tab bar): not in the UI
        name = f"{type(widget).__name__} {getattr(widget, 'text', lambda: '')()!r:.40} in " \
               f"{_owner(widget)}"
        hint = widget.minimumSizeHint()
        if hint.isValid() and (widget.width() < hint.width() - 1 or widget.height() < hint.height() - 1):
            problems.append(f"{name}: {widget.width()}x{widget.height()} is smaller than its minimum "
                            f"{hint.width()}x{hint.height()}")
            continue
        rect = _rect_in(widget, window)
        parent = widget.parentWidget()
        scrolled = False  # inside a scroll area, only sideways cuts count (up and down is what it scrolls)
        while parent is not None and parent is not window:
            area = parent.parentWidget()
            bounds = _rect_in(parent, window)
            scrolled = scrolled or (isinstance(area, QAbstractScrollArea) and parent is area.viewport())
            if scrolled:
                cut = rect.left() < bounds.left() - 1 or rect.right() > bounds.right() + 1
            else:
                cut = not bounds.adjusted(-1, -1, 1, 1).contains(rect)
            if cut:
                problems.append(f"{name}: cut off by {type(parent).__name__} {parent.objectName()!r}")
                break
            parent = parent.parentWidget()
    for bar in window.findChildren(QToolBar):
        if bar.isVisible():
            hidden = [a.text() for a in bar.actions() if bar.widgetForAction(a) is not None
                      and not a.isSeparator() and not bar.widgetForAction(a).isVisible()]
            if hidden:
                problems.append(f"toolbar {bar.windowTitle()!r} hides {hidden} behind its extension button")
    return problems


def _owner(widget: QWidget) -> str:
    parent = widget
    while parent is not None:
        if isinstance(parent, QDockWidget):
            return f"the {parent.windowTitle()} dock"
        parent = parent.parentWidget()
    chain, parent = [], widget.parentWidget()
    while parent is not None and len(chain) < 3:
        chain.append(type(parent).__name__ + (f" {parent.objectName()!r}" if parent.objectName() else ""))
        parent = parent.parentWidget()
    return "the window (" + " < ".join(chain) + ")"


@pytest.fixture
def window(qtbot, tmp_path, comic):
    comic.layout = auto_layout(comic.panels, size="us-comic")
    win = MainWindow(comic, settings=QSettings(str(tmp_path / "q.ini"), QSettings.IniFormat))
    win.show()
    yield win
    win.session.undo.setClean()
    win.close()


def settle(qtbot) -> None:
    for _ in range(3):
        QApplication.processEvents()
        qtbot.wait(20)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_control_is_in_view_on_every_tab_and_dock(qtbot, window, size):
    window.resize(*size)
    settle(qtbot)
    assert (window.width(), window.height()) == size  # the docks' minimum widths fit the screen
    problems = {}
    for tab in range(window.tabs.count()):
        window.tabs.setCurrentIndex(tab)
        for name in ("script", "messages"):  # the two tabified docks, each in front once
            window.docks[name].raise_()
            settle(qtbot)
            for problem in clipped(window):
                problems.setdefault(problem, window.tabs.tabText(tab))
    assert not problems, "\n".join(f"[{tab} tab] {problem}" for problem, tab in problems.items())


def test_the_character_dock_keeps_its_layout(qtbot, window):
    window.resize(1280, 800)
    settle(qtbot)
    sheet = window.characters

    def geometry():
        return [(w.objectName(), _rect_in(w, sheet)) for w in
                (sheet.list, sheet.name_edit, sheet.description_edit, sheet.photo_button, sheet.generate_button,
                 sheet.references_area, sheet.panels_label, sheet.panel_list)]

    first = window.session.project.characters[0]
    sheet.select(first.id)
    settle(qtbot)
    before = geometry()
    sheet.select(window.session.project.characters[1].id)  # another character
    settle(qtbot)
    assert geometry() == before
    from helpers import flat_png

    from storystudio.ui.commands import ApplyReferences

    window.session.undo.push(ApplyReferences(window.session, first.id, [(flat_png((1, 2, 3)), {})] * 3))
    sheet.select(first.id)  # now with reference pictures
    settle(qtbot)
    assert sheet.references.isVisible() and geometry() == before
