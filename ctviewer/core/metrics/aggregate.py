"""From per-image probabilities to per-series and per-patient units: the answer a clinician asks for.

A CT study is a stack of slices; "does this patient's scan show contrast?" is asked per patient
(or per series). :func:`aggregate` groups the rows of a :class:`Predictions` into units and gives
each unit one probability, one call and, for labelled data, one truth. The result holds an
ordinary ``Predictions`` with one row per unit, so every metric, interval, CSV and table that
works on images works on units unchanged.

Rules (``rule``)
----------------
* ``mean`` (default): mean of the unit's image probabilities. Every slice counts once, so one odd
  slice moves the answer by 1/n, and the answer does not depend on how many slices a unit has; it
  stays on the image probability scale, so the image threshold is a sensible fallback.
* ``max``: the highest image probability. Sensitive (one convincing slice makes the call) but
  every extra slice can only raise it, so long series drift positive and a threshold chosen on
  short ones does not hold for them. On the cross-validations measured (docs/LEVELS.md) ``max``
  ranked patients a little better than ``mean`` (SIIM 0.935 vs 0.929, demo 0.81 vs 0.70, both well
  inside the intervals of 45 and 16 patients); ``mean`` stays the default for that drift.
* ``top<k>`` (``top3`` ...): the mean of the k highest probabilities (all of them when the unit
  has fewer than k images): between the two.

Keys
----
* ``patient``: the patient id; a row with an empty patient is its own unit.
* ``series``: the series UID; a row without one belongs to its patient's single series.
* ``image``: every row its own unit (the identity, so callers need no special case).

Thresholds
----------
A unit is called positive when its aggregate ``>= threshold``. The threshold is chosen the same
way as the image threshold (Youden's J, or a target sensitivity/specificity) on out-of-fold
aggregates, never on the units being reported: with ``folds`` set (cross-validation), the
threshold for the units of fold k is chosen on the units of the other folds (cross-fitting);
otherwise it must be given (the model's level threshold, chosen on its validation hold-out),
and without one the image threshold is used and ``Units.notes`` says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ctviewer.core.metrics.predictions import Predictions
from ctviewer.core.metrics.thresholds import choose_threshold

Level = Literal["image", "series", "patient"]
LEVELS: tuple[str, ...] = ("image", "series", "patient")
DEFAULT_RULE = "mean"
_TOP_K = re.compile(r"^top(\d+)$")


def parse_rule(rule: str) -> tuple[str, int]:
    """``("mean", 0)``, ``("max", 0)`` or ``("top", k)`` for a rule name; ValueError otherwise."""
    name = str(rule).strip().lower()
    if name in ("mean", "max"):
        return name, 0
    match = _TOP_K.match(name)
    if match and int(match.group(1)) >= 1:
        return "top", int(match.group(1))
    raise ValueError(f"unknown aggregation rule {rule!r}; use mean, max or top<k> (e.g. top3)")


def aggregate_probs(probs: np.ndarray, rule: str = DEFAULT_RULE) -> float:
    """One unit's probability from its image probabilities by ``rule`` (see the module docstring)."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if p.size == 0:
        raise ValueError("a unit needs at least one image")
    name, k = parse_rule(rule)
    if name == "mean":
        return float(p.mean())
    if name == "max":
        return float(p.max())
    return float(np.sort(p)[::-1][:k].mean())


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; use image, series or patient")
    return level


def unit_keys(pred: Predictions, level: str) -> list[str]:
    """The unit each row of ``pred`` belongs to at ``level`` (see "Keys" in the module docstring)."""
    check_level(level)
    keys = []
    for i, path in enumerate(pred.paths):
        patient = pred.patients[i] or f"image:{path}"
        if level == "image":
            keys.append(path)
        elif level == "patient":
            keys.append(patient)
        else:
            keys.append(pred.series[i] or f"{patient} (no series id)")
    return keys


@dataclass
class Units:
    """Predictions aggregated to one row per unit (series or patient) of a set of images.

    ``predictions`` has one row per unit: ``paths`` holds the unit ids, ``patients``/``series``
    the unit's patient and series, ``labels`` its truth (None when unlabelled or when its images
    disagree), ``folds`` its fold, ``row_thresholds`` the threshold it was called at.
    ``members[u]`` are the unit's row indices in ``images``; ``driving[u]`` the row of the image
    that drove the call: the one with the highest probability (for a positive call the strongest
    evidence, for a negative call the slice closest to changing it).
    """

    level: str
    rule: str
    images: Predictions
    predictions: Predictions
    members: list[np.ndarray]
    driving: np.ndarray
    mixed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.predictions)

    @property
    def n_images(self) -> np.ndarray:
        return np.array([m.size for m in self.members], dtype=np.int64)

    def slices_of(self, unit: int) -> np.ndarray:
        """Row indices (in ``images``) of a unit's images, highest probability first."""
        rows = self.members[unit]
        return rows[np.argsort(-self.images.probs[rows], kind="mergesort")]


