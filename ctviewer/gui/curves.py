"""Live training curves: loss, and accuracy/AUC, for training and validation, one point per epoch.

Drawing is the costly part (measured on the real window: ~25 ms of GUI-thread CPU per epoch for
six curves with markers and a grid), and the GUI thread must stay free for keys and the mouse while
the engine trains. So an epoch only records its points; the plots are redrawn at most
``REDRAWS_PER_SECOND`` times a second; and while training the axes stay put (x: the planned
epochs; loss: from 0 to a round number above the highest loss), so a redraw paints each plot
once instead of twice (auto-range repaints after it moved the axes): 13 instead of 30 ms.
"""

from __future__ import annotations

import math
from collections import defaultdict

import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtWidgets import QVBoxLayout, QWidget

# (plot, symbol, name) per Keras log key without the "val_" prefix.
_SERIES = {"loss": (0, "o", "loss"), "accuracy": (1, "o", "accuracy"), "auc": (1, "t", "AUC")}
# Training and validation differ by colour *and* line style (readable in grey print, and for
# colour-blind eyes); accuracy and AUC by shade and marker.
REDRAWS_PER_SECOND = 5
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
        self._dirty: dict[tuple[int | None, str], None] = {}  # recorded, not drawn yet (in order)
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(1000 // REDRAWS_PER_SECOND)
        self._redraw.timeout.connect(self.flush)
        self.redraws = 0  # how many times the plots were redrawn (the coalescing is tested on it)
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
        self._redraw.stop()
        self._dirty.clear()
        self.data.clear()
        for plot in (self.loss_plot, self.metric_plot):
            plot.clear()
        self._auto_range()
        for legend in self.legends.values():
            legend.clear()
        self._items.clear()
        self._planned = 0

    def add_epoch(self, epoch: int, logs: dict[str, float], fold: int | None = None, epochs: int = 0) -> None:
        """Record one point per known log key (``loss``, ``val_auc``...); unknown keys are ignored.

        The plots follow within ``1 / REDRAWS_PER_SECOND`` s (`flush` draws at once). ``epochs``,
        the planned number, fixes the x axis while training.
        """
        for key, value in logs.items():
            base = key.removeprefix("val_")
            if base not in _SERIES or value is None:
                continue
            xs, ys = self.data[(fold, key)]
            xs.append(epoch + 1)
            ys.append(float(value))
            self._dirty[(fold, key)] = None
        if epochs and epochs != self._planned:
            self._planned = epochs
            for plot in (self.loss_plot, self.metric_plot):
                plot.setXRange(0.5, epochs + 0.5, padding=0)  # also turns x auto-range off
            self._loss_top = 0.0
        if self._dirty and not self._redraw.isActive():
            self._redraw.start()

    def flush(self) -> None:
        """Draw what was recorded since the last redraw."""
        self._redraw.stop()
        dirty, self._dirty = self._dirty, {}
        for fold, key in dirty:
            xs, ys = self.data[(fold, key)]
            self._item(fold, key).setData(xs, ys)
        if dirty:
            self.redraws += 1
            if self._planned:
                self._fix_loss_range()

    def _fix_loss_range(self) -> None:
        # 0 to the next round number above every loss: it moves only when a loss passes that number.
        values = [y for (_fold, key), (_xs, ys) in self.data.items() if key.removeprefix("val_") == "loss"
                  for y in ys if math.isfinite(y)]
        top = _round_up(1.05 * max(values, default=1.0))  # the top point not on the border
        if top != self._loss_top:
            self._loss_top = top
            self.loss_plot.setYRange(0.0, top, padding=0)  # also turns y auto-range off

    def fit_to_data(self) -> None:
        """After training: draw everything; the axes fit the data again (early stopping ends the x axis)."""
        self.flush()
        self._auto_range()

    def _auto_range(self) -> None:
        for plot in (self.loss_plot, self.metric_plot):
            plot.enableAutoRange(x=True)
        self.loss_plot.enableAutoRange(y=True)
        self._planned = 0
        self._loss_top = 0.0

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
        """The values recorded so far for ``key`` (e.g. "val_loss"); drawn within a redraw interval."""
        return list(self.data[(fold, key)][1]) if (fold, key) in self.data else []

    def keys(self) -> list[tuple[int | None, str]]:
        return list(self.data)


def _round_up(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``value`` (0.73 -> 1, 1.3 -> 2)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1.0, 2.0, 5.0, 10.0) if step * power >= value * (1 - 1e-9))


if __name__ == "__main__":  # a quick look with made-up numbers
    import math
    import sys

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv)
    widget = CurvesWidget()
    for e in range(20):
        widget.add_epoch(e, {"loss": math.exp(-e / 5), "val_loss": math.exp(-e / 6) + 0.1,
                             "accuracy": 1 - math.exp(-e / 4) / 2, "val_auc": 1 - math.exp(-e / 5) / 2})
    widget.flush()
    widget.resize(500, 500)
    widget.show()
    sys.exit(app.exec())
