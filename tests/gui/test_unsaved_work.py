"""Closing the window or opening another dataset asks before unsaved work is lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from _dialogs import answer_next_question  # tests/gui/_dialogs.py (pytest puts this folder on sys.path)
from PySide6.QtWidgets import QMessageBox


@pytest.fixture
def asking(window):
    """The window as a user has it: it asks before losing work (back off for the fixture's close)."""
    window.ask_before_discarding = True
    yield window
    window.ask_before_discarding = False


def _relabel_one_patient(window) -> str:
    patient = window.session.dataset.items[0].patient
    window.browser.set_label(window.browser.patient_paths(patient), "no_contrast")
    assert window.browser.labels_dirty
    return patient


def test_closing_with_unsaved_labels_asks_and_cancel_keeps_everything(asking, open_folder, demo_folder, qtbot):
    window = asking
    open_folder(window, demo_folder)
    patient = _relabel_one_patient(window)

    seen: list[str] = []
    answer_next_question(QMessageBox.StandardButton.Cancel, seen)
    window.close()
    assert window.isVisible()
    assert len(seen) == 1 and "class labels" in seen[0] and "model" not in seen[0]
    assert window.browser.labels_dirty
    assert {it.label for it in window.session.dataset.items if it.patient == patient} == {"no_contrast"}

    answer_next_question(QMessageBox.StandardButton.Discard, seen)
    window.close()
    assert not window.isVisible() and len(seen) == 2


def test_opening_another_dataset_with_unsaved_labels_asks_first(asking, open_folder, demo_folder, qtbot,
                                                                tmp_path: Path):
    window = asking
    open_folder(window, demo_folder)
    _relabel_one_patient(window)
    relabelled = window.session.dataset

    seen: list[str] = []
    answer_next_question(QMessageBox.StandardButton.Cancel, seen)
    window.open_source(str(tmp_path))
    assert len(seen) == 1 and "Open another dataset" in seen[0]
    assert not window.loader.is_running() and window.session.dataset is relabelled

    answer_next_question(QMessageBox.StandardButton.Discard, seen)
    with qtbot.waitSignal(window.dataset_loaded, timeout=60_000):
        window.open_source(str(demo_folder))
    assert len(seen) == 2 and not window.browser.labels_dirty


def test_nothing_unsaved_closes_without_a_question(asking, open_folder, demo_folder):
    window = asking
    open_folder(window, demo_folder)
    assert window.unsaved_work() == []
    window.close()  # a question here would block the test: the offscreen box has no one to answer it
    assert not window.isVisible()
