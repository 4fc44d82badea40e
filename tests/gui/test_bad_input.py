"""Bad input through the real window: a user's mistake reaches a dialog naming the file and
the reason, and nothing already open is lost."""

from __future__ import annotations

import shutil
from pathlib import Path

import keras
import pytest

from ctviewer.gui.wording import for_screen


def _wait_error(window, qtbot, start):
    """Run ``start()`` and wait for the panel's error; returns (error, the window's dialog)."""
    with qtbot.waitSignal(window.training.error, timeout=120_000) as failed:
        start()
    return failed.args[0], window.error_boxes[-1]


@pytest.fixture
def opened(window, open_folder, demo_folder):
    open_folder(window, demo_folder)
    return window


def test_a_model_file_from_elsewhere_is_refused_by_name_and_the_dataset_stays(opened, qtbot, tmp_path: Path):
    window = opened
    foreign = tmp_path / "someone_elses_model"
    foreign.mkdir()
    plain = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])  # a Keras model, not a ctviewer bundle
    plain.save(foreign / "model.keras")
    dataset_before = window.session.dataset

    error, box = _wait_error(window, qtbot, lambda: window.training.load_bundle(foreign))

    assert error.user_error, error.details
    assert "someone_elses_model" in error.message
    assert box.isVisible() and box.text() == for_screen(error.message)
    assert "not a saved ctviewer model" in box.text() and "bundle" not in box.text()
    assert window.session.model is None
    assert window.session.dataset is dataset_before and window.browser.visible_paths()
    qtbot.waitUntil(lambda: window.training.load_button.isEnabled(), timeout=10_000)
    box.close()


def test_training_on_one_class_says_so_and_the_window_stays_usable(window, open_folder, demo_folder, qtbot,
                                                                   tmp_path: Path):
    only = tmp_path / "one_class"
    shutil.copytree(demo_folder / "contrast", only / "contrast")
    open_folder(window, only)

    error, box = _wait_error(window, qtbot, window.training.start_training)

    assert error.user_error, error.details
    assert "one class" in error.message and "contrast" in error.message
    assert box.isVisible()
    qtbot.waitUntil(lambda: window.training.start_button.isEnabled(), timeout=10_000)
    assert not window.training.is_running()
    box.close()
