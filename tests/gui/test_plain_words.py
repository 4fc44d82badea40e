"""Plain words on screen (issue 14, item 7): the core's command-line words ("model bundle",
"out-of-fold", "5-fold") are said in the app as a clinician reads them; the CLI keeps its own."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QComboBox,
    QLabel,
    QPlainTextEdit,
    QTableView,
    QTreeWidget,
)

from ctviewer.core.errors import ModelError
from ctviewer.core.events import EpochEnded, FoldStarted, Message
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.core.model.bundle import check_bundle_target, read_card
from ctviewer.core.training.oof import expected_line
from ctviewer.core.training.run import OUT_OF_FOLD_PREDICTIONS
from ctviewer.engine.protocol import ModelHandle, TrainingOutcome
from ctviewer.gui.errors import error_box
from ctviewer.gui.wording import for_screen
from ctviewer.gui.workers import WorkerError

# Shown without a tooltip, these mean nothing to a clinician (case matters: the "seed" network keeps its name).
JARGON = [r"\brecipe\b", r"P\(positive\)", r"\bhold-out\b", r"\bFolds?\b", r"\bfold(s|'s)?\b", r"\bSeed\b",
          r"val_auc", r"\bbundle\b", r"\bWilson\b", r"\bOOF\b", r"out-of-fold", r"(?i)\byouden\b"]


def jargon_in(texts: list[str]) -> list[tuple[str, str]]:
    return [(pattern, text) for text in texts for pattern in JARGON if re.search(pattern, text)]


def visible_texts(root) -> list[str]:
    """What the window shows: labels, buttons, boxes, table headers and first rows, trees, logs."""
    out: list[str] = []
    out += [w.text() for w in root.findChildren(QLabel) if w.isVisible()]
    out += [w.text() for w in root.findChildren(QAbstractButton) if w.isVisible()]
    out += [w.text() for w in root.findChildren(QAbstractSpinBox) if w.isVisible()]
    for box in (w for w in root.findChildren(QComboBox) if w.isVisible()):
        out += [box.itemText(i) for i in range(box.count())]
    for view in (w for w in root.findChildren(QTableView) if w.isVisible()):
        model = view.model()
        columns = [c for c in range(model.columnCount()) if not view.isColumnHidden(c)]
        out += [str(model.headerData(c, Qt.Orientation.Horizontal)) for c in columns]
        out += [str(model.index(r, c).data()) for r in range(min(model.rowCount(), 5)) for c in columns]
    for tree in (w for w in root.findChildren(QTreeWidget) if w.isVisible()):
        stack = [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]
        while stack:
            item = stack.pop()
            out += [item.text(c) for c in range(tree.columnCount())]
            stack += [item.child(i) for i in range(item.childCount())]
    out += [w.toPlainText() for w in root.findChildren(QPlainTextEdit) if w.isVisible()]
    return [t for t in out if t]


def test_error_dialogs_say_saved_model_and_keep_paths_and_the_cli_wording(qtbot, tmp_path: Path):
    folder = tmp_path / "bundle"  # a folder may be called so: its path stays as it is
    folder.mkdir()
    (folder / "notes.txt").write_text("not a model")
    boxes = []
    for call in (lambda: check_bundle_target(folder), lambda: read_card(tmp_path / "missing")):
        with pytest.raises(ModelError) as raised:
            call()
        assert "model bundle" in str(raised.value)  # the CLI's words (its tests and users rely on them)
        box = error_box(None, WorkerError.from_exception("Save model", raised.value))
        qtbot.addWidget(box)
        boxes.append(box)
        assert "bundle" not in box.text().replace(str(folder), "")
        assert "model bundle" in box.detailedText()  # the details keep the core's words for a bug report
    assert boxes[0].text() == f"{folder}: exists and is not a saved ctviewer model; choose a new folder"
    assert boxes[1].text() == f"{tmp_path / 'missing'}: no such saved model folder"
    for box in boxes:
        box.close()


@pytest.mark.parametrize(("core", "screen"), [
    ("5-fold ensemble trained, threshold 0.512", "ensemble of 5 models (one per patient group) trained, threshold 0.512"),
    ("AUC 0.91 [0.80-0.97] (pooled out-of-fold, 100 images)", "AUC 0.91 [0.80-0.97] (measured on held-out patients, "
     "100 images)"),
    ("each patient is called at a threshold chosen (youden) on the patients of the other folds, never on itself",
     "each patient is called at a threshold chosen on the patients of the other patient groups, never on itself"),
    ("/data/fold1/bundle: bundle has no model.keras", "/data/fold1/bundle: saved model has no model.keras"),
    ("see /x/my.bundle.d and fold.csv", "see /x/my.bundle.d and fold.csv"),
])
def test_for_screen_rewrites_words_but_not_paths(core: str, screen: str):
    assert for_screen(core) == screen


class _CrossValidationEngine:
    """Stands in for the engine: a 2-fold training with the core's notes, then its outcome."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def train(self, dataset, model_name, overrides, folds, on_event=None, should_stop=None):
        for fold in range(2):
            on_event(FoldStarted(fold=fold, folds=2))
            on_event(EpochEnded(epoch=0, epochs=1, logs={"loss": 0.7, "val_loss": 0.69, "val_auc": 0.6}, fold=fold))
        on_event(Message("2 folds instead of 5: a class has only 2 patients"))
        on_event(Message("cancelled during fold 2: an ensemble of the 1 completed fold model(s) of 2; its "
                         "out-of-fold metrics cover only the images of those folds", "warning"))
        items = dataset.items
        folds_of = {p: k % 2 for k, p in enumerate(sorted({it.patient for it in items}))}
        fold = np.array([folds_of[it.patient] for it in items])
        probs = np.clip(np.array([0.8 if it.label == dataset.positive else 0.2 for it in items])
                        + np.linspace(0, 0.1, len(items)), 0, 1)
        pred = Predictions(paths=[it.path for it in items], probs=probs, threshold=0.5,
                           classes=(dataset.negative, dataset.positive), labels=[it.label for it in items],
                           patients=[it.patient for it in items], folds=fold,
                           row_thresholds=np.array([0.45, 0.55])[fold], model_id="cv2-default")
        expected = expected_line({"expected_performance": {"metrics": {"auc": 0.91, "auc_ci": [0.8, 0.97],
                                                                       "n": len(items)}}})
        handle = ModelHandle(id="m1", kind="ensemble", source="ensemble of 2 fold models (default)",
                             preprocessing=None, classes=pred.classes, threshold=0.5, model_id="w1",
                             expected=expected)
        return TrainingOutcome(handle, pred, OUT_OF_FOLD_PREDICTIONS, "2-fold ensemble trained, threshold 0.500")

    def grad_cam(self, model_id, path):
        return np.zeros((8, 8), dtype=np.float32)  # the Grad-CAM of the image shown after training

    def shutdown(self, timeout_s: float = 30.0) -> None:
        pass


def test_after_a_cross_validation_the_window_shows_no_jargon(window, open_folder, demo_folder, qtbot):
    open_folder(window, demo_folder)
    window.session.engine = _CrossValidationEngine(window.session.dataset)
    with qtbot.waitSignal(window.training.training_finished, timeout=10_000):
        window.training.start_training()
    results = window.results
    qtbot.waitUntil(lambda: results.predictions is not None and not results.doctor.is_running(), timeout=30_000)
    assert results.per_row  # out-of-fold rows, each at its own fold's threshold
    shown = visible_texts(window)
    window.results_dock.raise_()
    results.set_level("patient")
    results.table.setCurrentIndex(results.proxy.index(0, 0))  # a patient's slices show under the table
    assert results.slices.isVisible()
    shown += visible_texts(window)
    assert jargon_in(shown) == []
    assert any("held-out patients" in t for t in shown)  # the rates and the expected performance say it so
