"""Results panel: predictions per image, series or patient (a switch), confusion matrix with intervals,
ROC with the operating point, a live threshold slider, doctor findings; export CSV (the core's
format) and PNG plots. Every number shown is computed by the core (core.metrics)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSplitter,
    QStyle,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ctviewer.core.metrics.aggregate import Units, aggregate
from ctviewer.core.metrics.operating import operating_point, roc_points
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.gui.confusion_widget import ConfusionMatrixWidget
from ctviewer.gui.doctor_panel import QUICK_CHECKS_DELAY_MS, DoctorPanel
from ctviewer.gui.predictions_table import COLUMNS, PATH_ROLE, PredictionsFilter, PredictionsModel
from ctviewer.gui.roc_plot import RocPlot
from ctviewer.gui.session import Change, Session
from ctviewer.gui.unit_slices import UnitSlices
from ctviewer.gui.wording import for_screen
from ctviewer.gui.workers import WorkerError

SLIDER_STEPS = 1000
# (level, what the switch says); a series/patient row aggregates its images by the core's default rule.
LEVEL_CHOICES = (("image", "Images"), ("series", "Series"), ("patient", "Patients"))


def plain_chosen_on(chosen_on: str, level: str) -> str:
    """Where a level threshold was chosen (`volumes.level_threshold`'s words), as a clinician would say it."""
    units = "series" if level == "series" else f"{level}s"
    if "out-of-fold" in chosen_on:
        return f"chosen on held-out {units} (each scored by a model trained without it)"
    if "validation" in chosen_on:
        return f"chosen on the validation {units} (held out of training)"
    return chosen_on


class ResultsPanel(QWidget):
    """Shows one `Predictions` per image, series or patient; the threshold is the panel's own,
    starting at the model's. For series/patients: chosen on the other folds' units for out-of-fold
    predictions, else the model's own threshold for that level (`ModelHandle.level_thresholds`, from
    its card), else the image threshold (and the panel says so)."""

    image_requested = Signal(str)  # path of a clicked row
    threshold_changed = Signal(float)
    error = Signal(object)  # WorkerError

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.image_predictions: Predictions | None = None  # what was set: one row per image
        self.predictions: Predictions | None = None  # what is shown: images, or one row per unit
        self.units: Units | None = None  # set at series/patient level
        self.level = "image"
        self._unit_index: dict[str, int] = {}
        self._description = ""
        self._level_thresholds: dict[str, tuple[float | None, str]] = {}  # of the model that predicted
        self.threshold = 0.5
        self.per_row = False  # out-of-fold rows, each called at its own fold's threshold
        self._y = np.zeros(0, dtype=np.int64)
        self._roc: Any = None
        self._build()
        session.subscribe(self._on_session_changed)

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
        self.reset_button.setToolTip("Back to the threshold chosen when the model was trained, on patients it did "
                                     "not train on (for cross-validation: each patient group's own)")
        self.reset_button.clicked.connect(self._reset_threshold)
        self.level_combo = QComboBox()
        for level, text in LEVEL_CHOICES:
            self.level_combo.addItem(text, level)
        self.level_combo.setToolTip("Count images, series or patients: table, confusion matrix, intervals and ROC "
                                    "follow. A series/patient probability is the mean of its images'.")
        self.level_combo.currentIndexChanged.connect(lambda _i: self.set_level(self.level_combo.currentData()))
        row = QHBoxLayout()
        row.addWidget(self.level_combo)
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
        # Columns are sized to their widest text by `_fit_columns`, once per set of predictions: the
        # header's ResizeToContents asks the model for every cell's every role again on each change
        # (thousands of calls into Python for an ensemble's out-of-fold rows, at each threshold step).
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        # File names can be long: the first column is narrow and elides in the middle (the full path is
        # in its tooltip, the name in the image's caption), so the call and its threshold fit beside it.
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

        self.slices = UnitSlices()
        self.slices.image_requested.connect(self.image_requested)
        self.slices.hide()
        self.doctor = DoctorPanel(self.session)
        self.doctor.error.connect(self.error)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(table_box)
        splitter.addWidget(self.slices)
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
                       self.errors_check, self.level_combo):
            widget.setEnabled(on)

    # ------------------------------------------------------------------ data

    def set_predictions(self, predictions: Predictions | None, description: str = "") -> None:
        """Make per-image ``predictions`` the session's (shown at the level the switch is on)."""
        if predictions is None:
            self.doctor.clear()  # its findings were about the predictions (and dataset) now gone
        self.session.set_predictions(predictions, description)

    def _on_session_changed(self, change: Change) -> None:
        if change == "predictions" and self.session.predictions is not self.image_predictions:
            self._show_predictions(self.session.predictions, self.session.predictions_description)
        elif change == "labels":
            self._relabel(self.session.dataset)  # the table shows the classes as they are now

    def _show_predictions(self, predictions: Predictions | None, description: str) -> None:
        if predictions is None:
            self.doctor.clear()  # its findings were about the predictions (and dataset) now gone
        self.image_predictions = predictions
        self._level_thresholds = self._model_level_thresholds(predictions)
        self._description = for_screen(description)
        self._show()
        if predictions is not None:
            self.refresh_findings()  # once per set of predictions, not per level switch

    def set_level(self, level: str) -> None:
        """Count images, series or patients; the table, matrix, intervals and ROC follow."""
        if level == self.level:
            return
        self.level = level
        index = self.level_combo.findData(level)
        if index != self.level_combo.currentIndex():
            self.level_combo.blockSignals(True)
            self.level_combo.setCurrentIndex(index)
            self.level_combo.blockSignals(False)
        self._show()

    def _model_level_thresholds(self, predictions: Predictions | None) -> dict[str, tuple[float | None, str]]:
        """The series/patient thresholds of the model that made ``predictions`` (none if another model did)."""
        model = self.session.model
        if predictions is None or model is None or not predictions.model_id or predictions.model_id != model.model_id:
            return {}
        return dict(getattr(model, "level_thresholds", None) or {})

    def _unit_threshold(self, images: Predictions) -> tuple[float | None, str]:
        """The threshold to call this level's units at, and the words that say where it comes from.

        ``None``: let the core decide (cross-fitted per fold for out-of-fold rows, else the image
        threshold with its note).
        """
        if images.folds is not None:
            return None, ""  # out-of-fold: each unit at a threshold chosen on the other folds' units
        threshold, chosen_on = self._level_thresholds.get(self.level, (None, ""))
        if threshold is None:
            return None, ""
        return threshold, f"threshold {threshold:.2f}, {plain_chosen_on(chosen_on, self.level)}"

    def _show(self) -> None:
        images = self.image_predictions
        self.units = None
        level_note = ""
        if images is not None and self.level != "image":
            threshold, level_note = self._unit_threshold(images)
            self.units = aggregate(images, self.level, threshold=threshold)
        predictions = self.units.predictions if self.units is not None else images
        self._unit_index = {u: i for i, u in enumerate(predictions.paths)} if self.units is not None else {}
        self.slices.setVisible(self.units is not None)
        self.slices.show_unit(None, None)
        self.predictions = predictions
        self.model.set_predictions(predictions)
        self._enable(predictions is not None)
        self._roc = None
        description = self._description
        if predictions is None:
            self.source_label.setText("No predictions yet: train a model, or open one and predict.")
            self.confusion.set_point(None)
            self.roc.set_curve(None, None)
            return
        self._y = predictions.y_true
        labelled = int((self._y >= 0).sum())
        seen = predictions.n_in_training
        word = dict(LEVEL_CHOICES)[self.level].lower()
        counted = "" if self.units is None else f" from {len(images)} images (mean of each {self.level}'s)"
        notes = "" if self.units is None else "".join(f"<br><small>{for_screen(n)}</small>"
                                                     for n in ([level_note] if level_note else []) + self.units.notes)
        self.source_label.setText(f"<b>{len(predictions)} {word}</b>{counted}"
                                  + (f" — {description}" if description else "")
                                  + (f"; {len(predictions) - labelled} unlabelled" if labelled < len(predictions) else "")
                                  + notes
                                  + (f"<br><b>{seen} of {len(predictions)} are this model's own training images</b>: "
                                     "their probabilities (and metrics on them) are optimistic" if seen else ""))
        self.confusion.set_classes(predictions.classes)
        self.slider.setToolTip(f"Decision threshold: {'an image' if self.units is None else 'a ' + self.level} is "
                               "called positive when the model's probability of the positive class is at least this")
        self.table.setColumnHidden(COLUMNS.index("Fold"), predictions.folds is None)
        self.table.setColumnHidden(COLUMNS.index("Uncertainty"), predictions.uncertainty is None)
        self.table.setColumnHidden(COLUMNS.index("Training image"), predictions.in_training is None)
        self._fill_roc()
        self._apply(None)  # the model's own call: its threshold, or each fold's for out-of-fold rows
        self._fit_columns()

    def _fit_columns(self, columns: range | tuple[int, ...] = range(1, len(COLUMNS))) -> None:
        """Each column (but the eliding file names) as wide as its header and its widest text."""
        header, metrics = self.table.horizontalHeader(), self.table.fontMetrics()
        padding = 2 * self.table.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, self.table) + 8
        for column in columns:
            if self.table.isColumnHidden(column):
                continue
            # The longest few strings by length: in this font, the widest is among them.
            longest = sorted(set(self.model.column_texts(column)), key=len, reverse=True)[:8]
            widest = max((metrics.horizontalAdvance(text) for text in longest), default=0)
            header.resizeSection(column, max(widest + padding, header.sectionSizeHint(column)))


    def _relabel(self, dataset: Any) -> None:
        """The dataset's classes changed (relabelled in the browser): the table and counts follow."""
        images = self.image_predictions
        if images is None or dataset is None:
            return
        label_of = {item.path: item.label for item in dataset.items}
        labels = [label_of.get(path, old) for path, old in zip(images.paths, images.labels)]
        if labels == list(images.labels):
            return
        known = set(images.classes)
        labels = [lab if lab in known else None for lab in labels]  # a new class is not one the model calls
        keep_threshold = None if self.per_row else self.threshold
        # Relabel the images, then rebuild the level shown (series/patient truth follows its images).
        self.image_predictions = replace(images, labels=labels)
        self.session.set_predictions(self.image_predictions, self._description)  # the doctor checks these
        self._show()
        if keep_threshold is not None:
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
        # The core's numpy-only ROC (no scikit-learn import on the GUI thread).
        curve = roc_points(self._y, self.predictions.probs)
        if curve is None:
            self._roc = None
            self.roc.set_curve(None, None)
            return
        self._roc = (curve.fpr, curve.tpr)
        self.roc.set_curve(curve.fpr, curve.tpr, curve.auc)

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
        self._fit_columns((COLUMNS.index("Predicted"),))  # "✗" comes and goes with the threshold
        point = operating_point(self._y, pred.probs, pred.row_thresholds if self.per_row else self.threshold,
                                unit=self.level)
        self.confusion.set_point(point)
        sens, _ = point.rate("sensitivity")
        spec, _ = point.rate("specificity")
        self.roc.set_operating_point(1.0 - spec, sens)
        self.threshold_changed.emit(self.threshold)

    def _reset_threshold(self) -> None:
        if self.predictions is not None:
            self._apply(None)

    def refresh_findings(self) -> None:
        """Run the quick doctor checks on what the session holds, once the panel is drawn."""
        self.doctor.run(full=False, after_ms=QUICK_CHECKS_DELAY_MS)

    def shutdown(self) -> None:
        self.doctor.shutdown()

    def _on_row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        if self.units is None:
            self.image_requested.emit(current.data(PATH_ROLE))
            return
        # A series/patient row: list its slices, most positive first, and open the one that drove the call.
        unit = self._unit_index[current.data(PATH_ROLE)]
        self.slices.show_unit(self.units, unit)
        self.image_requested.emit(self.units.images.paths[int(self.units.driving[unit])])

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
        """Write the rows shown at the current threshold in the core's CSV format (per image or per unit)."""
        if self.units is not None:
            from ctviewer.core.metrics.unit_report import write_units_csv

            return write_units_csv(replace(self.units, predictions=self.predictions_at_threshold()), path)
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
