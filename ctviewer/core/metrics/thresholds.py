"""Threshold tables and threshold choice (Youden's J, target sensitivity or specificity)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ctviewer.core.metrics.stats import _check_inputs

# --------------------------------------------------------------------------- thresholds


def candidate_thresholds(probs: Sequence[float] | np.ndarray) -> np.ndarray:
    """One threshold for each distinct way of calling these scores, in increasing order.

    The scores are padded with 0 below and 1 above, and each threshold is the midpoint
    between two adjacent distinct values: the threshold below the lowest score calls every
    image positive, the one above the highest calls every image negative. A midpoint sits
    in a gap between scores, so applying it again to the same data (or to the same numbers
    read back from a CSV) reproduces the same counts. Where two scores are adjacent floats
    the midpoint rounds onto one of them; the upper score is used then (``>=`` still
    separates them). If the highest score is 1.0, the last threshold is the next float above 1.
    """
    p = _check_inputs(np.zeros(np.asarray(probs).size, dtype=np.int64), probs)[1]
    scores = np.unique(p)
    if scores.size == 0:
        return np.array([0.5])
    below = np.r_[0.0, scores[:-1]]
    mids = (below + scores) / 2.0
    mids = np.where(mids > below, mids, scores)
    top = (scores[-1] + 1.0) / 2.0
    if top <= scores[-1]:
        top = float(np.nextafter(scores[-1], np.inf))
    return np.asarray(np.r_[mids, top], dtype=np.float64)


@dataclass
class ThresholdTable:
    """Counts and proportions at each of several thresholds (arrays of equal length)."""

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    tn: np.ndarray
    fn: np.ndarray
    sensitivity: np.ndarray
    specificity: np.ndarray
    ppv: np.ndarray
    npv: np.ndarray
    accuracy: np.ndarray
    youden_j: np.ndarray

    def __len__(self) -> int:
        return int(self.thresholds.size)


def _safe_div(num: np.ndarray, den: np.ndarray | int) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.broadcast_to(np.asarray(den, dtype=np.float64), num.shape)
    out: np.ndarray = np.divide(num, den, out=np.full(num.shape, np.nan), where=den != 0)
    return out


def metrics_at_thresholds(y_true: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray,
                          thresholds: Sequence[float] | np.ndarray | None = None) -> ThresholdTable:
    """Confusion counts and point metrics at each threshold (no intervals: use compute_metrics).

    ``thresholds`` defaults to :func:`candidate_thresholds` of ``probs``. Undefined
    proportions are NaN.
    """
    y, p = _check_inputs(y_true, probs)
    t = candidate_thresholds(p) if thresholds is None else np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if not np.isfinite(t).all():
        raise ValueError("thresholds must be finite numbers")
    pos, neg = np.sort(p[y == 1]), np.sort(p[y == 0])
    m, n = pos.size, neg.size
    # Images at or above t are called positive.
    tp = m - np.searchsorted(pos, t, side="left")
    fp = n - np.searchsorted(neg, t, side="left")
    fn, tn = m - tp, n - fp
    sens, spec = _safe_div(tp, m), _safe_div(tn, n)
    return ThresholdTable(
        thresholds=t, tp=tp, fp=fp, tn=tn, fn=fn, sensitivity=sens, specificity=spec,
        ppv=_safe_div(tp, tp + fp), npv=_safe_div(tn, tn + fn),
        accuracy=_safe_div(tp + tn, m + n), youden_j=sens + spec - 1.0,
    )


ThresholdRule = Literal["youden", "sensitivity", "specificity"]


def _middle_of_widest_run(thresholds: np.ndarray, best: np.ndarray) -> float:
    """The candidate threshold nearest the centre of the widest run of consecutive best ones.

    Every candidate in a run reaches the best J; the one nearest the run's centre is returned
    (the higher one on a tie), so the result is still a candidate threshold. Equally wide runs:
    the highest wins (fewest positive calls).
    """
    idx = np.flatnonzero(best)
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    widest = max(runs, key=lambda r: (thresholds[r[-1]] - thresholds[r[0]], thresholds[r[-1]]))
    centre = (thresholds[widest[0]] + thresholds[widest[-1]]) / 2.0
    distance = np.abs(thresholds[widest] - centre)
    return float(thresholds[widest[np.flatnonzero(distance == distance.min())[-1]]])


def choose_threshold(y_true: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray,
                     rule: ThresholdRule = "youden", target: float | None = None) -> float:
    """Pick a decision threshold from labelled scores.

    Parameters
    ----------
    rule
        ``"youden"``: maximise Youden's J = sensitivity + specificity - 1. When several
        thresholds reach the best J, take the middle of the widest run of them (the largest
        margin between the two classes' scores): on a validation set of a dozen images the
        best J often spans a wide range, and either end of it is the least stable choice. ``"sensitivity"``: the highest threshold
        whose sensitivity reaches ``target``. ``"specificity"``: the lowest threshold whose
        specificity reaches ``target`` (so sensitivity is as high as that allows).
    target
        Required for the sensitivity and specificity rules, in [0, 1].

    Returns
    -------
    float
        One of :func:`candidate_thresholds` (a midpoint between adjacent distinct scores), so
        ``probs >= threshold`` gives back exactly the counts the choice was based on.

    Raises
    ------
    ValueError
        Unknown rule, missing or out-of-range target, or a class the rule needs is missing.
    """
    y, p = _check_inputs(y_true, probs)
    table = metrics_at_thresholds(y, p)
    m, n = int((y == 1).sum()), int((y == 0).sum())
    if rule == "youden":
        if target is not None:
            raise ValueError("the youden rule takes no target")
        if m == 0 or n == 0:
            raise ValueError(f"Youden's J needs both classes; got {m} positives and {n} negatives")
        # J * m * n in integers, so equal J values compare equal despite rounding.
        score = table.tp * n + table.tn * m
        return _middle_of_widest_run(table.thresholds, score == score.max())
    if rule not in ("sensitivity", "specificity"):
        raise ValueError(f"unknown threshold rule {rule!r}; use 'youden', 'sensitivity' or 'specificity'")
    if target is None or not 0.0 <= float(target) <= 1.0:
        raise ValueError(f"the {rule} rule needs a target between 0 and 1, got {target!r}")
    if rule == "sensitivity":
        if m == 0:
            raise ValueError("a target sensitivity needs positive images; there are none")
        # tp >= target * m, with a little slack so a target of 0.9 is met by 9 of 10.
        ok = table.tp >= float(target) * m - 1e-9
        return float(table.thresholds[np.flatnonzero(ok)[-1]])
    if n == 0:
        raise ValueError("a target specificity needs negative images; there are none")
    ok = table.tn >= float(target) * n - 1e-9
    return float(table.thresholds[np.flatnonzero(ok)[0]])


