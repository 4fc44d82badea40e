"""Live training curves: loss, and accuracy/AUC, for training and validation, one point per epoch."""

from __future__ import annotations

from collections import defaultdict

import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QVBoxLayout, QWidget

# (plot, symbol, name) per Keras log key without the "val_" prefix.
_SERIES = {"loss": (0, "o", "loss"), "accuracy": (1, "o", "accuracy"), "auc": (1, "t", "AUC")}
# Training and validation differ by colour *and* line style (readable in grey print, and for
# colour-blind eyes); accuracy and AUC by shade and marker.
_COLOURS = {("train", "loss"): "#1f5fa6", ("val", "loss"): "#e8710a",
            ("train", "accuracy"): "#1f5fa6", ("val", "accuracy"): "#e8710a",
            ("train", "auc"): "#6baed6", ("val", "auc"): "#c2410c"}


class _Plot(pg.PlotWidget):
    """A plot whose preferred size is modest, so a dock shares its height instead of scrolling."""

    def sizeHint(self) -> QSize:
        return QSize(320, 160)


class CurvesWidget(QWidget):
    """Two stacked plots. Training lines are blue and solid, validation lines orange and dashed; each
    fold its own line. The legends sit under the plots, never over the curves."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.data: dict[tuple[int | None, str], tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
        self._items: dict[tuple[int | None, str], pg.PlotDataItem] = {}
        self.loss_plot = _Plot(background="w")
        self.metric_plot = _Plot(background="w")
        self.loss_plot.setMinimumHeight(100)
        self.metric_plot.setMinimumHeight(100)
        self.legends: dict[int, pg.LegendItem] = {}
        for index, (plot, title) in enumerate(((self.loss_plot, "Loss"), (self.metric_plot, "Accuracy and AUC"))):
            plot.setTitle(title, color="#333", size="10pt")
            plot.showGrid(x=True, y=True, alpha=0.25)
            plot.setLabel("bottom", "epoch")
            # A legend in the plot's own layout, below the axis: outside the area the curves use.
            legend = pg.LegendItem(labelTextSize="8pt", colCount=2, labelTextColor="#333")
            plot.plotItem.layout.addItem(legend, 4, 1)
            self.legends[index] = legend
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
        for legend in self.legends.values():
            legend.clear()
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
            plot_index, symbol, word = _SERIES[base]
            colour = _COLOURS[("val" if validation else "train", base)]
            pen = pg.mkPen(colour, width=2, style=Qt.PenStyle.DashLine if validation else Qt.PenStyle.SolidLine)
            name = ("validation " if validation else "training ") + word
            plot = (self.loss_plot, self.metric_plot)[plot_index]
            item = plot.plot([], [], pen=pen, symbol=symbol, symbolSize=5, symbolBrush=colour, symbolPen=colour)
            # Only the first fold goes in the legend; later folds repeat the same colours.
            if not fold:
                self.legends[plot_index].addItem(item, name)
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
