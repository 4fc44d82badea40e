"""Install ctviewer's desktop entry and icons for the current user on Linux (freedesktop.org).

After ``ctviewer install-desktop`` the app shows up in the desktop's application menu, can be
pinned, and is offered for DICOM files and folders ("Open with"). Files go under
``$XDG_DATA_HOME`` (default ``~/.local/share``), so no administrator rights are needed and
``--uninstall`` removes exactly what was written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ctviewer.core.errors import CTViewerError
from ctviewer.resources import DESKTOP_FILE_NAME, ICON_SIZES, icon_path, resource_path

APP_ID = "ctviewer"
# Characters that force quoting of an Exec argument (Desktop Entry Specification, "The Exec key").
_EXEC_RESERVED = set(' \t\n"\'\\><~|&;$*?#()`')


class DesktopIntegrationError(CTViewerError):
    """The desktop entry cannot be installed (wrong platform, unwritable folder...)."""


@dataclass(frozen=True)
class DesktopInstall:
    """What ``install`` wrote."""

    data_dir: Path
    desktop_file: Path
    icons: list[Path] = field(default_factory=list)
    exec_command: list[str] = field(default_factory=list)
    caches_refreshed: list[str] = field(default_factory=list)


def data_home() -> Path:
    """Return ``$XDG_DATA_HOME``, or ``~/.local/share`` when it is unset or not absolute."""
    value = os.environ.get("XDG_DATA_HOME", "")
    # The spec says relative values are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / ".local" / "share"


def launcher_command() -> list[str]:
    """Return the command that starts this ctviewer installation, as an argument list.

    The frozen app is its own executable; a pip install has a ``ctviewer`` script next to the
    interpreter (a venv's ``bin/``), else on ``PATH``; failing both, ``python -m ctviewer``.
    The absolute path matters: a desktop session's PATH rarely contains a venv.
    """
    if getattr(sys, "frozen", False):
        return [str(Path(sys.executable).resolve())]
    beside_python = Path(sys.executable).with_name("ctviewer")
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return [str(beside_python)]
    on_path = shutil.which("ctviewer")
    if on_path:
        return [str(Path(on_path).resolve())]
    return [str(Path(sys.executable).resolve()), "-m", "ctviewer"]


def quote_exec_argument(arg: str) -> str:
    """Quote one argument for a desktop entry's ``Exec`` key, including the string-value escaping.

    Parameters
    ----------
    arg : str
        A program path or argument, taken literally (``%`` is escaped as ``%%``).
    """
    arg = arg.replace("%", "%%")
    if any(ch in _EXEC_RESERVED for ch in arg):
        inner = "".join("\\" + ch if ch in '"`$\\' else ch for ch in arg)
        arg = f'"{inner}"'
    # Exec is also a "string" value, whose own escape rule doubles every backslash.
    return arg.replace("\\", "\\\\")


def render_desktop_entry(command: list[str]) -> str:
    """Return the bundled desktop entry with ``Exec``/``TryExec`` pointing at ``command``.

    Parameters
    ----------
    command : list of str
        The program and its fixed arguments; ``%F`` (the files or folders opened) is appended.
    """
    template = resource_path(DESKTOP_FILE_NAME).read_text(encoding="utf-8")
    exec_value = " ".join(quote_exec_argument(part) for part in command) + " %F"
    lines = []
    for line in template.splitlines():
        if line.startswith("Exec="):
            line = f"Exec={exec_value}"
        elif line.startswith("TryExec="):
            # TryExec takes a plain path (no quoting rules); it hides the entry once the app is gone.
            line = f"TryExec={command[0]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _icon_target(data_dir: Path, size: int) -> Path:
    return data_dir / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"


def _refresh_caches(data_dir: Path) -> list[str]:
    """Ask the desktop to notice new files; each tool is optional and its failure harmless."""
    done = []
    tools = [
        ("update-desktop-database", [str(data_dir / "applications")]),
        ("gtk-update-icon-cache", ["--force", "--ignore-theme-index", str(data_dir / "icons" / "hicolor")]),
    ]
    for tool, args in tools:
        exe = shutil.which(tool)
        if exe is None:
            continue
        try:
            result = subprocess.run([exe, *args], capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if result.returncode == 0:
            done.append(tool)
    return done


def _check_platform() -> None:
    if not sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        raise DesktopIntegrationError(
            f"desktop entries are a Linux/BSD feature (this is {sys.platform}); on Windows and macOS "
            "use the built application from packaging/ (see packaging/README.md)"
        )


def install(
    data_dir: Path | None = None,
    command: list[str] | None = None,
    refresh_caches: bool = True,
) -> DesktopInstall:
    """Install the desktop entry and the icons into ``data_dir`` (default: ``data_home()``).

    Parameters
    ----------
    data_dir : Path, optional
        The XDG data folder receiving ``applications/`` and ``icons/hicolor/``.
    command : list of str, optional
        What the entry runs; default ``launcher_command()``.
    refresh_caches : bool
        Run ``update-desktop-database`` and ``gtk-update-icon-cache`` when present.

    Raises
    ------
    DesktopIntegrationError
        On a platform without freedesktop entries, or when a file cannot be written.
    """
    _check_platform()
    data_dir = Path(data_dir) if data_dir is not None else data_home()
    command = list(command) if command else launcher_command()
    desktop_file = data_dir / "applications" / DESKTOP_FILE_NAME
    icons = []
    try:
        for size in ICON_SIZES:
            target = _icon_target(data_dir, size)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(icon_path(size), target)
            icons.append(target)
        desktop_file.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a menu never reads a half-written entry.
        partial = desktop_file.with_suffix(".desktop.partial")
        partial.write_text(render_desktop_entry(command), encoding="utf-8")
        partial.chmod(0o755)  # some desktops only trust executable entries
        partial.replace(desktop_file)
    except OSError as exc:
        raise DesktopIntegrationError(f"{exc.filename or data_dir}: cannot write: {exc.strerror}") from exc
    refreshed = _refresh_caches(data_dir) if refresh_caches else []
    return DesktopInstall(data_dir, desktop_file, icons, command, refreshed)


def uninstall(data_dir: Path | None = None, refresh_caches: bool = True) -> list[Path]:
    """Remove what ``install`` wrote into ``data_dir``; return the files removed (missing ones are skipped)."""
    _check_platform()
    data_dir = Path(data_dir) if data_dir is not None else data_home()
    removed = []
    targets = [data_dir / "applications" / DESKTOP_FILE_NAME, *(_icon_target(data_dir, size) for size in ICON_SIZES)]
    for path in targets:
        if path.is_file():
            path.unlink()
            removed.append(path)
    if refresh_caches and removed:
        _refresh_caches(data_dir)
    return removed
