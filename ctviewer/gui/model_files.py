"""Choosing where a model is saved or opened from. A saved model is a folder; the save dialog
asks for a name (a new one can be typed) and makes it ``NAME.ctvmodel``."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QWidget

MODEL_SUFFIX = ".ctvmodel"
_FILTER = f"ctviewer model (*{MODEL_SUFFIX})"


def model_save_target(chosen: str | Path) -> Path:
    """The folder a typed name saves to: ``NAME.ctvmodel`` (the suffix added when missing)."""
    path = Path(chosen).expanduser()
    if path.suffix.lower() != MODEL_SUFFIX:
        path = path.with_name(path.name + MODEL_SUFFIX)
    return path


def ask_model_save_path(parent: QWidget | None, start: str | Path | None = None) -> Path | None:
    """A save dialog where a new name can be typed; None when the user cancelled."""
    start_dir = Path(start) if start else Path.home()
    chosen, _ = QFileDialog.getSaveFileName(parent, "Save model as", str(start_dir / f"model{MODEL_SUFFIX}"),
                                            _FILTER, options=QFileDialog.Option.DontConfirmOverwrite)
    return model_save_target(chosen) if chosen else None


def ask_model_to_open(parent: QWidget | None, start: str | Path | None = None) -> str:
    """A saved model folder (``NAME.ctvmodel``, or any folder with a model card); "" when cancelled."""
    return QFileDialog.getExistingDirectory(parent, "Open a saved model (its .ctvmodel folder)",
                                            str(start or Path.home()))
