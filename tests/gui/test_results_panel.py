"""Results panel with known predictions: table, confusion matrix, threshold, ROC point, export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from ctviewer.core.metrics.predictions import Predictions
from ctviewer.core.metrics.report import read_predictions_csv
from ctviewer.gui.doctor_panel import shown_message
from ctviewer.gui.predictions_table import PATH_ROLE
from ctviewer.gui.results_panel import ResultsPanel
from ctviewer.gui.session import Session


@pytest.fixture
def predictions() -> Predictions:
    rng = np.random.default_rng(3)
    n = 30
    labels = ["contrast" if i % 3 else "no_contrast" for i in range(n)]
    probs = np.clip(rng.normal([0.65 if lab == "contrast" else 0.35 for lab in labels], 0.2), 0.0, 1.0)
    labels[5] = None  # one unlabelled image
    return Predictions(paths=[f"/data/p{i // 2}/img{i:02d}.dcm" for i in range(n)], probs=probs, threshold=0.5,
                       classes=("no_contrast", "contrast"), labels=labels,
                       patients=[f"p{i // 2}" for i in range(n)])


@pytest.fixture
def panel(qtbot, predictions: Predictions, _private_cache: Path) -> ResultsPanel:
    from ctviewer.core.data.cache import Cache

    widget = ResultsPanel(Session(cache=Cache(_private_cache)))
    qtbot.addWidget(widget)
    widget.show()
    widget.set_predictions(predictions, "test predictions")
    yield widget
    widget.shutdown()


def _expected(pred: Predictions, t: float) -> dict[str, int]:
    y, called = pred.y_true, (pred.probs >= t).astype(int)
    keep = y >= 0
    y, called = y[keep], called[keep]
    return {"tp": int(((y == 1) & (called == 1)).sum()), "fn": int(((y == 1) & (called == 0)).sum()),
            "fp": int(((y == 0) & (called == 1)).sum()), "tn": int(((y == 0) & (called == 0)).sum())}


def test_one_row_per_image_and_matrix_sums_to_labelled_n(panel: ResultsPanel, predictions: Predictions):
    assert panel.model.rowCount() == len(predictions)
    counts = panel.confusion.counts()
    assert sum(counts.values()) == int(predictions.is_labelled.sum()) == len(predictions) - 1
    assert counts == _expected(predictions, 0.5)
    assert panel.confusion.cells["tp"].text() == str(counts["tp"])


def test_threshold_slider_updates_matrix_table_and_roc_point(panel: ResultsPanel, predictions: Predictions):
    before = panel.confusion.counts()
    panel.slider.setValue(800)  # 0.8: fewer positive calls
    assert panel.threshold == pytest.approx(0.8)
    assert panel.spin.value() == pytest.approx(0.8)
    after = panel.confusion.counts()
    assert after == _expected(predictions, 0.8)
    assert after["tp"] + after["fp"] < before["tp"] + before["fp"]
    tp, fn, fp, tn = after["tp"], after["fn"], after["fp"], after["tn"]
    assert panel.roc.operating_point() == pytest.approx((fp / (fp + tn), tp / (tp + fn)))
    called = [panel.model.data(panel.model.index(r, 4)).split(" ")[0] for r in range(len(predictions))]
    assert called == predictions.pred_names(0.8)
    panel.reset_button.click()
    assert panel.threshold == pytest.approx(predictions.threshold)


def test_errors_only_filter_and_sorting(panel: ResultsPanel, predictions: Predictions):
    wrong = sum(1 for c in predictions.correct(0.5) if c is False)
    panel.errors_check.setChecked(True)
    assert panel.visible_rows() == wrong
    panel.errors_check.setChecked(False)
    assert panel.visible_rows() == len(predictions)
    panel.table.sortByColumn(3, Qt.SortOrder.AscendingOrder)
    shown = [float(panel.proxy.index(r, 3).data()) for r in range(panel.visible_rows())]
    assert shown == sorted(shown)


def test_clicking_a_row_asks_for_that_image(panel: ResultsPanel, qtbot):
    index = panel.proxy.index(4, 0)
    expected = index.data(PATH_ROLE)
    assert Path(expected).name == index.data()
    with qtbot.waitSignal(panel.image_requested, timeout=1000) as blocker:
        panel.table.setCurrentIndex(index)
    assert blocker.args == [expected]


def test_export_csv_reads_back_at_the_chosen_threshold(panel: ResultsPanel, predictions: Predictions,
                                                       tmp_path: Path):
    panel.set_threshold(0.6)
    path = panel.export_csv(tmp_path / "predictions.csv")
    back = read_predictions_csv(path)
    assert back.paths == predictions.paths
    np.testing.assert_array_equal(back.probs, predictions.probs)
    assert back.threshold == pytest.approx(0.6)
    assert back.labels == predictions.labels


def test_export_plots_writes_pngs(panel: ResultsPanel, tmp_path: Path):
    written = panel.export_plots(tmp_path / "plots")
    assert [p.name for p in written] == ["roc.png", "confusion_matrix.png"]
    for path in written:
        image = QImage(str(path))
        assert not image.isNull() and image.width() > 50


def test_doctor_findings_are_listed(panel: ResultsPanel, qtbot):
    qtbot.waitUntil(lambda: not panel.doctor.is_running(), timeout=30_000)
    rows = panel.doctor.tree.topLevelItemCount()
    assert rows == max(1, len(panel.doctor.findings))
    texts = [panel.doctor.tree.topLevelItem(i).text(0) for i in range(rows)]
    assert all(shown_message(f) in t for f, t in zip(panel.doctor.findings, texts))


def test_out_of_fold_rows_are_called_at_their_own_fold_threshold(qtbot, predictions: Predictions,
                                                                 _private_cache: Path, tmp_path: Path):
    from dataclasses import replace

    from ctviewer.core.data.cache import Cache

    n = len(predictions)
    folds = np.arange(n) % 3
    oof = replace(predictions, folds=folds, row_thresholds=np.array([0.3, 0.5, 0.7])[folds],
                  threshold=0.5)
    widget = ResultsPanel(Session(cache=Cache(_private_cache)))
    qtbot.addWidget(widget)
    widget.set_predictions(oof, "out-of-fold")
    assert widget.per_row
    called = [widget.model.data(widget.model.index(r, 4)).split(" ")[0] for r in range(n)]
    assert called == oof.pred_names()  # each row at its fold's threshold
    y, hit = oof.y_true, oof.probs >= oof.row_thresholds
    assert widget.confusion.counts()["tp"] == int(((y == 1) & hit).sum())
    assert "each image at the threshold chosen on held-out patients" in widget.confusion.rates.text()
    assert not widget.table.isColumnHidden(6)
    back = read_predictions_csv(widget.export_csv(tmp_path / "oof.csv"))
    np.testing.assert_allclose(back.row_thresholds, oof.row_thresholds)

    widget.slider.setValue(600)  # one threshold for everyone from now on
    assert not widget.per_row
    assert widget.confusion.counts() == _expected(oof, 0.6)
    assert read_predictions_csv(widget.export_csv(tmp_path / "one.csv")).row_thresholds is None
    widget.reset_button.click()
    assert widget.per_row and widget.confusion.counts()["tp"] == int(((y == 1) & hit).sum())
    widget.shutdown()


class _SlowDoctorEngine:
    """Stands in for the model engine: full checks that take long and honour should_stop."""

    def __init__(self) -> None:
        self.stopped = False

    def doctor(self, dataset, model_id, predictions, on_event=None, should_stop=None):
        import time

        from ctviewer.core.errors import Cancelled
        from ctviewer.core.events import Message

        for step in range(3000):
            if should_stop():
                self.stopped = True
                raise Cancelled("doctor checks cancelled")
            on_event(Message(f"model check {step}"))
            time.sleep(0.005)
        return []


def test_full_checks_can_be_stopped_and_run_again(panel: ResultsPanel, qtbot):
    from types import SimpleNamespace

    qtbot.waitUntil(lambda: not panel.doctor.is_running(), timeout=30_000)
    quick = list(panel.doctor.findings)
    engine = _SlowDoctorEngine()
    panel.session.engine = engine
    panel.session.model = SimpleNamespace(id="m1", kind="bundle", split=None, history=None)
    doctor = panel.doctor
    doctor.full_button.setEnabled(True)

    doctor.full_button.click()
    qtbot.waitUntil(lambda: "model check" in doctor.title.text(), timeout=10_000)
    assert doctor.full_button.text() == "Stop checks" and doctor.full_button.isEnabled()
    doctor.full_button.click()
    qtbot.waitUntil(lambda: not doctor.is_running(), timeout=10_000)

    assert engine.stopped
    assert "stopped" in doctor.title.text()
    assert doctor.full_button.text() == "Run full checks" and doctor.full_button.isEnabled()
    assert doctor.findings == quick  # the last complete findings, shown again, not a partial run
    assert doctor.tree.topLevelItemCount() == max(1, len(quick))


def test_level_switch_counts_patients_and_a_patient_row_lists_its_slices(panel: ResultsPanel, qtbot,
                                                                         predictions: Predictions, tmp_path: Path):
    from dataclasses import replace

    from ctviewer.core.metrics.aggregate import aggregate
    from ctviewer.core.metrics.unit_report import UNIT_COLUMNS

    # One class per patient (p{k} holds images 2k and 2k+1); image 5 (patient p2) stays unlabelled.
    labels = ["contrast" if (i // 2) % 3 else "no_contrast" for i in range(30)]
    labels[5] = None
    predictions = replace(predictions, labels=labels)
    panel.set_predictions(predictions, "one class per patient")
    assert panel.model.rowCount() == 30
    panel.level_combo.setCurrentIndex(panel.level_combo.findData("patient"))
    assert panel.level == "patient"
    expected = aggregate(predictions, "patient", threshold=predictions.threshold).predictions
    assert panel.model.rowCount() == len(expected) == 15
    # The matrix counts labelled patients (p2 holds the unlabelled image, so it has no truth).
    y, called = expected.y_true, (expected.probs >= expected.threshold).astype(int)
    keep = y >= 0
    assert sum(panel.confusion.counts().values()) == int(keep.sum()) == 14
    assert panel.confusion.counts()["tp"] == int(((y == 1) & (called == 1) & keep).sum())
    assert "15 patients" in panel.source_label.text() and "patients" in panel.confusion.rates.text()
    # Clicking a patient row lists its slices, most positive first, and opens the one that drove the call.
    row = next(r for r in range(panel.proxy.rowCount()) if panel.proxy.index(r, 1).data() == "p7")
    with qtbot.waitSignal(panel.image_requested, timeout=1000) as blocker:
        panel.table.setCurrentIndex(panel.proxy.index(row, 0))
    shown = panel.slices.probabilities()
    mine = sorted((round(float(p), 3) for p, pat in zip(predictions.probs, predictions.patients) if pat == "p7"),
                  reverse=True)
    assert shown == mine and len(shown) == 2
    top = max((i for i, pat in enumerate(predictions.patients) if pat == "p7"), key=lambda i: predictions.probs[i])
    assert blocker.args == [predictions.paths[top]]
    other = next(i for i, pat in enumerate(predictions.patients) if pat == "p7" and i != top)
    with qtbot.waitSignal(panel.image_requested, timeout=1000) as blocker:
        panel.slices.table.setCurrentCell(1, 0)
    assert blocker.args == [predictions.paths[other]]
    # The slider moves the patient threshold; export writes the patient CSV.
    panel.slider.setValue(700)
    assert panel.confusion.counts() == _expected(expected, 0.7)
    out = panel.export_csv(tmp_path / "patients.csv")
    assert out.read_text(encoding="utf-8").splitlines()[0] == ",".join(UNIT_COLUMNS)
    assert read_predictions_csv(out).threshold == pytest.approx(0.7)
    panel.level_combo.setCurrentIndex(panel.level_combo.findData("image"))
    assert panel.model.rowCount() == 30 and not panel.slices.isVisible()
    assert sum(panel.confusion.counts().values()) == 29


def test_operating_point_and_roc_come_from_the_core():
    from ctviewer.core.metrics.evaluation import compute_metrics
    from ctviewer.core.metrics.operating import operating_point, roc_points
    from ctviewer.gui import confusion_widget

    assert confusion_widget.operating_point is operating_point  # the widget draws, the core counts
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    point, metrics = operating_point(y, p, 0.5), compute_metrics(y, p, 0.5)
    assert (point.tp, point.fn, point.fp, point.tn) == (metrics.tp, metrics.fn, metrics.fp, metrics.tn)
    assert point.rate("sensitivity") == (metrics.sensitivity, metrics.sensitivity_ci)
    curve = roc_points(y, p)
    assert curve.auc == pytest.approx(metrics.auc) and curve.fpr[0] == 0.0 and curve.tpr[-1] == 1.0
    assert roc_points(np.ones(3, int), np.array([0.1, 0.2, 0.3])) is None


def _out_of_fold(n: int) -> Predictions:
    """An ensemble's out-of-fold rows: a fold, a threshold, a spread per row; the wider class name late."""
    rng = np.random.default_rng(5)
    labels = ["contrast" if i < n - 3 else "no_contrast" for i in range(n)]
    return Predictions(paths=[f"/data/{lab}/P{i // 4:03d}/IM-{i:04d}.dcm" for i, lab in enumerate(labels)],
                       probs=rng.random(n), threshold=0.5, classes=("no_contrast", "contrast"), labels=labels,
                       patients=[f"P{i // 4:03d}" for i in range(n)], folds=np.arange(n) % 5,
                       row_thresholds=np.full(n, 0.45), uncertainty=rng.random(n) * 0.1,
                       in_training=np.zeros(n, dtype=bool))


