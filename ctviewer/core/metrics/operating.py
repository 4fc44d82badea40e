"""The operating point at one threshold and the ROC corners: cheap, numpy only, for a live slider.

The GUI redraws these at every slider step; they live in the core so the app shows the same
numbers the CLI and the reports compute (and so they are tested without Qt).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctviewer.core.metrics.stats import Interval, confusion, delong_auc, wilson_interval
from ctviewer.core.metrics.thresholds import metrics_at_thresholds


@dataclass(frozen=True)
class OperatingPoint:
    """Counts and rates at one threshold (Wilson intervals over ``unit``\\ s)."""

    threshold: float
    tp: int
    fn: int
    fp: int
    tn: int
    per_row: bool = False  # each row called at its own fold's threshold (``threshold`` = their median)
    unit: str = "image"

    @property
    def n(self) -> int:
        return self.tp + self.fn + self.fp + self.tn

    def rate(self, name: str) -> tuple[float, Interval]:
        """``(value, Wilson interval)`` of sensitivity, specificity, ppv, npv or accuracy (NaN when 0/0)."""
        k, n = {"sensitivity": (self.tp, self.tp + self.fn), "specificity": (self.tn, self.tn + self.fp),
                "ppv": (self.tp, self.tp + self.fp), "npv": (self.tn, self.tn + self.fn),
                "accuracy": (self.tp + self.tn, self.n)}[name]
        return (k / n if n else float("nan")), wilson_interval(k, n)


def operating_point(y_true: np.ndarray, probs: np.ndarray, threshold: float | np.ndarray,
                    unit: str = "image") -> OperatingPoint:
    """Counts over labelled rows (``y_true`` 0/1; rows with -1 are left out).

    ``threshold`` is one number, or one per row (out-of-fold predictions, each called at its
    own fold's threshold); the point then reports their median.
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    keep = y_true >= 0
    per_row = np.ndim(threshold) > 0
    cut = np.asarray(threshold, dtype=np.float64)[keep] if per_row else float(threshold)
    c = confusion(y_true[keep], (probs[keep] >= cut).astype(np.int64))
    shown = float(np.median(threshold)) if per_row else float(threshold)
    return OperatingPoint(threshold=shown, tp=c.tp, fn=c.fn, fp=c.fp, tn=c.tn, per_row=per_row, unit=unit)


@dataclass(frozen=True)
class RocPoints:
    """ROC corners from (0, 0) to (1, 1), and the AUC."""

    fpr: np.ndarray
    tpr: np.ndarray
    auc: float


def roc_points(y_true: np.ndarray, probs: np.ndarray) -> RocPoints | None:
    """The ROC of the labelled rows (``y_true`` -1 left out) without scikit-learn; None with one class.

    The counts at every candidate threshold are the curve's corners, plus its two ends; the AUC
    is DeLong's (the same number as the metrics report).
    """
    y_true = np.asarray(y_true)
    keep = y_true >= 0
    y, p = y_true[keep], np.asarray(probs, dtype=np.float64)[keep]
    if not ((y == 1).any() and (y == 0).any()):
        return None
    table = metrics_at_thresholds(y, p)
    order = np.argsort(-table.thresholds)
    fpr = np.concatenate([[0.0], 1.0 - table.specificity[order], [1.0]])
    tpr = np.concatenate([[0.0], table.sensitivity[order], [1.0]])
    return RocPoints(fpr=fpr, tpr=tpr, auc=delong_auc(y, p).auc)