def aggregate(pred: Predictions, level: str, rule: str = DEFAULT_RULE, threshold: float | None = None,
              threshold_rule: str = "youden", target: float | None = None) -> Units:
    """Group ``pred`` into units at ``level`` and aggregate their probabilities by ``rule``.

    Parameters
    ----------
    pred
        Per-image predictions (out-of-fold ones carry ``folds``).
    level
        ``"image"``, ``"series"`` or ``"patient"``.
    rule
        ``mean`` (default), ``max`` or ``top<k>``.
    threshold
        The unit threshold. None: cross-fitted per fold when ``pred.folds`` is set (chosen by
        ``threshold_rule``/``target`` on the other folds' units), else the image threshold.
    threshold_rule, target
        As for :func:`ctviewer.core.metrics.thresholds.choose_threshold` (``"fixed"``: use
        ``target``, or 0.5).

    Returns
    -------
    Units
        Units in order of their first image.
    """
    check_level(level)
    parse_rule(rule)
    keys = unit_keys(pred, level)
    order: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        order.setdefault(key, []).append(i)
    members = [np.asarray(rows, dtype=np.int64) for rows in order.values()]
    probs = np.array([aggregate_probs(pred.probs[rows], rule) for rows in members])
    labels, mixed = [], []
    for key, rows in zip(order, members):
        names = {pred.labels[i] for i in rows} - {None}
        if len(names) > 1:
            mixed.append(key)
        # A unit is labelled only when all its images are, with one class.
        labels.append(names.pop() if len(names) == 1 and all(pred.labels[i] is not None for i in rows) else None)
    folds = None
    if pred.folds is not None:
        folds = np.array([_one_fold(pred.folds[rows]) for rows in members], dtype=np.int64)
    driving = np.array([rows[int(np.argmax(pred.probs[rows]))] for rows in members], dtype=np.int64)
    first = [int(rows[0]) for rows in members]
    units = Predictions(
        paths=list(order), probs=probs, threshold=float(pred.threshold), classes=pred.classes, labels=labels,
        patients=[pred.patients[i] or "" for i in first], studies=[pred.studies[i] or "" for i in first],
        series=[pred.series[i] or "" for i in first] if level != "patient" else [""] * len(first),
        folds=folds, model_id=pred.model_id,
    )
    notes: list[str] = []
    if mixed:
        notes.append(f"{len(mixed)} {level if level == 'series' else level + '(s)'} have images of two classes (e.g. {mixed[0]}): no {level}-level "
                     "truth, left out of the metrics")
    if level != "image":
        _set_thresholds(units, pred, members, threshold, threshold_rule, target, level, notes)
    elif threshold is not None:
        units.threshold = float(threshold)
    else:
        units.row_thresholds = None if pred.row_thresholds is None else pred.row_thresholds.copy()
    return Units(level=level, rule=rule, images=pred, predictions=units, members=members, driving=driving,
                 mixed=mixed, notes=notes)


def _one_fold(folds: np.ndarray) -> int:
    values = np.unique(folds)
    return int(values[0]) if values.size == 1 else -1


def _choose(units: Predictions, keep: np.ndarray, threshold_rule: str, target: float | None) -> float:
    if threshold_rule == "fixed":
        return 0.5 if target is None else float(target)
    labelled = keep & units.is_labelled
    return choose_threshold(units.y_true[labelled], units.probs[labelled], threshold_rule, target)  # type: ignore[arg-type]


def _set_thresholds(units: Predictions, pred: Predictions, members: list[np.ndarray], threshold: float | None,
                    threshold_rule: str, target: float | None, level: str, notes: list[str]) -> None:
    if threshold is not None:
        units.threshold = float(threshold)
        return
    if units.folds is None or np.unique(units.folds[units.folds >= 0]).size < 2:
        units.threshold = float(pred.threshold)
        notes.append(f"no {level}-level threshold given: {level}s are called at the image threshold "
                     f"{pred.threshold:.4f}")
        return
    # Cross-fitting: the units of fold k are called at a threshold chosen on the other folds' units.
    per_unit = np.empty(len(units), dtype=np.float64)
    chosen: list[float] = []
    for k in np.unique(units.folds):
        here = units.folds == k
        try:
            t = _choose(units, ~here & (units.folds >= 0), threshold_rule, target)
        except ValueError as exc:
            image_t = pred.thresholds()[np.concatenate([members[u] for u in np.flatnonzero(here)])]
            t = float(np.median(image_t))
            notes.append(f"fold {int(k) + 1}: {level} threshold left at the image threshold {t:.4f} ({exc})")
        per_unit[here] = t
        if k >= 0:
            chosen.append(t)
    units.row_thresholds = per_unit
    units.threshold = float(np.median(chosen))
    notes.append(f"each {level} is called at a threshold chosen ({threshold_rule}) on the {level}s of the other "
                 "folds, never on itself")


def choose_level_threshold(pred: Predictions, level: str, rule: str = DEFAULT_RULE, threshold_rule: str = "youden",
                           target: float | None = None) -> float:
    """The ``level`` threshold chosen on labelled (validation or out-of-fold) image predictions.

    The units of ``pred`` are aggregated by ``rule`` and the threshold is chosen on them the same
    way as the image threshold. Raises ValueError when the rule cannot be applied (one class).
    """
    units = aggregate(pred, level, rule, threshold=pred.threshold).predictions
    return _choose(units, np.ones(len(units), dtype=bool), threshold_rule, target)


def level_thresholds(pred: Predictions, rule: str = DEFAULT_RULE, threshold_rule: str = "youden",
                     target: float | None = None, chosen_on: str = "") -> dict[str, dict[str, object]]:
    """The series and patient thresholds of a model, for its card: ``{level: {rule, threshold, ...}}``.

    ``pred`` are labelled predictions the model did not train on (its validation hold-out, or
    out-of-fold predictions). A level whose threshold cannot be chosen gets ``threshold: None``
    and the reason; prediction then falls back to the image threshold and says so.
    """
    out: dict[str, dict[str, object]] = {}
    for level in ("series", "patient"):
        entry: dict[str, object] = {"rule": rule, "threshold_rule": threshold_rule, "chosen_on": chosen_on}
        try:
            entry["threshold"] = choose_level_threshold(pred, level, rule, threshold_rule, target)
            entry["n_units"] = len(aggregate(pred, level, rule, threshold=pred.threshold))
        except ValueError as exc:
            entry["threshold"] = None
            entry["note"] = str(exc)
        out[level] = entry
    return out
