"""Screenshots of the main window's tabs at 1280x800, as docs/ shows them.

Runs the real app under an X server (Xvfb) on the example story, draws every
panel with a tiny random model (so the pictures are noise: no real weights can
be fetched where StoryStudio is built), lays the story out on pages and
captures the whole screen with ImageMagick's ``import`` for each tab:

    storystudio models create-tiny /tmp/tiny --arch sd15
    xvfb-run -s "-screen 0 1280x800x24" python tools/screenshots.py /tmp/tiny docs

writes docs/screenshot-main-window.png (the Panel tab, the Script dock in front),
screenshot-pages.png (the Messages dock in front), screenshot-animatic.png and screenshot-regions.png
(the Panel tab on a panel of two characters, with their boxes). The app's settings go to a temporary folder.
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


def main(model: str, out: str) -> int:
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
    print("drawing the panels…", flush=True)
    window.generate_all()
    pump(app, 600, until=lambda: not window.jobs.busy)
    print(window.statusBar().currentMessage(), flush=True)
    window.lay_out_pages()
    window.timeline.select_id(project.panels[1].id)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
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
    window.session.undo.setClean()
    window.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
