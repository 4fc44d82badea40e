"""Per-image predictions as a sortable, filterable table, coloured by correctness."""

from __future__ import annotations

import os
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
# The roles as plain ints: `data` compares against them a hundred thousand times a minute.
_DISPLAY, _BACKGROUND, _ALIGNMENT, _TOOLTIP = (int(r.value) for r in (
    Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.BackgroundRole, Qt.ItemDataRole.TextAlignmentRole,
    Qt.ItemDataRole.ToolTipRole))
_SORT, _PATH = int(SORT_ROLE), int(PATH_ROLE)
_RIGHT_ALIGNED = int((Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter).value)
_RIGHT = QBrush(QColor(214, 240, 214))
_WRONG = QBrush(QColor(248, 210, 210))

Index = QModelIndex | QPersistentModelIndex


class PredictionsModel(QAbstractTableModel):
    """Rows of a `Predictions`; the threshold decides Predicted/Correct and can change live.

    Every cell's text is made once per set of predictions (the call columns once per threshold):
    a view asks for each visible cell ten times a paint, so `data` only looks its answer up.
    """

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.predictions: Predictions | None = None
        self.threshold: float | None = None  # None: the predictions' own threshold(s)
        self._correct: list[bool | None] = []
        self._sort: list[list[Any]] = [[] for _ in COLUMNS]  # per column, the raw value of each row
        self._text: list[list[str]] = [[] for _ in COLUMNS]  # per column, what each row shows
        self._row_of: dict[str, int] = {}
        self._rows = 0

    def set_predictions(self, predictions: Predictions | None, threshold: float | None = None) -> None:
        """``threshold`` None: the predictions' own (per-row thresholds for out-of-fold rows)."""
        self.beginResetModel()
        self.predictions = predictions
        self.threshold = threshold
        self._rows = 0 if predictions is None else len(predictions)
        paths = predictions.paths if predictions is not None else []
        self._row_of = {path: i for i, path in enumerate(paths)}
        self._fill_fixed_columns()
        self._recompute()
        self.endResetModel()
        self.headerDataChanged.emit(Qt.Orientation.Horizontal, 0, len(COLUMNS) - 1)

    def row_of(self, path: str) -> int | None:
        return self._row_of.get(path)

    def column_texts(self, column: int) -> list[str]:
        """What each row shows in ``column`` (for sizing the column to its widest text)."""
        return self._text[column]

    def set_threshold(self, threshold: float | None) -> None:
        self.threshold = None if threshold is None else float(threshold)
        self._recompute()
        if self.rowCount():
            self.dataChanged.emit(self.index(0, 0), self.index(self.rowCount() - 1, len(COLUMNS) - 1))

    def _fill_fixed_columns(self) -> None:
        """The columns the threshold does not change."""
        p = self.predictions
        if p is None:
            self._sort = [[] for _ in COLUMNS]
            self._text = [[] for _ in COLUMNS]
            return
        n = len(p)
        names = [os.path.basename(os.path.normpath(path)) for path in p.paths]
        patients = [patient or "" for patient in p.patients]
        labels = [label or "" for label in p.labels]
        probs = [float(x) for x in p.probs]
        folds = [int(f) + 1 for f in p.folds] if p.folds is not None else [""] * n
        spread = [float(u) for u in p.uncertainty] if p.uncertainty is not None else [None] * n
        seen = [bool(s) for s in p.in_training] if p.in_training is not None else [None] * n
        self._sort = [names, patients, labels, probs, [], [], folds, spread, seen]
        self._text = [names, patients, labels, [f"{x:.3f}" for x in probs], [], [], [str(f) for f in folds],
                      ["" if u is None else f"{u:.3f}" for u in spread],
                      ["" if s is None else ("yes (optimistic)" if s else "no") for s in seen]]

    def _recompute(self) -> None:
        """The call columns at the threshold in use: "contrast ≥0.051", with ✗ after a wrong call."""
        p = self.predictions
        if p is None:
            self._correct = []
            return
        called = p.pred_names(self.threshold)
        self._correct = p.correct(self.threshold)
        cuts = p.thresholds(self.threshold).tolist()
        texts = []
        for prob, name, cut, correct in zip(self._sort[3], called, cuts, self._correct):
            texts.append(f"{name} {'≥' if prob >= cut else '<'}{cut:.3f}{' ✗' if correct is False else ''}")
        self._sort[4], self._text[4] = called, texts
        self._sort[5] = self._correct
        self._text[5] = ["" if c is None else ("yes" if c else "NO") for c in self._correct]

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt API
        return 0 if parent.isValid() else self._rows

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
        if not self._rows or not index.isValid():
            return None
        row, col = index.row(), index.column()
        if role == _DISPLAY:
            return self._text[col][row]
        if role == _BACKGROUND:
            correct = self._correct[row]
            return None if correct is None else (_RIGHT if correct else _WRONG)
        if role == _ALIGNMENT:
            return _RIGHT_ALIGNED if col in (3, UNCERTAINTY_COLUMN) else None
        if role == _SORT or role == _PATH or role == _TOOLTIP:
            if role != _SORT:
                return self.predictions.paths[row]
            value = self._sort[col][row]
            return -1 if value is None else (int(value) if isinstance(value, bool) else value)
        return None


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
