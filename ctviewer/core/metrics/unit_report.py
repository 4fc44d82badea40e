"""Per-unit report files: one CSV row per series or patient, and the metrics of every level.

The unit CSV (``patients.csv``, ``series.csv``, ``predict --level``) has the columns of
``UNIT_COLUMNS``: the unit id, its level, patient/study/series, how many images it holds, its
truth (blank when unlabelled or when its images disagree), the aggregate probability, the call,
1/0 correct, the threshold it was called at, its fold, the aggregation rule, the image that drove
the call (the most positive one; ``path#frame`` for a frame of a multi-frame file) and the model.
:func:`ctviewer.core.metrics.report.read_predictions_csv` reads it back (``unit`` stands for
``path``), so ``ctviewer evaluate`` recomputes its metrics.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from ctviewer.core.metrics.aggregate import Units, aggregate
from ctviewer.core.metrics.evaluation import Metrics, metrics_from_predictions
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.core.metrics.report import atomic_open, pseudonym, utf8_text

UNIT_COLUMNS: tuple[str, ...] = (
    "unit", "level", "patient", "study", "series", "n_images", "label", "prob", "pred", "correct", "threshold",
    "fold", "rule", "top_image", "model_id",
)
# Each level's file in a cross-validation folder.
LEVEL_FILES = {"series": "series.csv", "patient": "patients.csv"}


def image_ref(pred: Predictions, row: int) -> str:
    """The path of an image row, with ``#frame=<n>`` (1-based) for one frame of a multi-frame file."""
    frames = getattr(pred, "frames", None)
    if frames is not None and int(frames[row]) >= 0:
        return f"{pred.paths[row]}#frame={int(frames[row]) + 1}"
    return pred.paths[row]


def write_units_csv(units: Units, path: str | os.PathLike[str], pseudonymise_salt: str | None = None) -> Path:
    """Write one row per unit (columns ``UNIT_COLUMNS``), atomically; ``prob`` and ``threshold`` exactly.

    With ``pseudonymise_salt`` the unit, patient, study and series ids and the top image are
    replaced by salted pseudonyms (see :func:`ctviewer.core.metrics.report.pseudonym`).
    """
    if pseudonymise_salt is not None and not pseudonymise_salt:
        raise ValueError("pseudonymise_salt must be a non-empty secret: an empty salt hides nothing")
    pred = units.predictions
    calls, correct, thresholds = pred.y_pred(), pred.correct(), pred.thresholds()
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(UNIT_COLUMNS)
        for u in range(len(pred)):
            # Non-UTF-8 file names (and the patient ids made from them) as \xNN, before hashing or writing.
            ids = [utf8_text(pred.paths[u]), utf8_text(pred.patients[u] or ""), pred.studies[u] or "",
                   pred.series[u] or ""]
            top = utf8_text(image_ref(units.images, int(units.driving[u])))
            if pseudonymise_salt:
                ids = [pseudonym(v, pseudonymise_salt, kind) for v, kind in
                       zip(ids, (units.level, "patient", "study", "series"))]
                top = pseudonym(top, pseudonymise_salt, "image")
            fold = "" if pred.folds is None or int(pred.folds[u]) < 0 else str(int(pred.folds[u]))
            label = pred.labels[u]
            writer.writerow([
                ids[0], units.level, ids[1], ids[2], ids[3], str(int(units.members[u].size)),
                "" if label is None else label, repr(float(pred.probs[u])), pred.classes[int(calls[u])],
                "" if correct[u] is None else str(int(correct[u])), repr(float(thresholds[u])), fold, units.rule,
                top, pred.model_id,
            ])
    return Path(path)


def level_metrics(units: Units) -> Metrics:
    """Metrics of the labelled units, counting units (images at image level, with the patient bootstrap).

    The aggregation's notes (threshold source, units with two classes) join the warnings.
    """
    metrics = metrics_from_predictions(units.predictions, unit=units.level)
    metrics.warnings = list(units.notes) + metrics.warnings
    return metrics


def levels_json(pred: Predictions, rule: str, threshold_rule: str = "youden",
                target: float | None = None) -> tuple[dict[str, Any], dict[str, Units]]:
    """Series- and patient-level metrics of out-of-fold predictions, for ``metrics.json``.

    Returns ``({level: metrics dict + rule + threshold}, {level: Units})``; a level whose
    metrics cannot be computed (e.g. one class) holds ``{"error": reason}``.
    """
    out: dict[str, Any] = {}
    units_by_level: dict[str, Units] = {}
    for level in ("series", "patient"):
        units = aggregate(pred, level, rule, threshold_rule=threshold_rule, target=target)
        units_by_level[level] = units
        try:
            payload: dict[str, Any] = level_metrics(units).to_json_dict()
        except ValueError as exc:
            payload = {"error": str(exc)}
        payload["rule"] = rule
        payload["n_units"] = len(units)
        payload["threshold_rule"] = threshold_rule
        out[level] = payload
    return out, units_by_level
