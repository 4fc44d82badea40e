"""Decisions taken on out-of-fold predictions: the ensemble's threshold and the check of threshold rules.

Every labelled image of a k-fold run has one out-of-fold probability, from the fold model
that never saw its patient. The ensemble's threshold is chosen on all of them (about 100
images instead of the ~16 of one inner validation set). Choosing a threshold on the same
predictions that are then scored flatters the score a little, so each rule is also checked
*cross-fitted*: the images of fold k are called at the threshold the rule picks from the
other folds only, i.e. on images the threshold never saw.

No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ctviewer.core.metrics.thresholds import choose_threshold

POOLED = "pooled out-of-fold"
FOLD_MEDIAN = "median of fold thresholds"
FIXED_HALF = "fixed 0.5"


def choose_oof_threshold(y: np.ndarray, probs: np.ndarray, rule: str, target: float | None) -> float:
    """The threshold ``rule`` picks on (pooled out-of-fold) labelled scores.

    ``rule`` is a `TrainConfig.threshold_rule`: ``youden``, ``sensitivity`` / ``specificity``
    (with ``target``) or ``fixed`` (``target``, default 0.5).

    Raises
    ------
    ValueError
        A class the rule needs is missing, or a bad target.
    """
    if rule == "fixed":
        return 0.5 if target is None else float(target)
    return float(choose_threshold(y, probs, rule, target))  # type: ignore[arg-type]


def cross_fitted_thresholds(y: np.ndarray, probs: np.ndarray, folds: np.ndarray, rule: str,
                            target: float | None) -> np.ndarray:
    """Per image: the threshold ``rule`` picks on the out-of-fold scores of the *other* folds.

    Rows whose fold is negative or whose probability is NaN (folds not run) are left out of
    every choice and get NaN.
    """
    y, probs, folds = np.asarray(y), np.asarray(probs, dtype=np.float64), np.asarray(folds)
    usable = (folds >= 0) & np.isfinite(probs) & (y >= 0)
    out = np.full(len(y), np.nan)
    for k in np.unique(folds[usable]):
        others = usable & (folds != k)
        try:
            out[usable & (folds == k)] = choose_oof_threshold(y[others], probs[others], rule, target)
        except ValueError:
            continue  # the other folds lack a class: no honest threshold for this fold
    return out


@dataclass(frozen=True)
class RuleCheck:
    """One threshold rule: the threshold it gives the ensemble, and its calls on unseen images."""

    rule: str
    threshold: float  # what the rule picks using every fold (the value a bundle would use)
    n: int  # images called (cross-fitted)
    accuracy: float
    sensitivity: float
    specificity: float

    def to_json_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "threshold": self.threshold, "n": self.n, "accuracy": self.accuracy,
                "sensitivity": self.sensitivity, "specificity": self.specificity}


def _check(rule: str, threshold: float, y: np.ndarray, probs: np.ndarray, row_thresholds: np.ndarray) -> RuleCheck:
    ok = np.isfinite(row_thresholds) & np.isfinite(probs) & (y >= 0)
    yy, called = y[ok], probs[ok] >= row_thresholds[ok]
    pos, neg = yy == 1, yy == 0
    nan = float("nan")
    return RuleCheck(
        rule=rule, threshold=float(threshold), n=int(ok.sum()),
        accuracy=float((called == pos).mean()) if ok.any() else nan,
        sensitivity=float(called[pos].mean()) if pos.any() else nan,
        specificity=float((~called[neg]).mean()) if neg.any() else nan,
    )


def compare_threshold_rules(y: np.ndarray, probs: np.ndarray, folds: np.ndarray, fold_thresholds: list[float],
                            rule: str = "youden", target: float | None = None) -> list[RuleCheck]:
    """Each candidate rule with its calls on images its threshold was not chosen on.

    - ``pooled out-of-fold <rule>``: chosen on the other folds' out-of-fold scores;
    - ``median of fold thresholds``: each image at its own fold model's threshold (chosen on
      that model's inner validation patients), the ensemble at their median;
    - ``fixed 0.5``.
    """
    y, probs, folds = np.asarray(y), np.asarray(probs, dtype=np.float64), np.asarray(folds)
    checks = []
    ok = np.isfinite(probs) & (y >= 0) & (folds >= 0)
    try:
        pooled = choose_oof_threshold(y[ok], probs[ok], rule, target)
    except ValueError:
        pooled = float("nan")
    checks.append(_check(f"{POOLED} {rule}", pooled, y, probs, cross_fitted_thresholds(y, probs, folds, rule, target)))
    finite = [t for t in fold_thresholds if t is not None and np.isfinite(t)]
    if len(finite) == len(fold_thresholds) and finite:
        own = np.where(folds >= 0, np.asarray(fold_thresholds + [np.nan])[np.where(folds >= 0, folds, -1)], np.nan)
        checks.append(_check(FOLD_MEDIAN, float(np.median(finite)), y, probs, own))
    checks.append(_check(FIXED_HALF, 0.5, y, probs, np.full(len(y), 0.5)))
    return checks


def expected_line(card: dict[str, Any]) -> str:
    """A model card's expected performance (pooled out-of-fold, with 95% intervals) on one line.

    '' when the card has none (a single model, or a bundle older than this).
    """
    block = card.get("expected_performance") if isinstance(card, dict) else None
    metrics = block.get("metrics") if isinstance(block, dict) else None
    if not isinstance(metrics, dict):
        return ""
    parts = []
    for key, label in (("auc", "AUC"), ("accuracy", "accuracy"), ("sensitivity", "sensitivity"),
                       ("specificity", "specificity"), ("ppv", "PPV"), ("npv", "NPV")):
        value, ci = metrics.get(key), metrics.get(f"{key}_ci")
        if not isinstance(value, (int, float)):
            continue
        interval = f" [{ci[0]:.2f}-{ci[1]:.2f}]" if isinstance(ci, list) and len(ci) == 2 and None not in ci else ""
        parts.append(f"{label} {value:.2f}{interval}")
    n = metrics.get("n")
    return ", ".join(parts) + (f" (pooled out-of-fold, {n} images)" if n else "")
