"""Clinical metrics for a binary classifier, each with a 95% interval that says how far to trust it.

Conventions
-----------
* ``y_true`` holds 1 for the positive class and 0 for the negative class; ``probs`` is the
  probability of the positive class; an image is called positive when ``prob >= threshold``
  (the same rule as :meth:`ctviewer.core.predictions.Predictions.y_pred`).
* A proportion whose denominator is zero (sensitivity with no positives, PPV when nothing
  was called positive, ...) is NaN, never a silent 0; ``Metrics.warnings`` says why.

Intervals
---------
* Proportions (sensitivity, specificity, PPV, NPV, accuracy): Wilson score interval.
* AUC: DeLong's asymptotic variance computed with the fast midrank algorithm of Sun & Xu
  (2014); the interval is ``AUC +/- z * SE`` clipped to [0, 1]. NaN when a class is missing
  or has a single member (the variance of its structural components is then undefined).
* Balanced accuracy and F1: percentile interval of a stratified bootstrap (positives and
  negatives resampled separately, so every replicate keeps the class sizes) with
  ``BOOTSTRAP_REPLICATES`` replicates and the fixed seed ``BOOTSTRAP_SEED``, so the same data
  always give the same interval.

scikit-learn is imported lazily (ROC and PR curves only) so this module imports fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Literal, Sequence

import numpy as np

from ctviewer.core.predictions import Predictions

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


# --------------------------------------------------------------------------- metrics


@dataclass
class Metrics:
    """Clinical metrics at one threshold, each with its 95% interval.

    Proportions use Wilson intervals, AUC a DeLong interval, balanced accuracy and F1 a
    stratified bootstrap (see the module docstring). ``warnings`` lists, in plain words,
    intervals too wide to rely on and metrics a missing class makes undefined.
    """

    n: int
    n_positive: int
    n_negative: int
    tp: int
    tn: int
    fp: int
    fn: int
    sensitivity: float
    specificity: float
    ppv: float
    npv: float
    accuracy: float
    balanced_accuracy: float
    f1: float
    auc: float
    auc_se: float
    brier: float
    threshold: float
    sensitivity_ci: Interval
    specificity_ci: Interval
    ppv_ci: Interval
    npv_ci: Interval
    accuracy_ci: Interval
    balanced_accuracy_ci: Interval
    f1_ci: Interval
    auc_ci: Interval
    confidence: float = CONFIDENCE
    classes: tuple[str, str] | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, object]:
        """The metrics JSON of ARCHITECTURE.md: numbers, ``<name>_ci: [low, high]``, NaN as null."""
        out: dict[str, object] = {"n": self.n, "n_positive": self.n_positive, "n_negative": self.n_negative,
                                  "tp": self.tp, "tn": self.tn, "fp": self.fp, "fn": self.fn}
        for name in INTERVAL_METRICS:
            out[name] = _none_if_nan(getattr(self, name))
            out[f"{name}_ci"] = getattr(self, f"{name}_ci").to_list()
        out["auc_se"] = _none_if_nan(self.auc_se)
        out["brier"] = _none_if_nan(self.brier)
        out["threshold"] = self.threshold
        out["confidence"] = self.confidence
        out["ci_methods"] = dict(CI_METHODS)
        out["classes"] = list(self.classes) if self.classes else None
        out["warnings"] = list(self.warnings)
        return out


INTERVAL_METRICS: tuple[str, ...] = (
    "sensitivity", "specificity", "ppv", "npv", "accuracy", "balanced_accuracy", "f1", "auc",
)
CI_METHODS: dict[str, str] = {
    "sensitivity": "wilson", "specificity": "wilson", "ppv": "wilson", "npv": "wilson",
    "accuracy": "wilson",
    "balanced_accuracy": f"stratified bootstrap ({BOOTSTRAP_REPLICATES} replicates, seed {BOOTSTRAP_SEED})",
    "f1": f"stratified bootstrap ({BOOTSTRAP_REPLICATES} replicates, seed {BOOTSTRAP_SEED})",
    "auc": "delong (Sun & Xu 2014)",
}


def compute_metrics(y_true: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray,
                    threshold: float = 0.5, classes: tuple[str, str] | None = None,
                    confidence: float = CONFIDENCE) -> Metrics:
    """All metrics and intervals for labels ``y_true`` (0/1) and positive-class ``probs``.

    Parameters
    ----------
    y_true, probs
        Equal-length arrays; probs must be finite probabilities (NaN -> ValueError).
    threshold
        An image is called positive when ``prob >= threshold``.
    classes
        ``(negative, positive)`` names, used only to word the warnings.
    confidence
        Interval coverage.

    Raises
    ------
    ValueError
        No images, labels other than 0/1, NaN or out-of-range probabilities.
    """
    y, p = _check_inputs(y_true, probs)
    t = _check_threshold(threshold)
    if y.size == 0:
        raise ValueError("no labelled images to evaluate")
    c = confusion(y, (p >= t).astype(np.int64))
    m, n = c.tp + c.fn, c.tn + c.fp
    sens, spec = _ratio(c.tp, m), _ratio(c.tn, n)
    auc = delong_auc(y, p, confidence)
    balanced_ci, f1_ci = _stratified_bootstrap(c, confidence)
    metrics = Metrics(
        n=c.n, n_positive=m, n_negative=n, tp=c.tp, tn=c.tn, fp=c.fp, fn=c.fn,
        sensitivity=sens, specificity=spec,
        ppv=_ratio(c.tp, c.tp + c.fp), npv=_ratio(c.tn, c.tn + c.fn),
        accuracy=(c.tp + c.tn) / c.n,
        balanced_accuracy=(sens + spec) / 2.0 if m and n else NAN,
        f1=_ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn),
        auc=auc.auc, auc_se=auc.se, brier=float(np.mean((p - y) ** 2)), threshold=t,
        sensitivity_ci=wilson_interval(c.tp, m, confidence),
        specificity_ci=wilson_interval(c.tn, n, confidence),
        ppv_ci=wilson_interval(c.tp, c.tp + c.fp, confidence),
        npv_ci=wilson_interval(c.tn, c.tn + c.fn, confidence),
        accuracy_ci=wilson_interval(c.tp + c.tn, c.n, confidence),
        balanced_accuracy_ci=balanced_ci, f1_ci=f1_ci, auc_ci=auc.ci,
        confidence=confidence, classes=classes,
    )
    metrics.warnings = _warnings(metrics)
    return metrics


def metrics_from_predictions(pred: Predictions, threshold: float | None = None,
                             confidence: float = CONFIDENCE) -> Metrics:
    """:func:`compute_metrics` over the labelled rows of ``pred`` (unlabelled rows are left out).

    ``threshold`` defaults to ``pred.threshold``.
    """
    labelled = pred.is_labelled
    if not labelled.any():
        raise ValueError(f"none of the {len(pred)} images has a label: nothing to evaluate")
    t = pred.threshold if threshold is None else threshold
    metrics = compute_metrics(pred.y_true[labelled], pred.probs[labelled], t, pred.classes, confidence)
    left_out = int((~labelled).sum())
    if left_out:
        metrics.warnings.append(f"{left_out} unlabelled image(s) were left out of the metrics")
    return metrics


def _warnings(mt: Metrics) -> list[str]:
    """Plain sentences about what the numbers cannot tell."""
    neg_name, pos_name = mt.classes if mt.classes else ("", "")
    pos_word = f"positives ({pos_name})" if pos_name else "positives"
    neg_word = f"negatives ({neg_name})" if neg_name else "negatives"
    out: list[str] = []
    if mt.n_positive == 0:
        out.append(f"no {pos_word} among the {mt.n} images: sensitivity, AUC, balanced accuracy "
                   "and F1 cannot be measured; accuracy here only counts negatives")
    if mt.n_negative == 0:
        out.append(f"no {neg_word} among the {mt.n} images: specificity, AUC and balanced accuracy "
                   "cannot be measured; accuracy here only counts positives")
    if mt.tp + mt.fp == 0 and mt.n_positive and mt.n_negative:
        out.append("no image was called positive at this threshold: PPV is undefined")
    if mt.tn + mt.fn == 0 and mt.n_positive and mt.n_negative:
        out.append("no image was called negative at this threshold: NPV is undefined")
    if 0 < min(mt.n_positive, mt.n_negative) < 2:
        out.append("the AUC interval needs at least 2 images of each class")
    basis = {
        "sensitivity": f"{mt.n_positive} {pos_word}",
        "specificity": f"{mt.n_negative} {neg_word}",
        "ppv": f"{mt.tp + mt.fp} positive call(s)",
        "npv": f"{mt.tn + mt.fn} negative call(s)",
        "accuracy": f"{mt.n} images",
        "balanced_accuracy": f"{mt.n_positive} positives and {mt.n_negative} negatives",
        "f1": f"{mt.n_positive} positives and {mt.n_negative} negatives",
        "auc": f"{mt.n_positive} positives and {mt.n_negative} negatives",
    }
    pct = f"{mt.confidence:.0%}"
    for name in INTERVAL_METRICS:
        ci: Interval = getattr(mt, f"{name}_ci")
        if not ci.is_nan and ci.width > WIDE_INTERVAL:
            out.append(f"{LABELS[name]} rests on {basis[name]}: {pct} CI {ci} is too wide to rely on")
    if mt.auc_se == 0.0:
        why = ("the scores separate the classes perfectly" if mt.auc in (0.0, 1.0)
               else "every image ranks the same against the other class (tied scores)")
        out.append(f"{why} (AUC {mt.auc:.2f}), so DeLong's AUC interval has zero width; it understates "
                   f"the uncertainty of {mt.n_positive} positives and {mt.n_negative} negatives")
    small = min(mt.n_positive, mt.n_negative)
    if 2 <= small < SMALL_CLASS_FOR_DELONG and mt.auc_se > 0.0:
        which = pos_word if mt.n_positive == small else neg_word
        out.append(f"the AUC interval rests on {small} {which}; DeLong's normal approximation is too "
                   f"narrow below about {SMALL_CLASS_FOR_DELONG} images per class")
    # A class called all right (or all wrong) has no spread to resample: the bootstrap then
    # treats its rate as known exactly, however few images it has.
    certain = [f"{k} {word}, all called {'right' if rate == 1.0 else 'wrong'},"
               for k, word, rate in ((mt.n_positive, pos_word, mt.sensitivity),
                                     (mt.n_negative, neg_word, mt.specificity))
               if k and rate in (0.0, 1.0)]
    if certain and mt.n_positive and mt.n_negative:
        out.append(f"the bootstrap intervals of balanced accuracy and F1 treat the {' and the '.join(certain)} "
                   "as exact; they understate the uncertainty (the Wilson intervals of sensitivity and "
                   "specificity do not)")
    return out


LABELS: dict[str, str] = {
    "sensitivity": "sensitivity", "specificity": "specificity", "ppv": "PPV", "npv": "NPV",
    "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "f1": "F1", "auc": "AUC",
    "brier": "Brier score",
}


@dataclass(frozen=True)
class MetricRow:
    """One line of a metrics table: key, display label, value, interval (None if it has none), method."""

    key: str
    label: str
    value: float
    ci: Interval | None
    method: str


def metric_rows(metrics: Metrics) -> list[MetricRow]:
    """The metrics as table rows, in reading order (for the CLI and the GUI)."""
    rows = [MetricRow(k, LABELS[k], float(getattr(metrics, k)), getattr(metrics, f"{k}_ci"), CI_METHODS[k])
            for k in INTERVAL_METRICS]
    rows.append(MetricRow("brier", LABELS["brier"], metrics.brier, None, "lower is better"))
    return rows


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


def choose_threshold(y_true: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray,
                     rule: ThresholdRule = "youden", target: float | None = None) -> float:
    """Pick a decision threshold from labelled scores.

    Parameters
    ----------
    rule
        ``"youden"``: maximise Youden's J = sensitivity + specificity - 1; ties go to the
        highest threshold (fewest positive calls). ``"sensitivity"``: the highest threshold
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
        return float(table.thresholds[np.flatnonzero(score == score.max())[-1]])
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
