"""Errors from workers (or slots) shown as a dialog: a readable line, details expandable."""

from __future__ import annotations

import logging
import sys

from PySide6.QtWidgets import QMessageBox, QWidget

from ctviewer.gui.wording import for_screen
from ctviewer.gui.workers import WorkerError

log = logging.getLogger("ctviewer.gui")


def error_box(parent: QWidget | None, error: WorkerError) -> QMessageBox:
    """Show ``error`` without blocking (window-modal); returns the box so callers/tests can close it.

    A user mistake (a `CTViewerError`: bad folder, unreadable file...) shows only its message;
    anything else is a bug, so its traceback also goes to stderr for the bug report.
    """
    if not error.user_error:
        print(error.details, file=sys.stderr)
    log.warning("%s: %s", error.title, error.message)
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning if error.user_error else QMessageBox.Icon.Critical)
    box.setWindowTitle(f"ctviewer — {error.title}")
    box.setText(for_screen(error.message))  # the details keep the core's own words
    box.setInformativeText("" if error.user_error else "This looks like a bug; the details help to report it.")
    box.setDetailedText(error.details)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.open()
    return box


if __name__ == "__main__":  # a quick look
    from PySide6.QtWidgets import QApplication

    from ctviewer.core.errors import DatasetError

    app = QApplication(sys.argv)
    try:
        raise DatasetError("/data/ct: only one class (contrast) found; a classifier needs images of two classes")
    except DatasetError as exc:
        box = error_box(None, WorkerError.from_exception("Open folder", exc))
    box.finished.connect(app.quit)
    sys.exit(app.exec())
