"""Starting the desktop app: the window opens at once, torch loads when the first job needs it."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtWidgets import QApplication, QMessageBox

from ..project.fileio import ProjectFileError, load_project
from ..project.model import Project
from ..project.script import ScriptError


def initial_project(path: str | None) -> tuple[Project, str | None, str | None]:
    """The project to show first, its file path, and a problem to tell the user about (or None)."""
    if path is None:
        return Project.example(), None, None
    try:
        if path.endswith(".storystudio"):
            return load_project(path), path, None
        project = Project(title=Path(path).name.removesuffix(".txt").removesuffix(".story"))
        with open(path, encoding="utf-8") as f:
            project.import_script(f.read())
        return project, None, None
    except (ProjectFileError, ScriptError, OSError, UnicodeDecodeError) as exc:
        return Project.example(), None, f"{path} cannot be opened.\n\n{exc}"


def run_app(path: str | None = None) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("StoryStudio")
    app.setOrganizationName("StoryStudio")
    from .main_window import MainWindow, offer_recovery

    project, file_path, problem = initial_project(path)
    autosave = None
    recovered = offer_recovery() if path is None else None
    if recovered is not None:
        project, file_path, autosave = recovered
    window = MainWindow(project, file_path, recovered_from=autosave)
    window.show()
    if problem:
        QMessageBox.warning(window, "StoryStudio", problem)
    return app.exec()
