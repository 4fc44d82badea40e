"""ROC and precision-recall curves (scikit-learn) and calibration (reliability bins, Brier, ECE)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ctviewer.core.metrics.stats import _check_inputs, delong_auc
from ctviewer.core.metrics.thresholds import _safe_div

# --------------------------------------------------------------------------- curves


@dataclass
class RocCurve:
    """ROC points, lowest false-positive rate first. ``thresholds[0]`` is +inf (no positive call)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float


def roc_curve(y_true: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray,
              drop_intermediate: bool = True) -> RocCurve:
    """ROC curve via scikit-learn (``prob >= threshold`` is positive). Needs both classes."""
    y, p = _check_inputs(y_true, probs)
    _need_both_classes(y, "a ROC curve")
    from sklearn.metrics import roc_curve as sk_roc_curve

    fpr, tpr, thr = sk_roc_curve(y, p, drop_intermediate=drop_intermediate)
    return RocCurve(fpr=fpr, tpr=tpr, thresholds=thr, auc=delong_auc(y, p).auc)


@dataclass
class PrCurve:
    """Precision-recall points (scikit-learn order: recall decreasing), average precision, prevalence."""

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    average_precision: float
    prevalence: float


def pr_curve(y_true: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray) -> PrCurve:
    """Precision-recall curve via scikit-learn. Needs both classes.

    ``prevalence`` (the fraction of positives) is the precision of a model that guesses, the
    baseline to read the curve against.
    """
    y, p = _check_inputs(y_true, probs)
    _need_both_classes(y, "a precision-recall curve")
    from sklearn.metrics import average_precision_score, precision_recall_curve

    precision, recall, thr = precision_recall_curve(y, p)
    return PrCurve(precision=precision, recall=recall, thresholds=thr,
                   average_precision=float(average_precision_score(y, p)), prevalence=float(y.mean()))


def _need_both_classes(y: np.ndarray, what: str) -> None:
    m, n = int((y == 1).sum()), int((y == 0).sum())
    if m == 0 or n == 0:
        raise ValueError(f"{what} needs both classes; got {m} positives and {n} negatives")


@dataclass
class Calibration:
    """Reliability bins: per bin, mean predicted probability, observed positive fraction, count.

    Empty bins have NaN means and count 0. ``ece`` is the expected calibration error (the
    count-weighted mean gap between predicted and observed), ``brier`` the mean squared error.
    """

    edges: np.ndarray
    mean_predicted: np.ndarray
    observed_fraction: np.ndarray
    count: np.ndarray
    brier: float
    ece: float


def calibration(y_true: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray,
                n_bins: int = 10) -> Calibration:
    """Reliability bins of equal width on [0, 1]; bin i holds ``edges[i] <= p < edges[i+1]``
    (the last bin includes 1.0)."""
    y, p = _check_inputs(y_true, probs)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    if y.size == 0:
        raise ValueError("no images to calibrate")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], p, side="right")
    count = np.bincount(bins, minlength=n_bins)
    mean_predicted = _safe_div(np.bincount(bins, weights=p, minlength=n_bins), count)
    observed = _safe_div(np.bincount(bins, weights=y, minlength=n_bins), count)
    filled = count > 0
    ece = float(np.sum(count[filled] * np.abs(observed[filled] - mean_predicted[filled])) / y.size)
    return Calibration(edges=edges, mean_predicted=mean_predicted, observed_fraction=observed,
                       count=count, brier=float(np.mean((p - y) ** 2)), ece=ece)

