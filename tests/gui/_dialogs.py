"""Answering the app's modal questions in GUI tests."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox


def answer_next_question(button: QMessageBox.StandardButton, seen: list[str], with_buttons: bool = False) -> None:
    """Click ``button`` on the next modal question, recording its text (and its buttons' texts)."""

    def click() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, click)
            return
        seen.append(box.text())
        if with_buttons:
            seen.append(",".join(b.text() for b in box.buttons()))
        box.button(button).click()

    QTimer.singleShot(20, click)
