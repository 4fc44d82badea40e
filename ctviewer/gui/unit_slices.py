"""The slices of one series or patient, most positive first: what a unit's call rests on."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ctviewer.core.metrics.aggregate import Units
from ctviewer.core.metrics.unit_report import image_ref

SLICE_COLUMNS = ("Slice", "Probability", "Label")  # "Probability of <the positive class>" once known


class UnitSlices(QWidget):
    """Lists a unit's images sorted by probability; the first one drove the call. A click opens it."""

    image_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.units: Units | None = None
        self.unit: int | None = None
        self.paths: list[str] = []
        self.title = QLabel("")
        self.table = QTableWidget(0, len(SLICE_COLUMNS))
        self.table.setHorizontalHeaderLabels(SLICE_COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.currentCellChanged.connect(self._on_cell_changed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.table)

    def show_unit(self, units: Units | None, unit: int | None) -> None:
        """Fill the list with unit ``unit`` of ``units`` (None clears it)."""
        self.units, self.unit = units, unit
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        self.paths = []
        if units is None or unit is None:
            self.title.setText("")
            self.table.blockSignals(False)
            return
        images = units.images
        rows = units.slices_of(unit)
        self.table.setHorizontalHeaderItem(1, QTableWidgetItem(f"Probability of {images.positive}"))
        self.title.setText(f"<b>{units.level} {units.predictions.paths[unit]}</b>: {rows.size} slice(s), "
                           f"{units.rule} probability {units.predictions.probs[unit]:.3f}; the first drove the call")
        self.table.setRowCount(rows.size)
        for r, i in enumerate(rows):
            ref = image_ref(images, int(i))
            self.paths.append(images.paths[int(i)])
            values = (Path(ref).name, f"{images.probs[int(i)]:.3f}", images.labels[int(i)] or "")
            for c, text in enumerate(values):
                item = QTableWidgetItem(text)
                item.setToolTip(ref)
                if c == 1:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        self.table.blockSignals(False)

    def probabilities(self) -> list[float]:
        """The probabilities as listed (top to bottom)."""
        return [float(self.table.item(r, 1).text()) for r in range(self.table.rowCount())]

    def _on_cell_changed(self, row: int, _col: int, _prev_row: int, _prev_col: int) -> None:
        if 0 <= row < len(self.paths):
            self.image_requested.emit(self.paths[row])