def test_a_large_table_is_filled_and_redrawn_without_asking_for_every_cell_again(qtbot, monkeypatch,
                                                                               _private_cache: Path):
    from ctviewer.core.data.cache import Cache
    from ctviewer.gui.predictions_table import PredictionsModel

    panel = ResultsPanel(Session(cache=Cache(_private_cache)))
    qtbot.addWidget(panel)
    panel.resize(520, 800)
    panel.show()
    asked = [0]
    data = PredictionsModel.data
    monkeypatch.setattr(PredictionsModel, "data", lambda self, index, role=0: asked.__setitem__(0, asked[0] + 1)
                        or data(self, index, role))
    n = 400
    panel.set_predictions(_out_of_fold(n), "out-of-fold")
    qtbot.wait(10)  # laid out and painted
    filled = asked[0]
    asked[0] = 0
    panel.set_threshold(0.3)
    qtbot.wait(10)
    # Sorting asks twice per comparison and a paint ten times per visible cell; sizing each column to
    # its contents through the view asked for every role of every cell of every row (~90 per row).
    assert filled < 30 * n, filled
    assert asked[0] < 10 * n, asked[0]
    # Each column still fits its widest text, the class name that only the last rows have included.
    header, metrics = panel.table.horizontalHeader(), panel.table.fontMetrics()
    for column in range(1, panel.model.columnCount() - 1):  # the file names elide; the last column stretches
        if not panel.table.isColumnHidden(column):
            widest = max(metrics.horizontalAdvance(t) for t in panel.model.column_texts(column))
            assert header.sectionSize(column) >= widest, (column, header.sectionSize(column), widest)
    assert "no_contrast" in panel.model.column_texts(2)
    panel.shutdown()


