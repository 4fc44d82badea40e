"""Confusion matrix with counts, and sensitivity/specificity/PPV/NPV with 95% intervals."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QVBoxLayout, QWidget

# The numbers are the core's (issue 11): this widget only draws them.
from ctviewer.core.metrics.operating import OperatingPoint, operating_point  # noqa: F401  (re-exported)


def _cell(text: str = "", bold: bool = False) -> QLabel:
    label = QLabel(text)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    if bold:
        label.setStyleSheet("font-weight: bold;")
    return label


class ConfusionMatrixWidget(QWidget):
    """Rows = true class, columns = predicted class; the positive class first, as in radiology."""

    RATES = (("sensitivity", "Sensitivity"), ("specificity", "Specificity"), ("ppv", "PPV"), ("npv", "NPV"),
             ("accuracy", "Accuracy"))

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.point: OperatingPoint | None = None
        grid = QGridLayout()
        grid.setSpacing(2)
        self.header_pred = _cell("predicted →", bold=True)
        grid.addWidget(self.header_pred, 0, 1, 1, 2)
        self.col_labels = [_cell(bold=True), _cell(bold=True)]
        self.row_labels = [_cell(bold=True), _cell(bold=True)]
        for i in range(2):
            grid.addWidget(self.col_labels[i], 1, 1 + i)
            grid.addWidget(self.row_labels[i], 2 + i, 0)
        self.cells: dict[str, QLabel] = {}
        for key, (r, c), colour in (("tp", (2, 1), "#cde8cd"), ("fn", (2, 2), "#f3cccc"),
                                    ("fp", (3, 1), "#f3cccc"), ("tn", (3, 2), "#cde8cd")):
            cell = _cell("–")
            cell.setFrameShape(QFrame.Shape.Box)
            cell.setMinimumSize(90, 46)
            cell.setStyleSheet(f"background: {colour}; font-size: 15pt; color: #222;")
            cell.setToolTip(key.upper())
            grid.addWidget(cell, r, c)
            self.cells[key] = cell
        grid.addWidget(_cell("true ↓", bold=True), 1, 0)
        self.rates = QLabel("")
        self.rates.setTextFormat(Qt.TextFormat.RichText)
        self.rates.setWordWrap(True)
        self.rates.setToolTip("Sensitivity: share of positive images called positive. Specificity: share of "
                              "negative images called negative. PPV / NPV: share of positive / negative calls "
                              "that are right. The 95 % range is where the true value likely lies, given how few "
                              "images there are (Wilson interval)")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(grid)
        layout.addWidget(self.rates)
        self.set_classes(("negative", "positive"))

    def set_classes(self, classes: tuple[str, str]) -> None:
        negative, positive = classes
        for labels in (self.col_labels, self.row_labels):
            labels[0].setText(positive)
            labels[1].setText(negative)

    def set_point(self, point: OperatingPoint | None) -> None:
        self.point = point
        for key, cell in self.cells.items():
            cell.setText("–" if point is None else str(getattr(point, key)))
        if point is None:
            self.rates.setText("")
            return
        rows = []
        for key, name in self.RATES:
            value, ci = point.rate(key)
            shown = "n/a" if np.isnan(value) else f"{value:.2f}"
            rows.append(f"<tr><td>{name}</td><td align='right'><b>{shown}</b></td>"
                        f"<td>&nbsp;(95 % range {ci})</td></tr>")
        unit = point.unit
        units = unit if unit == "series" else f"{unit}s"
        # Out-of-fold rows: each was called at the threshold chosen without its patients.
        where = (f"each {unit} at the threshold chosen on held-out patients (median {point.threshold:.3f})"
                 if point.per_row else f"threshold {point.threshold:.3f}")
        self.rates.setText(f"<table>{''.join(rows)}</table><small>n = {point.n} {units}, {where}; "
                           f"ranges count {units}</small>")

    def counts(self) -> dict[str, int]:
        p = self.point
        return {} if p is None else {"tp": p.tp, "fn": p.fn, "fp": p.fp, "tn": p.tn}
