"""Starting the desktop app: the window opens at once, torch loads when the first job needs it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import QSize, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QMessageBox

from ..desktop import APP_ID, ICON_SIZES, icon_png
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


def app_icon() -> QIcon:
    """The application icon at every size it is drawn in (resources/icons/)."""
    icon = QIcon()
    for size in ICON_SIZES:
        icon.addFile(str(icon_png(size)), QSize(size, size))
    return icon


def set_identity(app: QApplication) -> None:
    """Name and icon, for the title bars, the taskbar and the desktop's matching with the menu entry."""
    app.setApplicationName("StoryStudio")
    app.setOrganizationName("StoryStudio")
    app.setDesktopFileName(APP_ID)  # Wayland's app id; the entry is storystudio.desktop
    app.setWindowIcon(app_icon())


def _smoke_report(window) -> None:
    """STORYSTUDIO_SMOKE_TEST=1: say what opened; once the worker has imported torch and diffusers (its
    warm-up), say so and close the window as a user would. packaging/smoke_test.sh checks a bundle with it."""
    sizes = sorted(s.width() for s in window.windowIcon().availableSizes())
    print(f"StoryStudio window: {window.windowTitle()!r}, {len(window.session.project.panels)} panels, "
          f"icon sizes {sizes}", flush=True)
    timer = QTimer(window)

    def close_when_idle() -> None:
        if not window.service.busy:
            timer.stop()
            print("StoryStudio worker: ready", flush=True)
            window.close()

    timer.timeout.connect(close_when_idle)
    timer.start(50)


def run_app(path: str | None = None) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    set_identity(app)
    from .main_window import MainWindow, offer_recovery

    project, file_path, problem = initial_project(path)
    autosave = None
    recovered = offer_recovery() if path is None else None
    if recovered is not None:
        project, file_path, autosave = recovered
    window = MainWindow(project, file_path, recovered_from=autosave)
    window.show()
    if not project.settings.model:
        window.statusBar().showMessage("No picture model chosen yet: press Generate All, and the Models dialog "
                                       "offers one to download or finds one you have.")
    if os.environ.get("STORYSTUDIO_SMOKE_TEST"):
        QTimer.singleShot(0, lambda: _smoke_report(window))
    elif problem:
        QMessageBox.warning(window, "StoryStudio", problem)
    code = app.exec()
    return end_threads(code)


def end_threads(code: int) -> int:
    """After the window closed: let exports and the like stop, and if a thread is still busy (a model load
    or a slow step that does not stop within the window's wait) end the process here, cleanly for the
    user (the project was saved or discarded when the window closed), instead of the abort that Qt gives
    a running thread destroyed at Python's exit."""
    from .threads import threads_still_running, wait_for_workers

    wait_for_workers(3000)
    if threads_still_running():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
