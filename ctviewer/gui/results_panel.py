"""Results panel: per-image predictions, confusion matrix with intervals, ROC with the operating
point, a live threshold slider, doctor findings; export CSV (the core's format) and PNG plots."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ctviewer.core.metrics.predictions import Predictions
from ctviewer.gui.confusion_widget import ConfusionMatrixWidget, operating_point
from ctviewer.gui.doctor_panel import DoctorPanel
from ctviewer.gui.predictions_table import COLUMNS, PATH_ROLE, PredictionsFilter, PredictionsModel
from ctviewer.gui.roc_plot import RocPlot
from ctviewer.gui.session import Session
from ctviewer.gui.workers import WorkerError

SLIDER_STEPS = 1000


class ResultsPanel(QWidget):
    """Shows one `Predictions`; the threshold is the panel's own, starting at the model's."""

    image_requested = Signal(str)  # path of a clicked row
    threshold_changed = Signal(float)
    error = Signal(object)  # WorkerError

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.predictions: Predictions | None = None
        self.threshold = 0.5
        self.per_row = False  # out-of-fold rows, each called at its own fold's threshold
        self._y = np.zeros(0, dtype=np.int64)
        self._roc: Any = None
        self._build()

    def _build(self) -> None:
        self.source_label = QLabel("No predictions yet: train a model, or open one and predict.")
        self.source_label.setWordWrap(True)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setToolTip("Decision threshold: an image is called positive when the model's probability of "
                               "the positive class is at least this")
        self.spin = QDoubleSpinBox()
        self.spin.setRange(0.0, 1.0)
        self.spin.setDecimals(3)
        self.spin.setSingleStep(0.01)
        self.spin.setToolTip("Type a threshold (e.g. 0.55) and press Enter, or use the arrows")
        # Not on every keystroke: typing "0.55" passes through "0" and "0.", which must not be applied
        # (and written back into the box) while the user is still typing.
        self.spin.setKeyboardTracking(False)
        self.slider.valueChanged.connect(lambda v: self.set_threshold(v / SLIDER_STEPS))
        self.spin.valueChanged.connect(self.set_threshold)
        self.reset_button = QPushButton("Model's own")
        self.reset_button.setToolTip("Back to the threshold chosen on the validation data "
                                     "(each fold's own, for cross-validation)")
        self.reset_button.clicked.connect(self._reset_threshold)
        row = QHBoxLayout()
        row.addWidget(QLabel("Threshold"))
        row.addWidget(self.slider, 1)
        row.addWidget(self.spin)
        row.addWidget(self.reset_button)

        self.confusion = ConfusionMatrixWidget()
        self.roc = RocPlot()
        top = QWidget()
        top_layout = QHBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.confusion)
        top_layout.addWidget(self.roc, 1)

        self.model = PredictionsModel(self)
        self.proxy = PredictionsFilter(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(3, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # File names can be long: the first column is narrow and elides in the middle (the full path is
        # in its tooltip, the name in the image's caption), so the call and its threshold fit beside it.
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(0, 62)
        # Right or wrong shows as the row's colour and a ✗ after a wrong call: the panel is too narrow
        # for a column of its own beside the call and its threshold.
        self.table.setColumnHidden(COLUMNS.index("Correct"), True)
        header.setStretchLastSection(True)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.selectionModel().currentRowChanged.connect(self._on_row_changed)
        self.errors_check = QCheckBox("errors only")
        self.errors_check.toggled.connect(self.proxy.set_errors_only)
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Filter rows…")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.textChanged.connect(self.proxy.set_text)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self.export_csv_dialog)
        self.plots_button = QPushButton("Export plots…")
        self.plots_button.clicked.connect(self.export_plots_dialog)
        tools = QHBoxLayout()
        tools.addWidget(self.errors_check)
        tools.addWidget(self.search_edit, 1)
        tools.addWidget(self.export_button)
        tools.addWidget(self.plots_button)
        table_box = QWidget()
        table_layout = QVBoxLayout(table_box)
        table_layout.setContentsMargins(0, 0, 0, 0)
        table_layout.addLayout(tools)
        table_layout.addWidget(self.table)

        self.doctor = DoctorPanel(self.session)
        self.doctor.error.connect(self.error)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(table_box)
        splitter.addWidget(self.doctor)
        splitter.setStretchFactor(1, 3)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.source_label)
        layout.addLayout(row)
        layout.addWidget(splitter, 1)
        self._enable(False)

    def _enable(self, on: bool) -> None:
        for widget in (self.slider, self.spin, self.reset_button, self.export_button, self.plots_button,
                       self.errors_check):
            widget.setEnabled(on)

    # ------------------------------------------------------------------ data

    def set_predictions(self, predictions: Predictions | None, description: str = "") -> None:
        if predictions is None:
            self.doctor.clear()  # its findings were about the predictions (and dataset) now gone
        self.predictions = predictions
        self.session.set_predictions(predictions)
        self.model.set_predictions(predictions)
        self._enable(predictions is not None)
        self._roc = None
        if predictions is None:
            self.source_label.setText("No predictions yet: train a model, or open one and predict.")
            self.confusion.set_point(None)
            self.roc.set_curve(None, None)
            return
        self._y = predictions.y_true
        labelled = int((self._y >= 0).sum())
        self.source_label.setText(f"<b>{len(predictions)} images</b>"
                                  + (f" — {description}" if description else "")
                                  + (f"; {len(predictions) - labelled} unlabelled" if labelled < len(predictions) else ""))
        self.confusion.set_classes(predictions.classes)
        self.table.setColumnHidden(COLUMNS.index("Fold"), predictions.folds is None)
        self._fill_roc()
        self._apply(None)  # the model's own call: its threshold, or each fold's for out-of-fold rows
        self.refresh_findings()

    def relabel(self, dataset: Any) -> None:
        """The dataset's classes changed (relabelled in the browser): the table and counts follow."""
        if self.predictions is None or dataset is None:
            return
        label_of = {item.path: item.label for item in dataset.items}
        labels = [label_of.get(path, old) for path, old in zip(self.predictions.paths, self.predictions.labels)]
        if labels == list(self.predictions.labels):
            return
        known = set(self.predictions.classes)
        labels = [lab if lab in known else None for lab in labels]  # a new class is not one the model calls
        keep_threshold = None if self.per_row else self.threshold
        self.predictions = replace(self.predictions, labels=labels)
        self.session.set_predictions(self.predictions)
        self.model.set_predictions(self.predictions, keep_threshold)
        self._y = self.predictions.y_true
        self._fill_roc()
        self._apply(keep_threshold)

    def call_for(self, path: str) -> Any:
        """The model's call on ``path`` as shown now (probability and threshold), or None."""
        from ctviewer.gui.caption import Call

        pred = self.predictions
        if pred is None:
            return None
        row = self.model.row_of(path)
        if row is None:
            return None
        threshold = float(pred.row_thresholds[row]) if self.per_row else float(self.threshold)
        return Call(float(pred.probs[row]), threshold, pred.positive, pred.negative)

    def _fill_roc(self) -> None:
        # Numpy only (no scikit-learn import on the GUI thread): the counts at every candidate
        # threshold are the ROC's corners, plus the (0, 0) and (1, 1) ends.
        from ctviewer.core.metrics.evaluation import delong_auc, metrics_at_thresholds

        keep = self._y >= 0
        y, p = self._y[keep], self.predictions.probs[keep]
        if not ((y == 1).any() and (y == 0).any()):
            self._roc = None
            self.roc.set_curve(None, None)
            return
        table = metrics_at_thresholds(y, p)
        order = np.argsort(-table.thresholds)
        fpr = np.concatenate([[0.0], 1.0 - table.specificity[order], [1.0]])
        tpr = np.concatenate([[0.0], table.sensitivity[order], [1.0]])
        self._roc = (fpr, tpr)
        self.roc.set_curve(fpr, tpr, delong_auc(y, p).auc)

    def set_threshold(self, threshold: float) -> None:
        """Move the decision threshold (one for every image): table, matrix and ROC point follow at once."""
        threshold = float(min(max(threshold, 0.0), 1.0))
        if self.predictions is None or (not self.per_row and abs(threshold - self.threshold) < 1e-9):
            return
        self._apply(threshold)

    def _apply(self, threshold: float | None) -> None:
        """``None`` = the predictions' own threshold(s): per fold for out-of-fold rows."""
        pred = self.predictions
        self.per_row = threshold is None and pred.row_thresholds is not None
        self.threshold = pred.threshold if threshold is None else threshold
        for widget, value in ((self.slider, round(self.threshold * SLIDER_STEPS)), (self.spin, self.threshold)):
            widget.blockSignals(True)
            widget.setValue(value)
            widget.blockSignals(False)
        self.model.set_threshold(threshold)
        point = operating_point(self._y, pred.probs, pred.row_thresholds if self.per_row else self.threshold)
        self.confusion.set_point(point)
        sens, _ = point.rate("sensitivity")
        spec, _ = point.rate("specificity")
        self.roc.set_operating_point(1.0 - spec, sens)
        self.threshold_changed.emit(self.threshold)

    def _reset_threshold(self) -> None:
        if self.predictions is not None:
            self._apply(None)

    def refresh_findings(self) -> None:
        """Run the quick doctor checks on what the session holds now."""
        self.doctor.run(full=False)

    def shutdown(self) -> None:
        self.doctor.shutdown()

    def _on_row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.image_requested.emit(current.data(PATH_ROLE))

    def visible_rows(self) -> int:
        return self.proxy.rowCount()

    # ------------------------------------------------------------------ export

    def predictions_at_threshold(self) -> Predictions:
        """The predictions as shown: their own per-fold calls, or all at the slider's threshold."""
        assert self.predictions is not None
        if self.per_row:
            return self.predictions
        return replace(self.predictions, threshold=self.threshold, row_thresholds=None)

    def export_csv(self, path: str | Path) -> Path:
        """Write the predictions at the current threshold in the core's CSV format."""
        from ctviewer.core.metrics.report import write_predictions_csv

        return write_predictions_csv(self.predictions_at_threshold(), path)

    def export_csv_dialog(self) -> None:
        if self.predictions is None:
            return
        target, _ = QFileDialog.getSaveFileName(self, "Export predictions", str(Path.home() / "predictions.csv"),
                                                "CSV (*.csv)")
        if target:
            try:
                self.export_csv(target)
            except Exception as exc:  # noqa: BLE001 - disk full, permission...: show, do not crash
                self.error.emit(WorkerError.from_exception("Export CSV", exc))

    def export_plots(self, folder: str | Path) -> list[Path]:
        """ROC and confusion matrix as PNG files in ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name, widget in (("roc.png", self.roc), ("confusion_matrix.png", self.confusion)):
            target = folder / name
            if not widget.grab().save(str(target)):
                raise OSError(f"{target}: could not write the PNG")
            written.append(target)
        return written

    def export_plots_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export plots into folder", str(Path.home()))
        if folder:
            try:
                self.export_plots(folder)
            except Exception as exc:  # noqa: BLE001
                self.error.emit(WorkerError.from_exception("Export plots", exc))


if __name__ == "__main__":  # a quick look with made-up predictions
    import sys

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv)
    rng = np.random.default_rng(0)
    labels = ["contrast" if i % 2 else "no_contrast" for i in range(40)]
    probs = np.clip(rng.normal([0.7 if lab == "contrast" else 0.3 for lab in labels], 0.2), 0, 1)
    panel = ResultsPanel(Session())
    panel.set_predictions(Predictions(paths=[f"/data/img{i:03d}.dcm" for i in range(40)], probs=probs, threshold=0.5,
                                      classes=("no_contrast", "contrast"), labels=labels), "made-up example")
    panel.resize(520, 800)
    panel.show()
    sys.exit(app.exec())
