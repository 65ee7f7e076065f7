"""The placeholder window: shows a story read-only and says that it is a placeholder."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QApplication, QMessageBox

from conftest import EXAMPLE, SMALL_STORY
from storystudio import cli
from storystudio.ui import app as app_module
from storystudio.ui.app import PlaceholderWindow


def items(widget) -> list[str]:
    return [widget.item(i).text() for i in range(widget.count())]


@pytest.fixture
def warnings_shown(monkeypatch) -> list[tuple]:
    """Record QMessageBox.warning calls instead of opening a blocking dialog."""
    calls: list[tuple] = []

    def fake_warning(*args, **kwargs):
        calls.append(args)
        return QMessageBox.StandardButton.Ok

    monkeypatch.setattr(QMessageBox, "warning", fake_warning)
    return calls


@pytest.fixture
def small_script(tmp_path):
    path = tmp_path / "small.story.txt"
    path.write_text(SMALL_STORY, encoding="utf-8")
    return path


@pytest.fixture
def broken_script(tmp_path):
    path = tmp_path / "broken.story.txt"
    path.write_text("[Ann] a girl with red hair\n\n[Ann] reads a book\n[Zed] dances\n", encoding="utf-8")
    return path


def test_opens_with_the_example_story_and_says_it_is_a_placeholder(qtbot, warnings_shown):
    window = PlaceholderWindow()
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)

    assert "placeholder" in window.windowTitle().lower()
    assert "lighthouse" in window.windowTitle()
    assert window.note.isVisible()
    assert "placeholder" in window.note.text().lower()
    assert "storystudio render" in window.note.text()

    cast = items(window.cast)
    assert len(cast) == 2
    assert cast[0].startswith("[Mira] ") and "copper hair" in cast[0]
    assert cast[1].startswith("[Tobias] ")
    panels = items(window.panels)
    assert len(panels) == 8
    assert panels[0].startswith("1. ") and "Mira had never been this far" in panels[0]
    assert panels[-1].startswith("8. ")
    assert warnings_shown == []


def test_window_shows_the_script_it_is_given(qtbot, small_script, warnings_shown):
    window = PlaceholderWindow(str(small_script))
    qtbot.addWidget(window)
    assert window.windowTitle().startswith("small - ")
    assert "placeholder" in window.windowTitle().lower()
    assert [c.split("]")[0] for c in items(window.cast)] == ["[Ann", "[Bo"]
    panels = items(window.panels)
    assert len(panels) == 6
    assert panels[0] == "1. [Ann] reads a book  # Ann loves books."
    assert panels[4] == "5. a quiet street at night  # Later."
    assert warnings_shown == []


def test_load_replaces_the_story(qtbot, small_script, warnings_shown):
    window = PlaceholderWindow(str(EXAMPLE))
    qtbot.addWidget(window)
    assert window.panels.count() == 8
    assert window.load(str(small_script)) is True
    assert window.panels.count() == 6 and window.cast.count() == 2
    assert items(window.cast)[0].startswith("[Ann] ")
    assert window.windowTitle().startswith("small - ")


def test_a_broken_script_warns_and_keeps_the_old_story(qtbot, broken_script, warnings_shown):
    window = PlaceholderWindow(str(EXAMPLE))
    qtbot.addWidget(window)
    before = (window.windowTitle(), items(window.cast), items(window.panels))

    assert window.load(str(broken_script)) is False
    assert len(warnings_shown) == 1
    parent, _title, text = warnings_shown[0][:3]
    assert parent is window
    assert "[Zed]" in text and "Line 4" in text
    assert (window.windowTitle(), items(window.cast), items(window.panels)) == before

    assert window.load(str(broken_script.with_name("missing.story.txt"))) is False
    assert len(warnings_shown) == 2 and "does not exist" in warnings_shown[1][2]
    assert (window.windowTitle(), items(window.cast), items(window.panels)) == before


def test_a_broken_script_at_start_opens_an_empty_window(qtbot, broken_script, warnings_shown):
    window = PlaceholderWindow(str(broken_script))
    qtbot.addWidget(window)
    assert len(warnings_shown) == 1
    assert window.cast.count() == 0 and window.panels.count() == 0
    assert "placeholder" in window.windowTitle().lower()


def test_start_app_refuses_two_paths(capsys, monkeypatch):
    started = []
    monkeypatch.setattr(app_module, "run_app", lambda path=None: started.append(path) or 0)
    assert cli._start_app(["one.story.txt", "two.story.txt"]) == cli.EXIT_USER == 2
    err = capsys.readouterr().err
    assert err.startswith("storystudio: ") and "at most one" in err and "Traceback" not in err
    # main() sends two bare paths to the same check, before any window exists
    assert cli.main(["one.story.txt", "two.story.txt"]) == 2
    assert started == []


def test_start_app_passes_one_path_to_the_window(monkeypatch):
    started = []
    monkeypatch.setattr(app_module, "run_app", lambda path=None: started.append(path) or 0)
    assert cli._start_app(["one.story.txt"]) == 0
    assert cli._start_app([]) == 0
    assert started == ["one.story.txt", None]


def test_run_app_shows_the_window_and_returns_the_loop_result(qtbot, small_script, monkeypatch, warnings_shown):
    seen = []

    def fake_exec(self):  # stands in for the event loop: look at the windows, then "quit"
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, PlaceholderWindow) and widget.isVisible():
                seen.append(widget.panels.count())
                widget.close()
        return 7

    monkeypatch.setattr(QApplication, "exec", fake_exec)
    assert app_module.run_app(str(small_script)) == 7
    assert seen == [6]
