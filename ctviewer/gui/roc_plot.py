"""ROC curve with the current operating point."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QWidget


class RocPlot(pg.PlotWidget):
    """False-positive rate vs sensitivity; a red dot marks the threshold in use."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, background="w")
        self.setMinimumHeight(160)
        self.setAspectLocked(True)
        self.setXRange(0, 1, padding=0.02)
        self.setYRange(0, 1, padding=0.02)
        self.setLabel("bottom", "1 - specificity")
        self.setLabel("left", "sensitivity")
        self.showGrid(x=True, y=True, alpha=0.25)
        self.plot([0, 1], [0, 1], pen=pg.mkPen("#999", style=Qt.PenStyle.DotLine))
        self.curve = self.plot([], [], pen=pg.mkPen("#4e79a7", width=2))
        self.point = pg.ScatterPlotItem(size=11, brush=pg.mkBrush("#e15759"), pen=pg.mkPen("k"))
        self.addItem(self.point)
        self.setTitle("ROC", color="#333", size="10pt")
        # Why there is no curve, inside the plot (a long title would be cut off in a narrow panel).
        self.message = pg.TextItem("", color="#555", anchor=(0.5, 0.5))
        self.message.setPos(0.5, 0.5)
        self.addItem(self.message)

    def sizeHint(self) -> QSize:
        return QSize(280, 220)

    def set_curve(self, fpr: np.ndarray | None, tpr: np.ndarray | None, auc: float | None = None) -> None:
        if fpr is None or tpr is None:
            self.curve.setData([], [])
            self.point.setData([], [])
            self.setTitle("ROC", color="#333", size="10pt")
            self.message.setText("needs images of\nboth classes")
            return
        self.message.setText("")
        self.curve.setData(np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float))
        title = "ROC" if auc is None or np.isnan(auc) else f"ROC, AUC {auc:.3f}"
        self.setTitle(title, color="#333", size="10pt")

    def set_operating_point(self, fpr: float, tpr: float) -> None:
        if np.isnan(fpr) or np.isnan(tpr):
            self.point.setData([], [])
        else:
            self.point.setData([fpr], [tpr])

    def operating_point(self) -> tuple[float, float] | None:
        xs, ys = self.point.getData()
        return (float(xs[0]), float(ys[0])) if len(xs) else None
