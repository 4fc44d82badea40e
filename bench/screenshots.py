"""Render screenshots of the app's main states into docs/screenshots/ (offscreen, real window).

1. ``main.png``     ``ctviewer --demo --screenshot``: the demo dataset in the browser and viewer.
2. ``training.png`` the training panel after training the default recipe on the demo set
                    (live curves, one point per epoch).
3. ``results.png``  the results panel: validation predictions, confusion matrix, ROC,
                    doctor findings; the viewer shows a selected image with its Grad-CAM.
4. ``tags.png``     the DICOM tags panel next to the viewer in the lung window.
5. ``doctor.png``   the whole dataset predicted (marked: it includes the training images),
                    with the doctor's findings given most of the Results panel.

Each run uses a private HOME, settings and cache, so the screenshots show the default
layout. Usage: ``python bench/screenshots.py [--out docs/screenshots] [--epochs 20] [--size 128]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _private_env(home: Path) -> dict[str, str]:
    return {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
            "CTVIEWER_CACHE_DIR": str(home / "cache"), "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}


def main_screenshot(out: Path, home: Path) -> None:
    """The CLI path itself: ``python -m ctviewer --demo --screenshot OUT``."""
    result = subprocess.run([sys.executable, "-m", "ctviewer", "--demo", "--screenshot", str(out)],
                            env=_private_env(home), capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise SystemExit(f"ctviewer --demo --screenshot failed:\n{result.stdout}\n{result.stderr}")


def states(out_dir: Path, epochs: int, size: int) -> None:
    """Drive the real window through training and results (runs in this process)."""
    from PySide6.QtCore import QSettings

    from ctviewer.gui.app import _make_app, wait_until
    from ctviewer.gui.main_window import MainWindow

    _make_app(offscreen=True)
    import pyqtgraph as pg

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    settings = QSettings(str(Path(os.environ["HOME"]) / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings)
    window.resize(1400, 860)
    window.show()

    def check(ok: bool, what: str) -> None:
        if window.last_error is not None:
            raise SystemExit(f"{what}: {window.last_error.message}\n{window.last_error.details}")
        if not ok:
            raise SystemExit(f"{what}: timed out")

    def shoot(name: str) -> None:
        wait_until(lambda: False, 0.5)
        path = out_dir / name
        if not window.grab().save(str(path)):
            raise SystemExit(f"{path}: could not write")
        print(f"wrote {path}")

    window.open_demo()
    check(wait_until(lambda: window.viewer.image is not None or window.last_error is not None, 300), "open demo")
    window.browser.thumbnails.wait(60_000)

    # DICOM tags in the lung window.
    window.viewer.apply_preset("lung")
    window.tags_dock.raise_()
    shoot("tags.png")
    window.viewer.apply_preset("soft_tissue")

    # Training: the default recipe.
    panel = window.training
    window.training_dock.raise_()
    panel.model_box.setCurrentText("default")
    panel.size_spin.setValue(size)
    panel.epochs_spin.setValue(epochs)
    panel.batch_spin.setValue(8)
    finished: list[object] = []
    panel.training_finished.connect(finished.append)
    started = time.perf_counter()
    panel.start_training()
    check(wait_until(lambda: bool(finished) or window.last_error is not None, 1800), "training")
    print(f"trained {epochs} epochs in {time.perf_counter() - started:.0f} s")
    window.training_dock.raise_()
    shoot("training.png")

    # Results: the validation predictions; pick a positive image and show its Grad-CAM.
    window.results_dock.raise_()
    results = window.results
    check(wait_until(lambda: not results.doctor.is_running(), 120), "doctor checks")
    predictions = window.session.predictions
    row = next((i for i, label in enumerate(predictions.labels) if label == predictions.positive), 0)
    source_row = results.model.index(row, 0)
    cams: list[str] = []
    window.cam.cam_ready.connect(cams.append)
    window.viewer.overlay_check.setChecked(True)
    results.table.setCurrentIndex(results.proxy.mapFromSource(source_row))
    check(wait_until(lambda: bool(cams) or window.last_error is not None, 300), "Grad-CAM")
    shoot("results.png")

    # Doctor: predict every image (the mark says these include the training images), findings in view.
    from PySide6.QtWidgets import QSplitter

    window.viewer.overlay_check.setChecked(False)
    predicted: list[object] = []
    panel.predictions_ready.connect(lambda *args: predicted.append(args))
    wait_until(lambda: not panel.model_runner.is_running(), 30)
    panel.predict_dataset()
    check(wait_until(lambda: bool(predicted) or window.last_error is not None, 600), "predict")
    check(wait_until(lambda: not results.doctor.is_running(), 120), "doctor checks")
    splitter = results.findChild(QSplitter)
    splitter.setSizes([200, 200, 330])
    shoot("doctor.png")
    window.close()


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--size", type=int, default=128, help="model input size for the training screenshot")
    parser.add_argument("--_states", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args._states:  # the child: HOME etc. were set by the parent
        states(args.out, args.epochs, args.size)
        return 0
    with tempfile.TemporaryDirectory(prefix="ctviewer-screenshots-") as tmp:
        home = Path(tmp)
        main_screenshot(args.out / "main.png", home)
        print(f"wrote {args.out / 'main.png'}")
        result = subprocess.run([sys.executable, __file__, "--_states", "--out", str(args.out),
                                 "--epochs", str(args.epochs), "--size", str(args.size)], env=_private_env(home), timeout=3600, check=False)
        return result.returncode


if __name__ == "__main__":
    sys.exit(run())
