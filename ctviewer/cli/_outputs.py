"""Checks that an output can be written, made before the work so that no result is lost after it.

Each check tries what the real write will do (create a file or folder in the place), rather
than trusting permission bits: /proc, a read-only mount or a root-owned folder all fail here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ctviewer.core.errors import CTViewerError


class OutputError(CTViewerError):
    """An output path that cannot be written."""


def _nearest_existing_parent(path: Path) -> Path:
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def _probe_folder(folder: Path, flag: str, target: Path) -> None:
    """Create and remove a file in ``folder`` (the folder where ``target`` will be written)."""
    if not folder.is_dir():
        raise OutputError(f"{flag} {target}: {folder} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OutputError(f"{flag} {target}: cannot write in {folder} ({exc.strerror or exc})") from None


def check_output_file(path: str | Path, flag: str) -> Path:
    """Raise unless ``path`` can be written as a file (its folders are made when missing)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a folder; give a file name (e.g. {path / 'predictions.csv'})")
    if path.exists() and not path.is_file():
        raise OutputError(f"{flag} {path}: exists and is not a regular file")
    if path.is_file() and not os.access(path, os.W_OK):
        raise OutputError(f"{flag} {path}: exists and is not writable")
    if not path.parent.exists():
        _probe_folder(_nearest_existing_parent(path), flag, path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # the report is written into it after the work
        except OSError as exc:
            raise OutputError(f"{flag} {path}: cannot create {path.parent} ({exc.strerror or exc})") from None
    _probe_folder(path.parent, flag, path)
    return path


def check_output_folder(path: str | Path, flag: str) -> Path:
    """Raise unless a folder can be created (or replaced) at ``path``: outputs are staged next to it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path}: exists and is not a folder")
    _probe_folder(path.parent if path.parent.exists() else _nearest_existing_parent(path), flag, path)
    return path
