"""Statistical building blocks for the metrics: intervals (Wilson, DeLong, stratified bootstrap),
input checks and the confusion matrix. See `ctviewer.core.metrics.evaluation` for the conventions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_REPLICATES = 2000
BOOTSTRAP_SEED = 20240
# A 95% interval wider than this is reported in Metrics.warnings as too wide to rely on.
WIDE_INTERVAL = 0.30
# Below this many images in the smaller class DeLong's normal approximation is too narrow.
SMALL_CLASS_FOR_DELONG = 10

NAN = float("nan")


# --------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Interval:
    """A confidence interval; both ends are NaN when it cannot be computed."""

    low: float
    high: float

    @property
    def width(self) -> float:
        return self.high - self.low

    @property
    def is_nan(self) -> bool:
        return math.isnan(self.low) or math.isnan(self.high)

    def to_list(self) -> list[float | None]:
        """``[low, high]`` with NaN written as None (JSON null)."""
        return [_none_if_nan(self.low), _none_if_nan(self.high)]

    def __str__(self) -> str:
        return "n/a" if self.is_nan else f"{self.low:.2f}-{self.high:.2f}"


NAN_INTERVAL = Interval(NAN, NAN)


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Wilson score interval for ``k`` successes out of ``n`` trials.

    Unlike the textbook ``p +/- z*sqrt(p(1-p)/n)`` it stays inside [0, 1] and does not
    collapse to zero width at 0/n or n/n, which matters for the small classes of CT sets.

    Parameters
    ----------
    k, n
        Successes and trials, ``0 <= k <= n``.
    confidence
        Two-sided coverage, 0.95 by default.

    Returns
    -------
    Interval
        ``Interval(nan, nan)`` when ``n == 0``: a proportion of nothing has no interval.
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return NAN_INTERVAL
    z = _z(confidence)
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # Exact ends at 0/n and n/n: rounding must not put 1.0 outside the interval.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return Interval(low, high)


# --------------------------------------------------------------------------- input checks


def _check_labels(values: Sequence[int] | np.ndarray, name: str = "y_true") -> np.ndarray:
    y = np.asarray(values).reshape(-1)
    if y.size and not np.isin(y, (0, 1)).all():
        bad = np.unique(y[~np.isin(y, (0, 1))])[:5]
        raise ValueError(f"{name} must hold only 0 (negative) and 1 (positive), found {bad.tolist()}")
    return y.astype(np.int64)


def _check_inputs(y_true: Sequence[int] | np.ndarray,
                  probs: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = _check_labels(y_true)
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if y.shape[0] != p.shape[0]:
        raise ValueError(f"y_true has {y.shape[0]} entries but probs has {p.shape[0]}")
    nonfinite = ~np.isfinite(p)
    if nonfinite.any():
        first = int(np.flatnonzero(nonfinite)[0])
        raise ValueError(
            f"probs has {int(nonfinite.sum())} NaN or infinite value(s) (first at index {first}); "
            "a model that outputs NaN must be fixed before it is evaluated"
        )
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise ValueError(f"probs must be probabilities in [0, 1], found {p.min():g}..{p.max():g}")
    return y, p


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not math.isfinite(t):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    return t


def _check_thresholds(threshold: float | np.ndarray, n: int) -> np.ndarray:
    """One finite threshold per image: a scalar broadcast, or an array of length ``n``."""
    t = np.asarray(threshold, dtype=np.float64)
    if t.ndim == 0:
        t = np.full(n, _check_threshold(float(t)))
    elif t.shape != (n,):
        raise ValueError(f"got {t.size} thresholds for {n} images")
    if not np.isfinite(t).all():
        raise ValueError("thresholds must be finite numbers")
    return t


def _ratio(num: float, den: float) -> float:
    return num / den if den else NAN


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


# --------------------------------------------------------------------------- confusion


@dataclass(frozen=True)
class Confusion:
    """Counts of a 2x2 confusion matrix (positive = 1)."""

    tp: int
    tn: int
    fp: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.tn + self.fp + self.fn


def confusion(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> Confusion:
    """Count true/false positives/negatives of 0/1 predictions against 0/1 labels."""
    y, p = _check_labels(y_true), _check_labels(y_pred, "y_pred")
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} entries but y_pred has {p.size}")
    return Confusion(
        tp=int(np.sum((y == 1) & (p == 1))),
        tn=int(np.sum((y == 0) & (p == 0))),
        fp=int(np.sum((y == 0) & (p == 1))),
        fn=int(np.sum((y == 1) & (p == 0))),
    )


# --------------------------------------------------------------------------- AUC (DeLong)


@dataclass(frozen=True)
class AucEstimate:
    """AUC with DeLong's standard error and interval."""

    auc: float
    se: float
    ci: Interval


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks where tied values share the mean of the ranks they occupy."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]
    ends = np.r_[starts[1:], xs.size]
    # Positions start+1 .. end (1-based) have mean (start + 1 + end) / 2.
    sorted_ranks = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    ranks = np.empty(xs.size, dtype=np.float64)
    ranks[order] = sorted_ranks
    return ranks


