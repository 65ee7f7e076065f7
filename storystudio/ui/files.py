"""File dialogs that start in the last folder used (a preference), and remember the folder chosen."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QWidget

from .preferences import Preferences


def start_folder(preferences: Preferences | None, suggested: str = "") -> str:
    """Where a dialog opens: ``suggested`` when it names a folder (or a file in one), else the last folder
    used, else the home folder. A suggested bare file name goes into the last folder."""
    last = preferences.get("last_folder") if preferences is not None else ""
    if last and not Path(last).is_dir():
        last = ""
    base = last or str(Path.home())
    if not suggested:
        return base
    path = Path(suggested)
    if path.is_dir():
        return str(path)
    if path.parent != Path(".") and path.parent.is_dir():
        return str(path)
    return str(Path(base) / path.name)


def remember(preferences: Preferences | None, chosen: str, folder: bool = False) -> str:
    if chosen and preferences is not None:
        preferences.set("last_folder", str(Path(chosen) if folder else Path(chosen).parent))
    return chosen


def ask_open_file(parent: QWidget | None, preferences: Preferences | None, title: str, filters: str,
                  suggested: str = "") -> str:
    path, _ = QFileDialog.getOpenFileName(parent, title, start_folder(preferences, suggested), filters)
    return remember(preferences, path)


def ask_save_file(parent: QWidget | None, preferences: Preferences | None, title: str, filters: str,
                  suggested: str = "") -> str:
    path, _ = QFileDialog.getSaveFileName(parent, title, start_folder(preferences, suggested), filters)
    return remember(preferences, path)


def ask_folder(parent: QWidget | None, preferences: Preferences | None, title: str, suggested: str = "") -> str:
    path = QFileDialog.getExistingDirectory(parent, title, start_folder(preferences, suggested))
    return remember(preferences, path, folder=True)
