"""Clinical metrics for a binary classifier, each with a 95% interval that says how far to trust it.

Conventions
-----------
* ``y_true`` holds 1 for the positive class and 0 for the negative class; ``probs`` is the
  probability of the positive class; an image is called positive when ``prob >= threshold``
  (the same rule as :meth:`ctviewer.core.metrics.predictions.Predictions.y_pred`).
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

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ctviewer.core.metrics.cluster import (
    CLUSTER_REPLICATES,
    CLUSTER_SEED,
    MIN_CLUSTERS_PER_CLASS,
    cluster_bootstrap,
    cluster_ids,
)
from ctviewer.core.metrics.curves import Calibration, PrCurve, RocCurve, calibration, pr_curve, roc_curve  # noqa: F401
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.core.metrics.stats import (  # noqa: F401  (re-exported: the public metrics API lives here)
    BOOTSTRAP_REPLICATES,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    NAN,
    SMALL_CLASS_FOR_DELONG,
    WIDE_INTERVAL,
    AucEstimate,
    Confusion,
    Interval,
    _check_inputs,
    _check_threshold,
    _check_thresholds,
    _none_if_nan,
    _ratio,
    _stratified_bootstrap,
    confusion,
    delong_auc,
    wilson_interval,
)
from ctviewer.core.metrics.thresholds import (  # noqa: F401
    ThresholdTable,
    candidate_thresholds,
    choose_threshold,
    metrics_at_thresholds,
)

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
    # What one count is: "image", "series" or "patient" (n, tp... count these).
    unit: str = "image"
    # Image level: intervals of a class-stratified bootstrap of patients (core.metrics.cluster),
    # beside the Wilson/DeLong ones that treat images as independent. Empty when not computed.
    patient_ci: dict[str, Interval] = field(default_factory=dict)
    n_patients: int = 0
    largest_patient: int = 0  # images of the patient with the most

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
        out["unit"] = self.unit
        if self.patient_ci:
            out["n_patients"] = self.n_patients
            out["largest_patient_images"] = self.largest_patient
            out["patient_bootstrap_ci"] = {k: v.to_list() for k, v in self.patient_ci.items()}
            out["patient_bootstrap_method"] = PATIENT_BOOTSTRAP_METHOD
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
# Above this share of the images in one patient, image-level numbers are said to mislead.
LARGEST_PATIENT_SHARE = 0.10
PATIENT_BOOTSTRAP_METHOD = (f"percentile bootstrap of patients, stratified by class ({CLUSTER_REPLICATES} "
                            f"replicates, seed {CLUSTER_SEED})")


def compute_metrics(y_true: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray,
                    threshold: float | np.ndarray = 0.5, classes: tuple[str, str] | None = None,
                    confidence: float = CONFIDENCE, unit: str = "image",
                    clusters: np.ndarray | None = None) -> Metrics:
    """All metrics and intervals for labels ``y_true`` (0/1) and positive-class ``probs``.

    Parameters
    ----------
    y_true, probs
        Equal-length arrays; probs must be finite probabilities (NaN -> ValueError).
    threshold
        An image is called positive when ``prob >= threshold``. An array gives each image its
        own threshold (out-of-fold predictions, each at its fold's threshold); ``Metrics.threshold``
        is then their median.
    classes
        ``(negative, positive)`` names, used only to word the warnings.
    confidence
        Interval coverage.
    unit
        What one row is ("image", "series", "patient"): the warnings count in it.
    clusters
        Per row, the 0-based index of its patient (:func:`ctviewer.core.metrics.cluster.cluster_ids`):
        adds ``patient_ci``, intervals that resample patients instead of rows.

    Raises
    ------
    ValueError
        No images, labels other than 0/1, NaN or out-of-range probabilities.
    """
    y, p = _check_inputs(y_true, probs)
    if y.size == 0:
        raise ValueError("no labelled images to evaluate")
    per_image = _check_thresholds(threshold, y.size)
    t = float(per_image[0]) if np.ndim(threshold) == 0 else float(np.median(per_image))
    c = confusion(y, (p >= per_image).astype(np.int64))
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
        confidence=confidence, classes=classes, unit=unit,
    )
    if clusters is not None:
        g = np.asarray(clusters, dtype=np.int64).reshape(-1)
        if g.shape != y.shape:
            raise ValueError(f"clusters has {g.size} entries for {y.size} rows")
        sizes = np.bincount(np.unique(g, return_inverse=True)[1])
        metrics.n_patients, metrics.largest_patient = int(sizes.size), int(sizes.max())
        metrics.patient_ci = cluster_bootstrap(y, p, (p >= per_image).astype(np.int64), g, confidence)
    metrics.warnings = _warnings(metrics)
    return metrics


def metrics_from_predictions(pred: Predictions, threshold: float | None = None,
                             confidence: float = CONFIDENCE, unit: str = "image") -> Metrics:
    """:func:`compute_metrics` over the labelled rows of ``pred`` (unlabelled rows are left out).

    ``threshold`` defaults to each row's own threshold (``pred.row_thresholds``, set for
    out-of-fold predictions) or else ``pred.threshold``. ``unit`` says what a row is; at image
    level, when rows carry patient ids, the patient-bootstrap intervals (``patient_ci``) are
    computed too. For series or patient rows use :func:`ctviewer.core.metrics.aggregate.aggregate`
    first and pass its ``predictions``.
    """
    labelled = pred.is_labelled
    if not labelled.any():
        raise ValueError(f"none of the {len(pred)} {plural(unit)} has a label: nothing to evaluate")
    if threshold is None and pred.row_thresholds is not None:
        t: float | np.ndarray = pred.row_thresholds[labelled]
    else:
        t = pred.threshold if threshold is None else threshold
    clusters = None
    if unit == "image" and any(pred.patients):
        clusters = cluster_ids(pred.patients, pred.paths)[labelled]
    metrics = compute_metrics(pred.y_true[labelled], pred.probs[labelled], t, pred.classes, confidence, unit=unit,
                              clusters=clusters)
    left_out = int((~labelled).sum())
    if left_out:
        metrics.warnings.append(f"{left_out} unlabelled {unit if left_out == 1 else plural(unit)} "
                                f"{'was' if left_out == 1 else 'were'} left out of the metrics")
    return metrics


def plural(unit: str) -> str:
    """``images``, ``patients``, ``series``: the word for several units."""
    return unit if unit == "series" else f"{unit}s"


def _warnings(mt: Metrics) -> list[str]:
    """Plain sentences about what the numbers cannot tell."""
    neg_name, pos_name = mt.classes if mt.classes else ("", "")
    pos_word = f"positives ({pos_name})" if pos_name else "positives"
    neg_word = f"negatives ({neg_name})" if neg_name else "negatives"
    units = plural(mt.unit)
    out: list[str] = []
    if mt.n_positive == 0:
        out.append(f"no {pos_word} among the {mt.n} {units}: sensitivity, AUC, balanced accuracy "
                   "and F1 cannot be measured; accuracy here only counts negatives")
    if mt.n_negative == 0:
        out.append(f"no {neg_word} among the {mt.n} {units}: specificity, AUC and balanced accuracy "
                   "cannot be measured; accuracy here only counts positives")
    if mt.tp + mt.fp == 0 and mt.n_positive and mt.n_negative:
        out.append(f"no {mt.unit} was called positive at this threshold: PPV is undefined")
    if mt.tn + mt.fn == 0 and mt.n_positive and mt.n_negative:
        out.append(f"no {mt.unit} was called negative at this threshold: NPV is undefined")
    if 0 < min(mt.n_positive, mt.n_negative) < 2:
        out.append(f"the AUC interval needs at least 2 {units} of each class")
    basis = {
        "sensitivity": f"{mt.n_positive} {pos_word}",
        "specificity": f"{mt.n_negative} {neg_word}",
        "ppv": f"{mt.tp + mt.fp} positive call(s)",
        "npv": f"{mt.tn + mt.fn} negative call(s)",
        "accuracy": f"{mt.n} {units}",
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
               else f"every {mt.unit} ranks the same against the other class (tied scores)")
        out.append(f"{why} (AUC {mt.auc:.2f}), so DeLong's AUC interval has zero width; it understates "
                   f"the uncertainty of {mt.n_positive} positives and {mt.n_negative} negatives")
    small = min(mt.n_positive, mt.n_negative)
    if 2 <= small < SMALL_CLASS_FOR_DELONG and mt.auc_se > 0.0:
        which = pos_word if mt.n_positive == small else neg_word
        out.append(f"the AUC interval rests on {small} {which}; DeLong's normal approximation is too "
                   f"narrow below about {SMALL_CLASS_FOR_DELONG} {units} per class")
    # A class called all right (or all wrong) has no spread to resample: the bootstrap then
    # treats its rate as known exactly, however few rows it has.
    certain = [f"{k} {word}, all called {'right' if rate == 1.0 else 'wrong'},"
               for k, word, rate in ((mt.n_positive, pos_word, mt.sensitivity),
                                     (mt.n_negative, neg_word, mt.specificity))
               if k and rate in (0.0, 1.0)]
    if certain and mt.n_positive and mt.n_negative:
        out.append(f"the bootstrap intervals of balanced accuracy and F1 treat the {' and the '.join(certain)} "
                   "as exact; they understate the uncertainty (the Wilson intervals of sensitivity and "
                   "specificity do not)")
    out += _unit_warnings(mt, units)
    return out


def _unit_warnings(mt: Metrics, units: str) -> list[str]:
    """Which unit the numbers count, and when counting images misleads."""
    if mt.unit != "image":
        return [f"these numbers count {units}: n = {mt.n} {units}; Wilson and DeLong intervals over {units}"]
    if not mt.patient_ci or mt.n_patients >= mt.n:
        return []
    if all(ci.is_nan for ci in mt.patient_ci.values()):
        return [f"these numbers count images ({mt.n} images of {mt.n_patients} patients); Wilson and DeLong treat "
                f"images as independent, so their intervals are too narrow, and with fewer than "
                f"{MIN_CLUSTERS_PER_CLASS} patients in a class no patient bootstrap is given: the data are too few "
                "to say how far to trust these numbers"]
    out = [f"these numbers count images ({mt.n} images of {mt.n_patients} patients); Wilson and DeLong treat "
           "images as independent, but slices of one patient are correlated, so their intervals are too narrow: "
           "quote the patient-bootstrap intervals (patient_bootstrap_ci), or the patient-level metrics"]
    if mt.largest_patient > LARGEST_PATIENT_SHARE * mt.n:
        out.append(f"one patient holds {mt.largest_patient} of the {mt.n} images "
                   f"({mt.largest_patient / mt.n:.0%}): image-level numbers lean on that patient")
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


