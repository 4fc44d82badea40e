"""``ctviewer --self-test``: prove an installed (or frozen) app works end to end, offscreen.

Steps, each through the real window and its workers: make a tiny demo dataset, open it,
train a tiny model for one epoch, predict every image, check one row per image. Prints
one line per step and returns 0 only when all passed.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from ctviewer.gui.app import wait_until


def self_test(window: object, timeout_s: float = 600.0) -> int:
    started = time.perf_counter()

    def step(text: str) -> None:
        print(f"self-test [{time.perf_counter() - started:6.1f} s] {text}", flush=True)

    def fail(text: str) -> int:
        error = window.last_error
        detail = f": {error.message}" if error is not None else ""
        print(f"self-test FAILED: {text}{detail}", file=sys.stderr, flush=True)
        window.close()
        return 1

    from ctviewer.core.data.demo import make_demo_dataset

    with tempfile.TemporaryDirectory(prefix="ctviewer-selftest-") as tmp:
        folder = make_demo_dataset(Path(tmp) / "demo", n_patients=3, slices_per_patient=2, size=64)
        step(f"demo dataset written to {folder}")
        window.open_source(str(folder), remember=False)
        if not wait_until(lambda: window.viewer.image is not None or window.last_error is not None, 60):
            return fail("the dataset did not load")
        if window.last_error is not None:
            return fail("loading the dataset")
        n = len(window.session.dataset)
        step(f"opened {n} images; first image on screen")

        panel = window.training
        panel.model_box.setCurrentText("default")
        panel.size_spin.setValue(32)
        panel.epochs_spin.setValue(1)
        panel.batch_spin.setValue(4)
        finished: list[object] = []
        panel.training_finished.connect(finished.append)
        if panel.start_training() is None:
            return fail("training did not start")
        if not wait_until(lambda: finished or window.last_error is not None, timeout_s):
            return fail("training timed out")
        if window.last_error is not None:
            return fail("training")
        step("trained one epoch")

        predicted: list[object] = []
        panel.predictions_ready.connect(lambda pred, _what: predicted.append(pred))
        wait_until(lambda: not panel.model_runner.is_running() and not panel.runner.is_running(), 30)
        if panel.predict_dataset() is None:
            return fail("prediction did not start")
        if not wait_until(lambda: predicted or window.last_error is not None, timeout_s):
            return fail("prediction timed out")
        if window.last_error is not None:
            return fail("prediction")
        rows = window.results.model.rowCount()
        if rows != n:
            return fail(f"{rows} prediction rows for {n} images")
        step(f"predicted {rows} images; results table filled")
    window.close()
    step("passed")
    return 0
