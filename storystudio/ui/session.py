"""The open project in the GUI: the document, its file, its undo stack and change signals.

Every edit goes through an undo command (``commands.py``) that calls the
mutators here; views listen to the signals and redraw. Nothing here runs
generation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from ..project.fileio import load_project, save_project
from ..project.animatic import Animatic
from ..project.layout import Layout
from ..project.model import Project, ProjectCharacter, ProjectPanel


class ProjectSession(QObject):
    panels_changed = Signal()  # order, insertions or deletions
    panel_changed = Signal(str)  # one panel's text, versions or status
    characters_changed = Signal()
    settings_changed = Signal()
    project_replaced = Signal()  # a new or opened project
    layout_changed = Signal()  # pages, frames, balloons or page settings
    animatic_changed = Signal()  # shots, cuts or video settings

    def __init__(self, project: Project | None = None, path: str | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.undo = QUndoStack(self)
        self.project = project or Project.example()
        self.path = path

    # ---- whole documents -----------------------------------------------------------
    def replace(self, project: Project, path: str | None) -> None:
        self.project = project
        self.path = path
        self.undo.clear()
        self.project_replaced.emit()

    def open(self, path: str) -> None:
        self.replace(load_project(path), str(path))

    def save(self, path: str | None = None) -> str:
        target = str(path or self.path)
        save_project(self.project, target)
        self.path = target
        self.undo.setClean()
        return target

    @property
    def dirty(self) -> bool:
        return not self.undo.isClean()

    @property
    def display_name(self) -> str:
        return Path(self.path).name if self.path else (self.project.title or "Untitled")

    # ---- panels ----------------------------------------------------------------------
    def panel(self, panel_id: str) -> ProjectPanel:
        panel = self.project.panel_by_id(panel_id)
        if panel is None:
            raise KeyError(panel_id)
        return panel

    def order(self) -> list[str]:
        return [p.id for p in self.project.panels]

    def set_order(self, ids: list[str]) -> None:
        by_id = {p.id: p for p in self.project.panels}
        self.project.panels = [by_id[i] for i in ids]
        self.project.touch()
        self.panels_changed.emit()

    def insert_panels(self, index: int, panels: list[ProjectPanel]) -> None:
        self.project.panels[index:index] = panels
        self.project.touch()
        self.panels_changed.emit()

    def remove_panels(self, ids: list[str]) -> list[tuple[int, ProjectPanel]]:
        removed = [(i, p) for i, p in enumerate(self.project.panels) if p.id in ids]
        self.project.panels = [p for p in self.project.panels if p.id not in ids]
        self.project.touch()
        self.panels_changed.emit()
        return removed

    def set_panel_field(self, panel_id: str, field: str, value: Any) -> None:
        setattr(self.panel(panel_id), field, value)
        self.project.touch()
        self.panel_changed.emit(panel_id)

    def set_story(self, characters: list[ProjectCharacter], panels: list[ProjectPanel], layout: Layout) -> None:
        """Cast, panels and pages at once (a story script applied, or undone)."""
        self.project.characters = characters
        self.project.panels = panels
        self.project.layout = layout
        self.project.touch()
        self.characters_changed.emit()
        self.panels_changed.emit()
        self.layout_changed.emit()

    # ---- characters -------------------------------------------------------------------
    def character(self, character_id: str) -> ProjectCharacter:
        c = self.project.character_by_id(character_id)
        if c is None:
            raise KeyError(character_id)
        return c

    def insert_character(self, index: int, character: ProjectCharacter) -> None:
        self.project.characters.insert(index, character)
        self.project.touch()
        self.characters_changed.emit()

    def remove_character(self, character_id: str) -> tuple[int, ProjectCharacter]:
        index = next(i for i, c in enumerate(self.project.characters) if c.id == character_id)
        character = self.project.characters.pop(index)
        self.project.touch()
        self.characters_changed.emit()
        return index, character

    def set_character_field(self, character_id: str, field: str, value: Any) -> None:
        setattr(self.character(character_id), field, value)
        self.project.touch()
        self.characters_changed.emit()

    def panels_showing(self, character_id: str) -> list[ProjectPanel]:
        name = self.character(character_id).name
        return [p for p in self.project.panels if name in p.characters()]

    # ---- pages -----------------------------------------------------------------------
    def set_layout(self, layout: Layout) -> None:
        self.project.layout = layout
        self.project.touch()
        self.layout_changed.emit()

    def set_animatic(self, animatic: Animatic) -> None:
        self.project.animatic = animatic
        self.project.touch()
        self.animatic_changed.emit()

    # ---- settings --------------------------------------------------------------------
    def set_setting(self, field: str, value: Any) -> None:
        setattr(self.project.settings, field, value)
        self.project.touch()
        self.settings_changed.emit()
