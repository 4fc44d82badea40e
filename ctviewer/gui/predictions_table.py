"""Per-image predictions as a sortable, filterable table, coloured by correctness."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QBrush, QColor

from ctviewer.core.metrics.predictions import Predictions

COLUMNS = ("File", "Patient", "Label", "Probability", "Predicted", "Correct", "Fold", "Uncertainty",
           "Training image")
UNCERTAINTY_COLUMN, TRAINING_COLUMN = 7, 8
_HEADER_TIPS = {
    "Uncertainty": "How much the ensemble's fold models disagree (standard deviation of their probabilities)",
    "Training image": "The model trained on this image: its probability is optimistic",
    "Label": "The true class (from the folders or labels.csv)",
    "Probability": "The model's probability of the positive class",
    "Predicted": "The model's call, with the threshold it was made at; ✗ marks a wrong call (red row)",
    "Correct": "Whether the call matches the true class",
    "Fold": "The patient group whose model predicted this image (cross-validation)",
}
SORT_ROLE = Qt.ItemDataRole.UserRole + 10
PATH_ROLE = Qt.ItemDataRole.UserRole + 11
_RIGHT = QBrush(QColor(214, 240, 214))
_WRONG = QBrush(QColor(248, 210, 210))

Index = QModelIndex | QPersistentModelIndex


class PredictionsModel(QAbstractTableModel):
    """Rows of a `Predictions`; the threshold decides Predicted/Correct and can change live."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.predictions: Predictions | None = None
        self.threshold: float | None = None  # None: the predictions' own threshold(s)
        self._pred: list[str] = []
        self._correct: list[bool | None] = []
        self._cut: list[float] = []
        self._row_of: dict[str, int] = {}

    def set_predictions(self, predictions: Predictions | None, threshold: float | None = None) -> None:
        """``threshold`` None: the predictions' own (per-row thresholds for out-of-fold rows)."""
        self.beginResetModel()
        self.predictions = predictions
        self.threshold = threshold
        self._row_of = {path: i for i, path in enumerate(predictions.paths)} if predictions is not None else {}
        self._recompute()
        self.endResetModel()
        self.headerDataChanged.emit(Qt.Orientation.Horizontal, 0, len(COLUMNS) - 1)

    def row_of(self, path: str) -> int | None:
        return self._row_of.get(path)

    def set_threshold(self, threshold: float | None) -> None:
        self.threshold = None if threshold is None else float(threshold)
        self._recompute()
        if self.rowCount():
            self.dataChanged.emit(self.index(0, 0), self.index(self.rowCount() - 1, len(COLUMNS) - 1))

    def _recompute(self) -> None:
        p = self.predictions
        self._pred = p.pred_names(self.threshold) if p is not None else []
        self._correct = p.correct(self.threshold) if p is not None else []
        self._cut = p.thresholds(self.threshold).tolist() if p is not None else []

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt API
        return 0 if parent.isValid() or self.predictions is None else len(self.predictions)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt API
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal:
            return None
        name = COLUMNS[section]
        if role == Qt.ItemDataRole.DisplayRole:
            if name == "Fold":
                return "Group"
            if name == "Probability" and self.predictions is not None:
                return f"Probability\nof {self.predictions.positive}"
            return name
        if role == Qt.ItemDataRole.ToolTipRole:
            return _HEADER_TIPS.get(name)
        return None

    def is_error(self, row: int) -> bool:
        return self._correct[row] is False

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        p = self.predictions
        if p is None or not index.isValid():
            return None
        row, col = index.row(), index.column()
        correct = self._correct[row]
        if role == PATH_ROLE:
            return p.paths[row]
        if role == Qt.ItemDataRole.BackgroundRole:
            return None if correct is None else (_RIGHT if correct else _WRONG)
        if role == Qt.ItemDataRole.ToolTipRole:
            return p.paths[row]
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (3, UNCERTAINTY_COLUMN):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role not in (Qt.ItemDataRole.DisplayRole, SORT_ROLE):
            return None
        fold = "" if p.folds is None else int(p.folds[row]) + 1
        spread = None if p.uncertainty is None else float(p.uncertainty[row])
        seen = None if p.in_training is None else bool(p.in_training[row])
        values = (Path(p.paths[row]).name, p.patients[row] or "", p.labels[row] or "", float(p.probs[row]),
                  self._pred[row], correct, fold, spread, seen)
        value = values[col]
        if role == SORT_ROLE:
            return -1 if value is None else (value if not isinstance(value, bool) else int(value))
        if col == 3:
            return f"{value:.3f}"
        if col == 4:  # the threshold beside the call: "contrast ≥0.051"
            sign = "≥" if p.probs[row] >= self._cut[row] else "<"
            wrong = " ✗" if correct is False else ""
            return f"{value} {sign}{self._cut[row]:.3f}{wrong}"
        if col == UNCERTAINTY_COLUMN:
            return "" if value is None else f"{value:.3f}"
        if col == TRAINING_COLUMN:
            return "" if value is None else ("yes (optimistic)" if value else "no")
        if col == 5:
            return "" if value is None else ("yes" if value else "NO")
        return value


class PredictionsFilter(QSortFilterProxyModel):
    """Sorts by the raw values; can hide every correctly classified row."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.errors_only = False
        self.text = ""
        self.setSortRole(SORT_ROLE)

    def set_errors_only(self, on: bool) -> None:
        self._change_filter(lambda: setattr(self, "errors_only", on))

    def set_text(self, text: str) -> None:
        self._change_filter(lambda: setattr(self, "text", text.strip().lower()))

    def _change_filter(self, change: Any) -> None:
        # Qt 6.10 replaced invalidateFilter() (deprecated) by begin/endFilterChange().
        if hasattr(self, "endFilterChange"):
            self.beginFilterChange()
            change()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:  # pragma: no cover - Qt < 6.10
            change()
            self.invalidateFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        model = self.sourceModel()
        if self.errors_only and not model.is_error(source_row):
            return False
        if self.text:
            hay = " ".join(str(model.data(model.index(source_row, c))) for c in (0, 1, 2))
            return self.text in hay.lower()
        return True
