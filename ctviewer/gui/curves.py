"""Live training curves: loss, and accuracy/AUC, for training and validation, one point per epoch."""

from __future__ import annotations

from collections import defaultdict

import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QVBoxLayout, QWidget

# (plot, colour) per Keras log key without the "val_" prefix.
_SERIES = {"loss": (0, "#4e79a7"), "accuracy": (1, "#59a14f"), "auc": (1, "#e15759")}


class _Plot(pg.PlotWidget):
    """A plot whose preferred size is modest, so a dock shares its height instead of scrolling."""

    def sizeHint(self) -> QSize:
        return QSize(320, 160)


class CurvesWidget(QWidget):
    """Two stacked plots. Training lines are solid, validation lines dashed; each fold its own line."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.data: dict[tuple[int | None, str], tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
        self._items: dict[tuple[int | None, str], pg.PlotDataItem] = {}
        self.loss_plot = _Plot(background="w")
        self.metric_plot = _Plot(background="w")
        self.loss_plot.setMinimumHeight(100)
        self.metric_plot.setMinimumHeight(100)
        # Loss falls, accuracy/AUC rise: legends go where the lines usually are not.
        for plot, title, corner in ((self.loss_plot, "Loss", (-10, 10)), (self.metric_plot, "Accuracy and AUC", (-10, -30))):
            plot.setTitle(title, color="#333", size="10pt")
            plot.showGrid(x=True, y=True, alpha=0.25)
            plot.setLabel("bottom", "epoch")
            plot.addLegend(offset=corner, labelTextSize="8pt", brush=pg.mkBrush(255, 255, 255, 210),
                           pen=pg.mkPen("#ccc"))
        self.metric_plot.setYRange(0.0, 1.0)
        self.clear()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.loss_plot)
        layout.addWidget(self.metric_plot)

    def clear(self) -> None:
        self.data.clear()
        for plot in (self.loss_plot, self.metric_plot):
            plot.clear()
            legend = plot.plotItem.legend
            if legend is not None:
                legend.clear()
                legend.hide()  # an empty legend is a stray box
        self._items.clear()

    def add_epoch(self, epoch: int, logs: dict[str, float], fold: int | None = None) -> None:
        """Append one point per known log key (``loss``, ``val_auc``...); unknown keys are ignored."""
        for key, value in logs.items():
            base = key.removeprefix("val_")
            if base not in _SERIES or value is None:
                continue
            xs, ys = self.data[(fold, key)]
            xs.append(epoch + 1)
            ys.append(float(value))
            self._item(fold, key).setData(xs, ys)

    def _item(self, fold: int | None, key: str) -> pg.PlotDataItem:
        item = self._items.get((fold, key))
        if item is None:
            validation = key.startswith("val_")
            base = key[4:] if validation else key
            plot_index, colour = _SERIES[base]
            pen = pg.mkPen(colour, width=2, style=Qt.PenStyle.DashLine if validation else Qt.PenStyle.SolidLine)
            name = ("val " if validation else "train ") + base + (f" (fold {fold + 1})" if fold is not None else "")
            # Only the first fold goes in the legend; later folds repeat the same colours.
            plot = (self.loss_plot, self.metric_plot)[plot_index]
            item = plot.plot([], [], pen=pen, symbol="o", symbolSize=4, symbolBrush=colour,
                             name=name if not fold else None)
            if plot.plotItem.legend is not None:
                plot.plotItem.legend.show()
            self._items[(fold, key)] = item
        return item

    def points(self, key: str, fold: int | None = None) -> list[float]:
        """The values plotted so far for ``key`` (e.g. "val_loss")."""
        return list(self.data[(fold, key)][1]) if (fold, key) in self.data else []

    def keys(self) -> list[tuple[int | None, str]]:
        return list(self.data)


if __name__ == "__main__":  # a quick look with made-up numbers
    import math
    import sys

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv)
    widget = CurvesWidget()
    for e in range(20):
        widget.add_epoch(e, {"loss": math.exp(-e / 5), "val_loss": math.exp(-e / 6) + 0.1,
                             "accuracy": 1 - math.exp(-e / 4) / 2, "val_auc": 1 - math.exp(-e / 5) / 2})
    widget.resize(500, 500)
    widget.show()
    sys.exit(app.exec())
