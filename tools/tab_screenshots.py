"""Screenshots of the Pages and Animatic tabs for the docs, in the whole window at a given size.

The sample project of ``sample_comic.py`` (the example story, placeholder
art, laid out on US comic pages); the first panel's shot is a zoom-in. Run it
under a real X server for the real fonts and style, e.g. Xvfb:

    Xvfb :77 -screen 0 1920x1080x24 &
    DISPLAY=:77 python tools/tab_screenshots.py docs 1280x800   # docs/screenshot-pages.png, -animatic.png

It also prints any control of the tab shown smaller than its size hint (the
check tests/ui/test_tabs_fit.py makes).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QWidget

sys.path.insert(0, str(Path(__file__).parent))
from sample_comic import placeholder_art  # noqa: E402

from storystudio.export.page_render import ensure_gui_app  # noqa: E402
from storystudio.project.animatic import CameraMove, Shot  # noqa: E402
from storystudio.project.layout import auto_layout, generation_size  # noqa: E402
from storystudio.project.model import Project  # noqa: E402


def sample_project() -> Project:
    project = Project.example()
    project.layout = auto_layout(project.panels, size="us-comic")
    for i, panel in enumerate(project.panels):
        _, frame = project.layout.page_of_panel(panel.id)
        art = placeholder_art(i, len(panel.characters()), generation_size(frame.aspect, 512 * 512))
        project.add_version(panel.id, art, {"placeholder": True})
    project.animatic.shots[project.panels[0].id] = Shot(CameraMove.preset("zoom-in"))
    return project


def clipped(root: QWidget) -> list[str]:
    out = []
    for widget in root.findChildren(QWidget):
        if not widget.isVisible() or not isinstance(widget, (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit)):
            continue
        if isinstance(widget.parentWidget(), (QAbstractSpinBox, QComboBox)):
            continue
        seen, hint = widget.visibleRegion().boundingRect(), widget.sizeHint()
        if seen.width() < hint.width() or seen.height() < hint.height():
            out.append(f"{type(widget).__name__} {getattr(widget, 'text', lambda: '')()!r}")
    return out


def main(out: Path, size: str) -> None:
    app = ensure_gui_app()
    from storystudio.ui.main_window import MainWindow

    settings = QSettings(str(Path(tempfile.mkdtemp()) / "settings.ini"), QSettings.IniFormat)
    window = MainWindow(sample_project(), settings=settings)
    width, height = (int(v) for v in size.split("x"))
    window.resize(width, height)
    window.move(0, 0)
    window.show()
    shots = [("pages", window.canvas), ("animatic", window.animatic)]

    def pages() -> None:
        canvas = window.canvas
        balloon = next(b for b in canvas.page.balloons if b.kind == "speech")
        for item in canvas.scene.items():
            if getattr(item, "item_id", None) == balloon.id:
                item.setSelected(True)

    def animatic() -> None:
        editor = window.animatic
        editor._picked("shot", window.session.project.panels[0].id)
        editor.player.seek(30)

    def take(index: int) -> None:
        name, tab = shots[index]
        target = out / f"screenshot-{name}.png"
        window.grab().save(str(target))
        problems = clipped(tab)
        print(f"wrote {target} ({window.width()} x {window.height()}); "
              + ("every control whole" if not problems else "clipped: " + ", ".join(problems)))
        if index + 1 < len(shots):
            show(index + 1)
        else:
            window.session.undo.setClean()
            window.close()
            app.quit()

    def show(index: int) -> None:
        window.tabs.setCurrentWidget(shots[index][1])
        QTimer.singleShot(600, pages if index == 0 else animatic)
        QTimer.singleShot(2000, lambda: take(index))

    QTimer.singleShot(500, lambda: show(0))
    app.exec()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"), sys.argv[2] if len(sys.argv) > 2 else "1280x800")
