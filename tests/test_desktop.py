"""Desktop integration: the entry, the icons and the file type written into a user data folder and taken out."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from storystudio import cli, desktop

MIME_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"


def read_entry(text: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    parser.read_string(text)
    return parser["Desktop Entry"]


@pytest.mark.parametrize("size", desktop.ICON_SIZES)
def test_icon_pngs_are_real_pictures_of_their_size(size):
    path = desktop.icon_png(size)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size == (size, size) and image.mode == "RGBA"
        alpha = image.getchannel("A")
        assert alpha.getpixel((0, 0)) == 0  # rounded corners: the tile does not fill the square
        assert alpha.getpixel((size // 2, size // 2)) == 255


def test_icon_svg_is_the_source_at_512():
    root = ET.parse(desktop.icon_svg()).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox") == "0 0 512 512"


def test_entry_and_file_type_agree():
    entry = read_entry(desktop.desktop_template().read_text(encoding="utf-8"))
    assert entry["Type"] == "Application" and entry["Name"] == "StoryStudio"
    assert entry["Icon"] == desktop.APP_ID and entry["MimeType"] == desktop.MIME_TYPE + ";"
    assert entry["Exec"].endswith(" %f")
    mime = ET.parse(desktop.mime_xml()).getroot()
    (mime_type,) = mime.findall(f"{MIME_NS}mime-type")
    assert mime_type.get("type") == desktop.MIME_TYPE
    assert [g.get("pattern") for g in mime_type.findall(f"{MIME_NS}glob")] == ["*.storystudio"]
    assert mime_type.find(f"{MIME_NS}generic-icon").get("name") == desktop.MIME_ICON
    assert mime_type.find(f"{MIME_NS}sub-class-of").get("type") == "application/zip"


def test_file_type_magic_matches_a_saved_project(tmp_path):
    """The magic in the MIME XML (zip whose first member is project.json) is what save_project writes."""
    from storystudio.project.fileio import save_project
    from storystudio.project.model import Project

    path = tmp_path / "mine.storystudio"
    save_project(Project.example(), path)
    head = path.read_bytes()[:64]
    outer = ET.parse(desktop.mime_xml()).getroot().find(f"{MIME_NS}mime-type/{MIME_NS}magic/{MIME_NS}match")
    inner = outer.find(f"{MIME_NS}match")
    assert head[int(outer.get("offset")):].startswith(outer.get("value").encode().decode("unicode_escape")
                                                      .encode("latin-1"))
    assert head[int(inner.get("offset")):].startswith(inner.get("value").encode())


@pytest.mark.parametrize("arg, quoted", [
    ("/opt/storystudio/storystudio", "/opt/storystudio/storystudio"),
    ("/home/me/My Apps/storystudio", '"/home/me/My Apps/storystudio"'),
    ("/tmp/100%/x", "/tmp/100%%/x"),
    ('/a "b"/$x', '"/a \\\\"b\\\\"/\\\\$x"'),
])
def test_exec_quoting(arg, quoted):
    assert desktop.exec_quote(arg) == quoted


def test_entry_starts_the_given_program():
    entry = read_entry(desktop.desktop_entry(["/home/me/My Apps/storystudio"]))
    assert entry["Exec"] == '"/home/me/My Apps/storystudio" %f'
    assert entry["TryExec"] == "/home/me/My Apps/storystudio"
    entry = read_entry(desktop.desktop_entry(["/usr/bin/python3", "-m", "storystudio"]))
    assert entry["Exec"] == "/usr/bin/python3 -m storystudio %f"


def test_install_writes_the_files_and_uninstall_removes_them(tmp_path):
    layout = desktop.Layout(tmp_path / "data", tmp_path / "config")
    layout.config.mkdir()
    layout.mimeapps.write_text("[Default Applications]\ntext/plain=gedit.desktop;\n\n[Added Associations]\n"
                               "image/png=gimp.desktop;\n", encoding="utf-8")
    written = desktop.install(layout, ["/opt/storystudio/storystudio"], refresh=False)
    assert set(written) == set(layout.files())
    data = tmp_path / "data"
    assert read_entry((data / "applications/storystudio.desktop").read_text())["Exec"] == \
        "/opt/storystudio/storystudio %f"
    assert (data / "mime/packages/storystudio.xml").read_bytes() == desktop.mime_xml().read_bytes()
    for size in desktop.ICON_SIZES:
        for installed in (f"icons/hicolor/{size}x{size}/apps/storystudio.png",
                          f"icons/hicolor/{size}x{size}/mimetypes/application-x-storystudio.png"):
            with Image.open(data / installed) as image:
                assert image.size == (size, size)
    assert (data / "icons/hicolor/scalable/apps/storystudio.svg").is_file()
    mimeapps = layout.mimeapps.read_text()
    assert "text/plain=gedit.desktop;" in mimeapps and "image/png=gimp.desktop;" in mimeapps
    defaults = mimeapps.split("[Added Associations]")[0]
    assert "application/x-storystudio=storystudio.desktop;" in defaults

    again = desktop.install(layout, ["/opt/storystudio/storystudio"], refresh=False)  # a second install is fine
    assert set(again) == set(written) and layout.mimeapps.read_text().count("x-storystudio") == 1

    removed = desktop.uninstall(layout, refresh=False)
    assert set(removed) == set(written)
    assert not any(p.is_file() for p in data.rglob("*"))  # the folders it made are gone with their files
    assert layout.mimeapps.read_text() == ("[Default Applications]\ntext/plain=gedit.desktop;\n\n"
                                           "[Added Associations]\nimage/png=gimp.desktop;\n")
    assert desktop.uninstall(layout, refresh=False) == []


def test_uninstall_leaves_another_programs_default(tmp_path):
    layout = desktop.Layout(tmp_path / "data", tmp_path / "config")
    layout.config.mkdir()
    layout.mimeapps.write_text("[Default Applications]\napplication/x-storystudio=other.desktop;\n")
    desktop.uninstall(layout, refresh=False)
    assert "application/x-storystudio=other.desktop;" in layout.mimeapps.read_text()


def test_install_makes_a_mimeapps_list_when_there_is_none(tmp_path):
    layout = desktop.Layout(tmp_path / "data", tmp_path / "config")
    desktop.install(layout, ["/x/storystudio"], refresh=False)
    assert layout.mimeapps.read_text() == "[Default Applications]\napplication/x-storystudio=storystudio.desktop;\n"


def test_command_line_install_and_uninstall(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(desktop, "_refresh", lambda layout, run=None: [])
    assert cli.main(["install-desktop", "--exec", "/opt/ss/storystudio"]) == 0
    assert "desktop menu" in capsys.readouterr().out
    entry = read_entry((tmp_path / "data/applications/storystudio.desktop").read_text())
    assert entry["Exec"] == "/opt/ss/storystudio %f"
    assert cli.main(["uninstall-desktop"]) == 0
    assert "Removed" in capsys.readouterr().out
    assert not (tmp_path / "data/applications/storystudio.desktop").exists()


def test_program_is_this_environments_storystudio():
    command = desktop.program()
    assert Path(command[0]).is_file()
    assert (len(command) == 1 and Path(command[0]).name == "storystudio") or command[1:] == ["-m", "storystudio"]


def test_refresh_runs_the_freedesktop_tools_that_exist(tmp_path, monkeypatch):
    layout = desktop.Layout(tmp_path / "data", tmp_path / "config")
    desktop.install(layout, ["/x/storystudio"], refresh=False)
    calls = []
    monkeypatch.setattr(desktop.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    assert desktop._refresh(layout, run=lambda argv, **kw: calls.append(argv)) == [
        "update-mime-database", "update-desktop-database", "gtk-update-icon-cache"]
    assert calls[0] == ["/usr/bin/update-mime-database", str(layout.data / "mime")]


@pytest.mark.skipif(not shutil.which("desktop-file-validate"), reason="desktop-file-utils is not installed")
def test_installed_entry_passes_desktop_file_validate(tmp_path):
    layout = desktop.Layout(tmp_path / "data", tmp_path / "config")
    desktop.install(layout, ["/home/me/My Apps/storystudio"], refresh=False)
    done = subprocess.run(["desktop-file-validate", str(layout.entry)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout


@pytest.mark.skipif(not (shutil.which("xdg-mime") and shutil.which("update-mime-database")
                         and shutil.which("update-desktop-database")), reason="xdg-utils is not installed")
def test_double_click_opens_projects_with_storystudio(tmp_path):
    """What a file manager asks: the type of a saved project and the program for that type."""
    from storystudio.project.fileio import save_project
    from storystudio.project.model import Project

    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_DIRS": str(tmp_path / "data") + ":/usr/share"}
    desktop.install(desktop.Layout(tmp_path / "data", tmp_path / "config"), ["/x/storystudio"], refresh=True)
    project = tmp_path / "mine.storystudio"
    save_project(Project.example(), project)

    def xdg_mime(*args):
        return subprocess.run(["xdg-mime", *args], capture_output=True, text=True, env=env).stdout.strip()

    assert xdg_mime("query", "filetype", str(project)) == "application/x-storystudio"
    assert xdg_mime("query", "default", "application/x-storystudio") == "storystudio.desktop"
