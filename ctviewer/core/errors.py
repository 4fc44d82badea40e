"""Exceptions with messages a user can act on: each names the file (if any) and the reason."""

from __future__ import annotations

from pathlib import Path


class CTViewerError(Exception):
    """Base class: anything the CLI/GUI should show as a one-line message, not a traceback."""


class ImageReadError(CTViewerError):
    """A file could not be read as an image."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DatasetError(CTViewerError):
    """A dataset cannot be used for the requested task (empty, one class, bad labels.csv...)."""


class ModelError(CTViewerError):
    """A model or bundle cannot be built, loaded or used."""


class Cancelled(CTViewerError):
    """Long work was cancelled by the user."""


class TrainingError(CTViewerError):
    """Training cannot go on (e.g. its loss became NaN or infinite); nothing is saved."""
