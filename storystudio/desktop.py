"""StoryStudio on the Linux desktop: the menu entry, the icon, and the ``.storystudio`` file type.

    storystudio install-desktop     add the menu entry and icons, open .storystudio files with StoryStudio
    storystudio uninstall-desktop   take them away again

The files go into the user's data folder (``$XDG_DATA_HOME``, by default
``~/.local/share``), so nothing needs root::

    applications/storystudio.desktop                       the menu entry, starting this very program
    icons/hicolor/NxN/apps/storystudio.png                 the icon, 16..512 (and scalable/ the SVG)
    icons/hicolor/NxN/mimetypes/application-x-storystudio.png
    mime/packages/storystudio.xml                          the file type (shared-mime-info)

and ``mimeapps.list`` in ``$XDG_CONFIG_HOME`` names StoryStudio as the default
for its file type. The desktop's caches are then refreshed with the
freedesktop tools where they are installed (update-mime-database,
update-desktop-database, gtk-update-icon-cache); without them the files are
still right and are read at the next login.

The entry and the file type are data in ``resources/desktop/``; the entry's
``Exec`` is filled in with the program that runs this, so it works from a
virtual environment or a bundle without being on the PATH. No Qt here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .resources_path import resource

APP_ID = "storystudio"
DESKTOP_FILE = f"{APP_ID}.desktop"
MIME_TYPE = "application/x-storystudio"
MIME_ICON = MIME_TYPE.replace("/", "-")
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
DEFAULTS_SECTION = "[Default Applications]"


class DesktopError(Exception):
    """Something the user has to change; the message is one plain sentence."""


def icon_png(size: int) -> Path:
    return resource("icons", f"{APP_ID}-{size}.png")


def icon_svg() -> Path:
    return resource("icons", f"{APP_ID}.svg")


def desktop_template() -> Path:
    return resource("desktop", DESKTOP_FILE)


def mime_xml() -> Path:
    return resource("desktop", f"{APP_ID}-mime.xml")


def data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def program() -> list[str]:
    """The command that starts this StoryStudio: the bundle's program, the environment's script, or python -m."""
    if getattr(sys, "frozen", False):
        return [str(Path(sys.executable).resolve())]
    script = Path(sys.executable).parent / APP_ID
    if script.is_file():
        return [str(script)]
    return [str(Path(sys.executable).resolve()), "-m", APP_ID]


_EXEC_RESERVED = set(' \t\n"\'\\><~|&;$*?#()`')


def exec_quote(arg: str) -> str:
    """One argument of a desktop entry's Exec key (the Desktop Entry Specification's quoting)."""
    if arg and not _EXEC_RESERVED & set(arg):
        return arg.replace("%", "%%")
    escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg).replace("%", "%%")
    # the value is itself a desktop-file string, where a backslash is written twice
    return '"' + escaped.replace("\\", "\\\\") + '"'


def desktop_entry(command: list[str]) -> str:
    """The menu entry (resources/desktop/storystudio.desktop) with Exec and TryExec set to ``command``."""
    lines = []
    for line in desktop_template().read_text(encoding="utf-8").splitlines():
        if line.startswith("Exec="):
            line = "Exec=" + " ".join(exec_quote(a) for a in command) + " %f"
        elif line.startswith("TryExec="):
            line = "TryExec=" + command[0]
        lines.append(line)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Layout:
    """Where the desktop files go."""

    data: Path
    config: Path

    @property
    def entry(self) -> Path:
        return self.data / "applications" / DESKTOP_FILE

    @property
    def mime_package(self) -> Path:
        return self.data / "mime" / "packages" / f"{APP_ID}.xml"

    @property
    def mimeapps(self) -> Path:
        return self.config / "mimeapps.list"

    def icons(self) -> dict[Path, Path]:
        """Installed icon path -> the resource it is a copy of."""
        hicolor = self.data / "icons" / "hicolor"
        out = {}
        for size in ICON_SIZES:
            folder = hicolor / f"{size}x{size}"
            out[folder / "apps" / f"{APP_ID}.png"] = icon_png(size)
            out[folder / "mimetypes" / f"{MIME_ICON}.png"] = icon_png(size)
        out[hicolor / "scalable" / "apps" / f"{APP_ID}.svg"] = icon_svg()
        out[hicolor / "scalable" / "mimetypes" / f"{MIME_ICON}.svg"] = icon_svg()
        return out

    def files(self) -> list[Path]:
        return [self.entry, self.mime_package, *self.icons()]


def _set_default(mimeapps: Path, value: str | None) -> None:
    """Make ``value`` the default for the file type in mimeapps.list, or with None remove StoryStudio's default
    (another program's is left alone). Every other line stays as it was."""
    lines = mimeapps.read_text(encoding="utf-8").splitlines() if mimeapps.exists() else []
    out: list[str] = []
    section, insert_at = None, None
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped
            out.append(line)
            if section == DEFAULTS_SECTION and insert_at is None:
                insert_at = len(out)
            continue
        key, _, apps = stripped.partition("=")
        if section == DEFAULTS_SECTION and key.strip() == MIME_TYPE:
            if value is None and DESKTOP_FILE not in apps.split(";"):
                out.append(line)  # another program's default: not ours to remove
            continue
        out.append(line)
    if value is not None:
        entry = f"{MIME_TYPE}={value}"
        if insert_at is None:
            out += ([""] if out and out[-1].strip() else []) + [DEFAULTS_SECTION, entry]
        else:
            out.insert(insert_at, entry)
    if out == lines:
        return
    mimeapps.parent.mkdir(parents=True, exist_ok=True)
    part = mimeapps.with_name(mimeapps.name + ".part")
    part.write_text("\n".join(out) + "\n", encoding="utf-8")
    os.replace(part, mimeapps)


def _refresh(layout: Layout, run=subprocess.run) -> list[str]:
    """Rebuild the desktop's caches for what changed; the tools that ran."""
    ran = []
    for tool, args in (("update-mime-database", [layout.data / "mime"]),
                       ("update-desktop-database", ["-q", layout.data / "applications"]),
                       ("gtk-update-icon-cache", ["-q", "-f", "-t", layout.data / "icons" / "hicolor"])):
        path = shutil.which(tool)
        if path is None or not Path(args[-1]).is_dir():
            continue
        run([path, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        ran.append(tool)
    return ran


def install(layout: Layout, command: list[str], refresh: bool = True) -> list[Path]:
    """Write the entry, icons and file type; make StoryStudio the default for it. The files written."""
    written = []
    for target, source in layout.icons().items():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        written.append(target)
    layout.mime_package.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mime_xml(), layout.mime_package)
    layout.entry.parent.mkdir(parents=True, exist_ok=True)
    part = layout.entry.with_name(DESKTOP_FILE + ".part")
    part.write_text(desktop_entry(command), encoding="utf-8")
    os.replace(part, layout.entry)
    written += [layout.mime_package, layout.entry]
    _set_default(layout.mimeapps, DESKTOP_FILE + ";")
    if refresh:
        _refresh(layout)
    return written


def uninstall(layout: Layout, refresh: bool = True) -> list[Path]:
    """Remove what :func:`install` wrote (and empty folders it leaves); the files removed."""
    removed = []
    for path in layout.files():
        if path.exists():
            path.unlink()
            removed.append(path)
            folder = path.parent
            while folder != layout.data and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent
    _set_default(layout.mimeapps, None)
    if refresh:
        _refresh(layout)
    return removed


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "install-desktop"
    parser = argparse.ArgumentParser(
        prog=f"storystudio {command}",
        description="Add StoryStudio to the desktop menu and open .storystudio files with it (Linux)."
        if command == "install-desktop" else "Remove StoryStudio's desktop menu entry, icons and file type.")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the files go (default $XDG_DATA_HOME, else ~/.local/share)")
    parser.add_argument("--config-dir", type=Path, default=None,
                        help="where mimeapps.list is (default $XDG_CONFIG_HOME, else ~/.config)")
    if command == "install-desktop":
        parser.add_argument("--exec", dest="program", default=None, metavar="PROGRAM",
                            help="the program the menu entry starts (default: this StoryStudio)")
    args = parser.parse_args(argv[1:])
    if not sys.platform.startswith("linux"):
        print(f"storystudio: {command} is for Linux desktops; on Windows the installer and on macOS the app "
              "bundle register StoryStudio.", file=sys.stderr)
        return 2
    layout = Layout(args.data_dir or data_home(), args.config_dir or config_home())
    try:
        if command == "install-desktop":
            cmd = [str(Path(args.program).resolve())] if args.program else program()
            install(layout, cmd)
            print(f"StoryStudio is in the desktop menu ({layout.entry}) and opens .storystudio files.")
        else:
            removed = uninstall(layout)
            print(f"Removed {len(removed)} files of StoryStudio's desktop integration." if removed
                  else "StoryStudio's desktop integration was not installed here.")
    except OSError as exc:
        print(f"storystudio: the desktop files could not be written in {layout.data} "
              f"({exc.strerror or exc}).", file=sys.stderr)
        return 2
    return 0