def delong_auc(y_true: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray,
               confidence: float = CONFIDENCE) -> AucEstimate:
    """AUC and its DeLong variance by the fast algorithm of Sun & Xu (2014).

    With ``m`` positive scores X and ``n`` negative scores Y, DeLong's structural components
    are ``V10_i = mean_j psi(X_i, Y_j)`` and ``V01_j = mean_i psi(X_i, Y_j)`` with
    ``psi = 1`` if X > Y, 1/2 on a tie, 0 otherwise; AUC is the mean of either, and
    ``Var(AUC) = var(V10) / m + var(V01) / n`` (sample variances). Sun & Xu get the
    components from midranks in O(N log N) instead of the O(m n) pairs: with ``Tz`` the
    midranks in the pooled sample and ``Tx``/``Ty`` those within each class,
    ``V10_i = (Tz_i - Tx_i) / n`` and ``V01_j = 1 - (Tz_j - Ty_j) / m``.

    Returns NaN for everything when a class is missing, and a NaN SE and interval when a
    class has one member (its component variance is undefined). Perfect separation gives
    SE 0 and a zero-width interval; :func:`compute_metrics` warns that it understates the
    uncertainty.
    """
    y, p = _check_inputs(y_true, probs)
    pos, neg = p[y == 1], p[y == 0]
    m, n = pos.size, neg.size
    if m == 0 or n == 0:
        return AucEstimate(NAN, NAN, NAN_INTERVAL)
    tz = _midranks(np.concatenate([pos, neg]))
    v10 = (tz[:m] - _midranks(pos)) / n
    v01 = 1.0 - (tz[m:] - _midranks(neg)) / m
    auc = float(v10.mean())
    if m < 2 or n < 2:
        return AucEstimate(auc, NAN, NAN_INTERVAL)
    se = math.sqrt(float(np.var(v10, ddof=1)) / m + float(np.var(v01, ddof=1)) / n)
    half = _z(confidence) * se
    return AucEstimate(auc, se, Interval(max(0.0, auc - half), min(1.0, auc + half)))


# --------------------------------------------------------------------------- bootstrap


def _stratified_bootstrap(c: Confusion, confidence: float, replicates: int = BOOTSTRAP_REPLICATES,
                          seed: int = BOOTSTRAP_SEED) -> tuple[Interval, Interval]:
    """Percentile intervals of balanced accuracy and F1 under a stratified bootstrap.

    Resampling the m positives with replacement, the number still called positive is
    Binomial(m, tp/m); likewise the negatives' true negatives are Binomial(n, tn/n). Drawing
    those two counts is therefore exactly the stratified bootstrap of any metric that only
    depends on the confusion matrix, in O(replicates) instead of O(replicates * N).
    """
    m, n = c.tp + c.fn, c.tn + c.fp
    rng = np.random.default_rng(seed)
    tp = rng.binomial(m, c.tp / m if m else 0.0, replicates).astype(np.float64)
    tn = rng.binomial(n, c.tn / n if n else 0.0, replicates).astype(np.float64)
    fn, fp = m - tp, n - tn
    alpha = (1.0 - confidence) / 2.0 * 100.0

    def interval(values: np.ndarray) -> Interval:
        finite = values[np.isfinite(values)]
        # Replicates where the metric is undefined say nothing about its spread.
        if finite.size < replicates // 2:
            return NAN_INTERVAL
        low, high = np.percentile(finite, [alpha, 100.0 - alpha])
        return Interval(float(low), float(high))

    with np.errstate(divide="ignore", invalid="ignore"):
        balanced = (tp / m + tn / n) / 2.0 if m and n else np.full(replicates, np.nan)
        f1 = 2 * tp / (2 * tp + fp + fn)
    return interval(balanced), interval(f1)


