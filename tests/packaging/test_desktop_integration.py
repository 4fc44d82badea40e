"""`ctviewer install-desktop` writes a valid entry and the icons into $XDG_DATA_HOME, and removes them."""

from __future__ import annotations

import configparser
import sys
from pathlib import Path

import pytest

from ctviewer import desktop_integration
from ctviewer.__main__ import main as ctviewer_main
from ctviewer.cli import main as cli_main
from ctviewer.desktop_integration import (
    DesktopIntegrationError,
    install,
    quote_exec_argument,
    render_desktop_entry,
    uninstall,
)
from ctviewer.resources import ICON_SIZES

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="freedesktop entries are Linux-only")


def _entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser["Desktop Entry"]


def _unescape_exec(value: str) -> list[str]:
    """Split an Exec value the way the Desktop Entry Specification tells launchers to.

    First the string-value escapes (``\\\\`` -> ``\\``), then words split on unquoted spaces,
    where inside double quotes a backslash escapes one of ``"`$\\``; ``%%`` is a literal ``%``.
    """
    value = value.replace("\\\\", "\\")
    words, word, quoted, i = [], "", False, 0
    while i < len(value):
        ch = value[i]
        if quoted and ch == "\\" and i + 1 < len(value) and value[i + 1] in '"`$\\':
            word += value[i + 1]
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == " " and not quoted:
            if word:
                words.append(word)
            word = ""
        else:
            word += ch
        i += 1
    words.append(word)
    return [w.replace("%%", "%") for w in words]


@pytest.fixture
def xdg_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "xdg data"  # a space, as in many real home folders
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    return data


@linux_only
def test_cli_install_writes_entry_and_icons_into_xdg_data_home(xdg_home: Path, capsys) -> None:
    assert ctviewer_main(["install-desktop", "--no-refresh"]) == 0
    desktop_file = xdg_home / "applications" / "ctviewer.desktop"
    entry = _entry(desktop_file)
    command = _unescape_exec(entry["Exec"])
    assert command[-1] == "%F"
    assert command[:-1] == desktop_integration.launcher_command()
    assert Path(command[0]).is_absolute() and Path(command[0]).exists()
    assert entry["TryExec"] == command[0]
    assert entry["Icon"] == "ctviewer" and "application/dicom;" in entry["MimeType"]
    for size in ICON_SIZES:
        assert (xdg_home / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "ctviewer.png").is_file()
    assert str(desktop_file) in capsys.readouterr().out


@linux_only
def test_uninstall_removes_exactly_what_install_wrote(xdg_home: Path) -> None:
    neighbour = xdg_home / "applications" / "other.desktop"
    neighbour.parent.mkdir(parents=True)
    neighbour.write_text("[Desktop Entry]\nName=other\n")
    written = install(refresh_caches=False)
    removed = uninstall(refresh_caches=False)
    assert set(removed) == {written.desktop_file, *written.icons}
    assert neighbour.exists()
    assert uninstall(refresh_caches=False) == []  # a second run finds nothing and does not fail


@linux_only
def test_relative_xdg_data_home_is_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert desktop_integration.data_home() == tmp_path / ".local" / "share"


@pytest.mark.parametrize(
    "command",
    [
        ["/opt/ctviewer/ctviewer"],
        ["/home/dr smith/ct viewer/ctviewer"],
        ["/usr/bin/python3", "-m", "ctviewer"],
        ['/tmp/odd"name$with`chars\\and%percent/ctviewer'],
    ],
)
def test_exec_line_round_trips_through_desktop_quoting(command: list[str]) -> None:
    exec_value = next(line for line in render_desktop_entry(command).splitlines() if line.startswith("Exec="))
    assert _unescape_exec(exec_value[len("Exec="):]) == [*command, "%F"]


def test_plain_arguments_are_not_quoted() -> None:
    assert quote_exec_argument("/usr/bin/ctviewer") == "/usr/bin/ctviewer"
    assert quote_exec_argument("/a b") == '"/a b"'


@linux_only
def test_unwritable_target_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("")
    with pytest.raises(DesktopIntegrationError, match="file-not-folder"):
        install(data_dir=blocker, refresh_caches=False)
    # Through the CLI: one line on stderr, exit code 1, no traceback.
    assert cli_main(["install-desktop", "--data-dir", str(blocker), "--no-refresh"]) == 1


def test_other_platforms_get_a_pointer_to_the_built_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(DesktopIntegrationError, match="packaging/README.md"):
        install(data_dir=tmp_path, refresh_caches=False)
    assert not any(tmp_path.iterdir())


def test_print_shows_the_entry_without_writing(xdg_home: Path, capsys) -> None:
    assert ctviewer_main(["install-desktop", "--print"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[Desktop Entry]") and "Exec=" in out
    assert not xdg_home.exists()
