"""`evaluate`: metrics with 95% intervals and their warnings from labels and probabilities, per image
and per patient; `Evaluation` prints them as ``ctviewer evaluate`` does and shows them as tables.

The numbers are `ctviewer.core.metrics.evaluation.compute_metrics`, the same function behind
``ctviewer evaluate PREDICTIONS.csv``, so the API and the CLI agree on the same data.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ctviewer.core.metrics.evaluation import Metrics, metric_rows, metrics_from_predictions
from ctviewer.core.metrics.predictions import Predictions

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class ConfusionTable:
    """Counts of true class (rows) by called class (columns), positive first."""

    tp: int
    fn: int
    fp: int
    tn: int
    classes: tuple[str, str]  # (negative, positive)
    unit: str = "images"

    @classmethod
    def of(cls, metrics: Metrics, unit: str = "images") -> ConfusionTable:
        return cls(metrics.tp, metrics.fn, metrics.fp, metrics.tn, metrics.classes or ("negative", "positive"), unit)

    def as_array(self) -> np.ndarray:
        """``[[TP, FN], [FP, TN]]``: rows true positive/negative, columns called positive/negative."""
        return np.array([[self.tp, self.fn], [self.fp, self.tn]], dtype=np.int64)

    def to_json_dict(self) -> dict[str, Any]:
        neg, pos = self.classes
        return {"unit": self.unit, "rows": "true class", "columns": "called class", "labels": [pos, neg],
                "matrix": self.as_array().tolist(), "tp": self.tp, "fn": self.fn, "fp": self.fp, "tn": self.tn}

    def __str__(self) -> str:
        neg, pos = self.classes
        head = [f"true \\ called ({self.unit})", f"{pos}", f"{neg}"]
        rows = [[f"{pos}", str(self.tp), str(self.fn)], [f"{neg}", str(self.fp), str(self.tn)]]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
        return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                         for r in [head, *rows])

    def _repr_html_(self) -> str:
        neg, pos = (html.escape(c) for c in self.classes)
        return (f"<table><caption>confusion ({html.escape(self.unit)})</caption>"
                f"<tr><th>true \\ called</th><th>{pos}</th><th>{neg}</th></tr>"
                f"<tr><th>{pos}</th><td>{self.tp}</td><td>{self.fn}</td></tr>"
                f"<tr><th>{neg}</th><td>{self.fp}</td><td>{self.tn}</td></tr></table>")


def _metrics_text(m: Metrics, unit: str) -> list[str]:
    neg, pos = m.classes or ("negative", "positive")
    lines = [f"{m.n} {unit}, {m.n_positive} {pos} (positive), {m.n_negative} {neg} (negative); "
             f"threshold {m.threshold:.4g}",
             f"confusion: TP {m.tp}  FN {m.fn}  FP {m.fp}  TN {m.tn}", "",
             f"{'metric':<18} {'value':>6}  {f'{m.confidence:.0%} CI':<12} method"]
    for row in metric_rows(m):
        value = "n/a" if math.isnan(row.value) else f"{row.value:.3f}"
        ci = "" if row.ci is None else ("n/a" if row.ci.is_nan else f"{row.ci.low:.3f}-{row.ci.high:.3f}")
        lines.append(f"{row.label:<18} {value:>6}  {ci:<12} {row.method}")
    if m.warnings:
        lines += ["", "warnings:"] + [f"  - {text}" for text in m.warnings]
    return lines


def _metrics_html(m: Metrics, title: str) -> str:
    rows = "".join(
        f"<tr><td style='text-align:left'>{html.escape(r.label)}</td>"
        f"<td>{'n/a' if math.isnan(r.value) else f'{r.value:.3f}'}</td>"
        f"<td>{'' if r.ci is None else html.escape(str(r.ci))}</td>"
        f"<td style='text-align:left'>{html.escape(r.method)}</td></tr>"
        for r in metric_rows(m))
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in m.warnings)
    return (f"<table><caption style='text-align:left'>{html.escape(title)}</caption>"
            f"<tr><th>metric</th><th>value</th><th>{m.confidence:.0%} CI</th><th>method</th></tr>{rows}</table>"
            + (f"<ul>{warnings}</ul>" if warnings else ""))


@dataclass(frozen=True)
class Evaluation:
    """Metrics per image and, when patients were given, per patient.

    Attributes
    ----------
    per_image
        `Metrics` over the images (each with its interval and ``warnings``).
    per_patient
        `Metrics` over patients (mean probability of each patient's images), or None.
    notes
        How the patient level was built and what it left out.
    """

    per_image: Metrics
    per_patient: Metrics | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def confusion(self) -> ConfusionTable:
        """The per-image confusion matrix as a table."""
        return ConfusionTable.of(self.per_image)

    @property
    def patient_confusion(self) -> ConfusionTable | None:
        return None if self.per_patient is None else ConfusionTable.of(self.per_patient, "patients")

    def to_json_dict(self) -> dict[str, Any]:
        """``per_image`` (the ``ctviewer evaluate --json`` form), ``per_patient`` (or None), confusion tables."""
        return {"per_image": self.per_image.to_json_dict(),
                "per_patient": None if self.per_patient is None else self.per_patient.to_json_dict(),
                "confusion": self.confusion.to_json_dict(),
                "patient_confusion": None if self.per_patient is None else self.patient_confusion.to_json_dict(),
                "notes": list(self.notes)}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_json_dict(), indent=indent, ensure_ascii=False, allow_nan=False)

    def __str__(self) -> str:
        lines = ["per image: " + _metrics_text(self.per_image, "labelled images")[0],
                 *_metrics_text(self.per_image, "labelled images")[1:]]
        if self.per_patient is not None:
            text = _metrics_text(self.per_patient, "patients")
            lines += ["", "per patient: " + text[0], *text[1:]]
        if self.notes:
            lines += [""] + [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        m = self.per_image
        return f"Evaluation(n={m.n}, auc={m.auc:.3f}, sensitivity={m.sensitivity:.3f}, specificity={m.specificity:.3f})"

    def _repr_html_(self) -> str:
        out = _metrics_html(self.per_image, f"per image: {self.per_image.n} images") + self.confusion._repr_html_()
        if self.per_patient is not None:
            out += _metrics_html(self.per_patient, f"per patient: {self.per_patient.n} patients")
            out += self.patient_confusion._repr_html_()
        if self.notes:
            out += "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in self.notes) + "</ul>"
        return out


# --------------------------------------------------------------------------- inputs


def _binary_labels(y_true: Any, positive: Any, classes: Sequence[str] | None) -> tuple[np.ndarray, tuple[str, str]]:
    """(0/1 labels with 1 = ``positive``, (negative, positive) names)."""
    arr = np.asarray(y_true)
    if arr.ndim == 2 and arr.shape[1] == 2:
        arr = arr.argmax(axis=1)
    elif arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"y_true has shape {np.shape(y_true)}: expected (N,) labels or (N, 2) one-hot rows")
    values = sorted(set(arr.tolist()), key=str)
    if len(values) > 2:
        raise ValueError(f"y_true holds {len(values)} classes ({', '.join(map(str, values[:5]))}): expected two")
    if positive is None:
        positive = 1 if arr.dtype.kind in "biuf" else (values[-1] if values else None)
    if arr.dtype.kind in "biuf":
        if not set(values) <= {0, 1}:
            raise ValueError(f"y_true holds {values[:5]}: expected 0/1 labels")
        if positive not in (0, 1):
            raise ValueError(f"positive must be 0 or 1 for 0/1 labels, got {positive!r}")
        y = (arr == positive).astype(np.int64)
        names = tuple(classes) if classes is not None else ("class 0", "class 1")
        neg, pos = (names[1], names[0]) if positive == 0 else (names[0], names[1])
        return y, (str(neg), str(pos))
    labels = [str(v) for v in arr.tolist()]
    if str(positive) not in labels:
        raise ValueError(f"positive class {positive!r} is not among the labels ({', '.join(map(str, values))})")
    others = sorted({v for v in labels if v != str(positive)})
    neg = others[0] if others else f"not {positive}"
    return np.array([int(v == str(positive)) for v in labels], dtype=np.int64), (neg, str(positive))


def _positive_probs(prob: Any, n: int, positive: Any) -> np.ndarray:
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 2:
        p = p[:, 0] if positive == 0 else p[:, 1]  # softmax rows: the column of the positive class
    elif p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if p.ndim != 1 or len(p) != n:
        raise ValueError(f"prob has shape {np.shape(prob)} for {n} labels: expected ({n},) or ({n}, 2)")
    return p


def _patient_level(pred: Predictions) -> tuple[Metrics | None, list[str]]:
    """Patient level through the core's aggregation: each patient's mean probability (the default rule).

    A patient whose images carry both labels has no single true class and is left out (said in the notes).
    Patients are called at the images' threshold (one per row: their median), as ``ctviewer evaluate
    --level patient`` does for a report without folds.
    """
    from ctviewer.core.metrics.aggregate import aggregate
    from ctviewer.core.metrics.unit_report import level_metrics

    units = aggregate(pred, "patient", "mean", threshold=float(pred.threshold))
    notes = [f"per patient: the mean probability of each patient's images ({len(units)} patients)"]
    if units.mixed:
        notes.append(f"{len(units.mixed)} patient(s) have images of both classes and are left out of the patient "
                     f"level (e.g. {units.mixed[0]})")
    try:
        return level_metrics(units), notes
    except ValueError:  # no labelled patient left
        return None, notes


def evaluate(y_true: Any, prob: Any, *, threshold: float | Sequence[float] | None = None, positive: Any = None,
             patients: Sequence[Any] | None = None, classes: Sequence[str] | None = None) -> Evaluation:
    """Sensitivity, specificity, PPV, NPV, accuracy, balanced accuracy, F1 and AUC with 95% intervals.

    The rows become `Predictions` and go through ``metrics_from_predictions``, the path of
    ``ctviewer evaluate PREDICTIONS.csv``: the same rows give the same numbers.

    Parameters
    ----------
    y_true
        True labels: 0/1, one-hot rows, or class names.
    prob
        Probability of the positive class (N,), or softmax rows (N, 2).
    threshold
        Positive when ``prob >= threshold``; one number or one per image (default 0.5, as
        ``ctviewer evaluate`` for a report without a threshold column).
    positive
        The positive value of ``y_true``: 1 by default for 0/1 labels; for names, the last in
        sorted order unless given.
    patients
        One patient id per image: adds the per-patient metrics (a patient's mean probability).
    classes
        Names for 0 and 1 in the text (0/1 labels only).

    Returns
    -------
    Evaluation
        ``per_image`` (and ``per_patient``) `Metrics`, ``confusion`` tables; prints as text.

    Raises
    ------
    ValueError
        Labels that are not binary, lengths that differ, NaN or out-of-range probabilities.
    """
    pred = predictions_of(y_true, prob, positive=positive, patients=patients, threshold=threshold, classes=classes)
    per_image = metrics_from_predictions(pred)
    if patients is None:
        return Evaluation(per_image)
    per_patient, notes = _patient_level(pred)
    return Evaluation(per_image, per_patient, tuple(notes))


def predictions_of(y_true: Any, prob: Any, *, positive: Any = None, patients: Sequence[Any] | None = None,
                   threshold: float | Sequence[float] | None = None,
                   classes: Sequence[str] | None = None) -> Predictions:
    """The rows as `Predictions` (paths ``x[i]``), e.g. to write with ``write_predictions_csv``.

    One threshold per row becomes ``row_thresholds`` (their median the common threshold).
    """
    y, (neg, pos) = _binary_labels(y_true, positive, classes)
    p = _positive_probs(prob, len(y), 1 if positive is None else positive)
    ids = [str(v) for v in patients] if patients is not None else []
    if patients is not None and len(ids) != len(y):
        raise ValueError(f"patients has {len(ids)} entries for {len(y)} labels")
    if threshold is None or np.ndim(threshold) == 0:
        common, per_row = float(DEFAULT_THRESHOLD if threshold is None else threshold), None
    else:
        per_row = np.asarray(threshold, dtype=np.float64).reshape(-1)
        if len(per_row) != len(y):
            raise ValueError(f"threshold has {len(per_row)} entries for {len(y)} labels")
        common = float(np.median(per_row))
    return Predictions(paths=[f"x[{i}]" for i in range(len(y))], probs=p, threshold=common, classes=(neg, pos),
                       labels=[pos if v else neg for v in y], patients=ids, row_thresholds=per_row)