def test_new_predictions_are_checked_once_the_panel_is_drawn(panel: ResultsPanel, predictions: Predictions, qtbot):
    from ctviewer.gui.doctor_panel import QUICK_CHECKS_DELAY_MS

    qtbot.waitUntil(lambda: not panel.doctor.is_running(), timeout=30_000)
    started: list[float] = []
    panel.doctor.runner.start = lambda worker, start=panel.doctor.runner.start: started.append(1) or start(worker)
    panel.set_predictions(_out_of_fold(40), "again")
    assert not started and panel.doctor.is_running()  # due, not started: counts as running
    assert panel.doctor.tree.topLevelItem(0).text(0) == "Checking…"
    qtbot.wait(QUICK_CHECKS_DELAY_MS // 2)
    assert not started
    qtbot.waitUntil(lambda: bool(started) and not panel.doctor.is_running(), timeout=30_000)
    assert panel.doctor.findings is not None and panel.doctor.full_button.text() == "Run full checks"


def test_what_the_results_need_is_imported_ahead_in_the_background_once():
    import os
    import subprocess
    import sys

    code = ("import sys; import ctviewer.gui.warm_up as w\n"
            "assert 'numpy.ma' not in sys.modules and 'ctviewer.core.doctor' not in sys.modules\n"
            "t = w.warm_up_in_background(); t.join(60)\n"
            "print(all(m in sys.modules for m in w.MODULES), 'tensorflow' in sys.modules, w.warm_up_in_background())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "None"]  # all there, no TensorFlow, started once
