"""Screenshots of the main window's tabs at 1280x800, as docs/ shows them.

Runs the real app under an X server (Xvfb) on the example story, draws every
panel with a tiny random model (so the pictures are noise: no real weights can
be fetched where StoryStudio is built), lays the story out on pages and
captures the whole screen with ImageMagick's ``import`` for each tab:

    storystudio models create-tiny /tmp/tiny --arch sd15
    xvfb-run -s "-screen 0 1280x800x24" python tools/screenshots.py /tmp/tiny docs

writes docs/screenshot-main-window.png (the Panel tab, the Script dock in front),
screenshot-pages.png (the Messages dock in front), screenshot-animatic.png, screenshot-regions.png
(the Panel tab on a panel of two characters, with their boxes) and screenshot-pose-editor.png
(the pose editor over the window, on the panel where Mira and Tobias meet: a drawn pose each). With
``--pose-editor`` only the last is made, without drawing the panels first. The app's settings go to a
temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("XDG_CONFIG_HOME", tempfile.mkdtemp(prefix="storystudio-shots-"))
os.environ.setdefault("STORYSTUDIO_DATA_DIR", tempfile.mkdtemp(prefix="storystudio-shots-data-"))

from PySide6.QtWidgets import QApplication  # noqa: E402

from storystudio.project.model import Project  # noqa: E402


def pump(app: QApplication, seconds: float, until=None) -> None:
    """Run the event loop for ``seconds`` (or until ``until()`` is true, checked every 50 ms)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop, timer, end = QEventLoop(), QTimer(), time.monotonic() + seconds
    timer.timeout.connect(lambda: loop.quit() if time.monotonic() > end or (until and until()) else None)
    timer.start(50)
    loop.exec()
    timer.stop()


def pose_editor_shot(app: QApplication, window, folder: Path) -> Path:
    """The pose editor on the first panel that shows two characters, each given a pose, captured."""
    from storystudio.project import pose
    from storystudio.ui.pose_editor import PoseEditorDialog

    project = window.session.project
    panel = next(p for p in project.panels if len(p.characters()) >= 2)
    window.timeline.select_id(panel.id)
    size = panel.size or (project.settings.width, project.settings.height)
    version = panel.chosen_version
    from PySide6.QtGui import QImage

    backdrop = QImage.fromData(project.images.get(version.image, b"")) if version else None
    dialog = PoseEditorDialog(panel, project.panel_index(panel.id) + 1, panel.characters(), project.images, size,
                              backdrop, window)
    dialog.resize(900, 700)
    dialog.move(190, 50)
    dialog.show()
    for index, preset in ((0, "walking"), (1, "arms up")):
        dialog.who.setCurrentIndex(index)
        dialog.preset.setCurrentIndex(list(pose.PRESETS).index(preset))
        dialog.draw_preset()
    dialog.who.setCurrentIndex(0)
    pump(app, 1.5)
    path = folder / "screenshot-pose-editor.png"
    subprocess.run(["import", "-window", "root", str(path)], check=True)
    dialog.reject()
    return path


def main(model: str, out: str, pose_only: bool = False) -> int:
    app = QApplication(sys.argv[:1])
    from storystudio.ui.app import set_identity
    from storystudio.ui.main_window import MainWindow

    set_identity(app)
    project = Project.example()
    st = project.settings
    st.model, st.device, st.width, st.height, st.steps, st.id_length = model, "cpu", 512, 512, 4, 2
    window = MainWindow(project)
    window.show()
    window.move(0, 0)
    window.resize(1280, 800)
    pump(app, 1)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if pose_only:
        print(f"wrote {pose_editor_shot(app, window, folder)}")
        pump(app, 120, until=lambda: not window.jobs.busy)  # the worker's warm-up ends before the window closes
        window.session.undo.setClean()
        window.close()
        return 0
    print("drawing the panels…", flush=True)
    window.generate_all()
    pump(app, 600, until=lambda: not window.jobs.busy)
    print(window.statusBar().currentMessage(), flush=True)
    window.lay_out_pages()
    window.timeline.select_id(project.panels[1].id)
    for index, name, dock in ((0, "main-window", "script"), (1, "pages", "messages"), (2, "animatic", "script")):
        window.tabs.setCurrentIndex(index)
        window.docks[dock].raise_()
        pump(app, 1.5)
        subprocess.run(["import", "-window", "root", str(folder / f"screenshot-{name}.png")], check=True)
        print(f"wrote {folder / f'screenshot-{name}.png'}")
    # The Panel tab on a shared panel: each character's box over the picture (moved a little, as a user does).
    cast = [c.name for c in project.characters]
    shared = next(p for p in project.panels if len(p.characters(cast)) >= 2)
    window.timeline.select_id(shared.id)
    window.tabs.setCurrentIndex(0)
    boxes = shared.drawn_regions(cast)
    window.panel_view._commit_regions([boxes[0].with_box((0.05, 0.15, 0.5, 0.95)),
                                       boxes[1].with_box((0.45, 0.05, 0.95, 0.9))])
    pump(app, 1.5)
    subprocess.run(["import", "-window", "root", str(folder / "screenshot-regions.png")], check=True)
    print(f"wrote {folder / 'screenshot-regions.png'}")
    window.tabs.setCurrentIndex(0)
    print(f"wrote {pose_editor_shot(app, window, folder)}")
    window.session.undo.setClean()
    window.close()
    return 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--pose-editor"]
    if len(args) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(args[0], args[1], pose_only="--pose-editor" in sys.argv[1:]))
