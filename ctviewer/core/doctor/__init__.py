"""The pitfall doctor: checks over a dataset, a split, a training history, a model and predictions.

Every check returns `Finding` objects (code, severity, one plain sentence, evidence, fix);
`run_checks` runs all that the given inputs allow. The codes are listed in `CODES` and
never change meaning, so scripts and the GUI can rely on them.

Importing this package is cheap (no TensorFlow, no scikit-learn): the GUI imports it at
start-up; the model checks import TensorFlow when they run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ctviewer.core.doctor.data_checks import (
    check_class_imbalance,
    check_duplicate_leak,
    check_history,
    check_patient_ids,
    check_patient_leak,
    check_slices_per_patient,
    check_small_class,
    check_tail_split,
    small_class_findings,
)
from ctviewer.core.doctor.findings import CODES, SEVERITIES, Finding, format_finding, json_safe, sort_findings
from ctviewer.core.errors import Cancelled, DatasetError
from ctviewer.core.events import EventCallback, Message, StopCheck, emit, stop_requested

# Images the model checks run on (evenly spaced through the data, so a class-sorted
# folder still gives both classes), and the smaller subset for the repeated-call checks.
MAX_IMAGES = 128
MODE_IMAGES = 16


def run_checks(
    dataset: Any = None,
    split: Any = None,
    history: Any = None,
    model: Any = None,
    predictions: Any = None,
    *,
    input_scale: str = "auto",
    baseline: bool = True,
    max_images: int = MAX_IMAGES,
    mode_images: int = MODE_IMAGES,
    cache: Any = None,
    on_event: EventCallback | None = None,
    should_stop: StopCheck | None = None,
) -> list[Finding]:
    """Run every check the inputs allow; errors first, then warnings, then info.

    Parameters
    ----------
    dataset
        A `ctviewer.core.data.dataset.Dataset` in its given (folder) order.
    split
        A `ctviewer.core.data.splits.Split` or `Folds` over ``dataset`` (a bundle's recorded split
        is used when none is given).
    history
        A Keras ``History`` or its ``.history`` dict (a bundle's recorded history by default).
    model
        A bundle folder, a ``.keras``/``.h5`` file, a loaded Bundle, a TrainedModel or a
        ``keras.Model``; its checks run on ``dataset``.
    predictions
        `ctviewer.core.metrics.predictions.Predictions` to check for collapse (and against the baseline).
    input_scale
        For a plain model: ``"auto"``, ``"unit"``, ``"hu"`` or ``"raw"`` (see
        `ctviewer.core.doctor.model_source`).
    baseline
        Fit the histogram baseline for ``baseline-beats-model`` (needs scikit-learn).
    max_images, mode_images
        How many images the model checks use, and how many the repeated-call checks use.
    cache
        Preprocessing cache (`ctviewer.core.data.cache.Cache()` by default).
    on_event
        Receives `Message` events saying which check runs (for progress display).
    should_stop
        Checked before each step; once it says stop, `Cancelled` is raised (the model and
        baseline checks take a while on a large dataset).

    Raises
    ------
    ModelError
        The model cannot be loaded or cannot run on these images.
    """
    findings: list[Finding] = []
    mut = None
    on_event = _stopping(on_event, should_stop)
    if model is not None:
        from ctviewer.core.doctor.model_source import as_model_under_test

        emit(on_event, Message("loading the model"))
        mut = as_model_under_test(model)
        split = split if split is not None else mut.split
        history = history if history is not None else mut.history
    emit(on_event, Message("checking the data and the split"))
    if dataset is not None:
        findings += check_class_imbalance(dataset)
        findings += check_patient_ids(dataset)
        findings += check_slices_per_patient(dataset)
        findings += check_tail_split(dataset, split)
        findings += check_duplicate_leak(dataset, split)
    findings += check_patient_leak(split, dataset)
    findings += check_small_class(dataset, split, evaluated_data=mut is not None or predictions is not None)
    if predictions is not None and dataset is None:
        findings += small_class_findings(list(predictions.labels), "evaluated", predictions.classes,
                                         predictions.positive)
    findings += check_history(history)
    if predictions is not None:
        findings += _prediction_findings(predictions, dataset, baseline, cache, on_event)
    if mut is not None and dataset is not None and len(dataset):
        findings += _model_findings(mut, dataset, input_scale, baseline, max_images, mode_images, cache, on_event)
    return sort_findings(findings)


def _stopping(on_event: EventCallback | None, should_stop: StopCheck | None) -> EventCallback | None:
    """``on_event`` that also ends the run once a stop is asked: every step announces
    itself with an event, so the checks stop at the next step."""
    if should_stop is None:
        return on_event

    def relay(event: Any) -> None:
        if stop_requested(should_stop):
            raise Cancelled("doctor checks cancelled")
        emit(on_event, event)

    return relay


def _skipped(check: str, reason: str) -> Finding:
    return Finding("check-skipped", "info", f"The {check} check did not run: {reason}.", {"check": check},
                   "Give the doctor what the check needs (see `ctviewer doctor --help`).")


def _baseline_result(dataset: Any, cache: Any, on_event: EventCallback | None) -> tuple[Any, Finding | None]:
    from ctviewer.core.explain.baseline import baseline_for_dataset

    emit(on_event, Message("fitting the histogram baseline (patient-grouped cross-validation)"))
    try:
        return baseline_for_dataset(dataset, cache=cache), None
    except DatasetError as exc:
        return None, _skipped("baseline-beats-model", str(exc))


def _prediction_findings(predictions: Any, dataset: Any, baseline: bool, cache: Any,
                         on_event: EventCallback | None) -> list[Finding]:
    from ctviewer.core.doctor.model_checks import check_baseline, check_prediction_collapse

    labelled = predictions.is_labelled
    y = predictions.y_true[labelled] if labelled.any() else None
    out = check_prediction_collapse(predictions.probs, predictions.threshold, y, predictions.classes,
                                    where="the given predictions", mode="the given predictions")
    if baseline and dataset is not None and y is not None and dataset.is_labelled:
        from ctviewer.core.doctor.data_checks import normalise_path

        index = {normalise_path(p): i for i, p in enumerate(dataset.paths)}
        keys = [normalise_path(p) for p in predictions.paths]
        rows = [i for i, k in enumerate(keys) if k in index and labelled[i]]
        if len(rows) >= 4:
            sub = dataset.subset([index[keys[i]] for i in rows])
            result, skipped = _baseline_result(sub, cache, on_event)
            out += [skipped] if skipped else check_baseline(predictions.probs[rows], sub.y, result)
    return out


def _spread_indices(n: int, k: int) -> np.ndarray:
    """``k`` indices spread evenly over ``range(n)`` (all when ``n <= k``)."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def _model_findings(mut: Any, dataset: Any, input_scale: str, baseline: bool, max_images: int, mode_images: int,
                    cache: Any, on_event: EventCallback | None) -> list[Finding]:
    from ctviewer.core.doctor import model_checks as mc
    from ctviewer.core.doctor.model_source import SCALES, detect_input_scale, images_at_scales

    findings: list[Finding] = []
    selection = _spread_indices(len(dataset), max_images)
    data = dataset.subset(selection.tolist())
    y = data.y if data.is_labelled else None
    classes = mut.classes or (str(data.negative or "negative"), str(data.positive or "positive"))
    scales = ["unit"] if mut.is_ctviewer else list(SCALES)
    emit(on_event, Message(f"preparing {len(data)} images at {mut.size} px ({', '.join(scales)})"))
    arrays = images_at_scales(mut, data.items, scales, cache)
    few = _spread_indices(len(data), mode_images)
    report = detect_input_scale(mut, {k: v[few] for k, v in arrays.items()}, forced=input_scale)
    mut.input_scale, mut.input_scale_reason = report.chosen, report.reason
    x = arrays[report.chosen]

    emit(on_event, Message(f"predicting ({report.chosen} input scale: {report.reason})"))
    probs = mc.call_probs(mut.model, x, training=False)
    scale_predictions = None
    if not mut.is_ctviewer:
        scale_predictions = {}
        for scale, arr in arrays.items():
            p = probs[few] if scale == report.chosen else mc.call_probs(mut.model, arr[few], training=False)
            scale_predictions[scale] = {"n": int(p.size), "n_called_positive": int((p >= mut.threshold).sum()),
                                        "prob_min": float(p.min()), "prob_max": float(p.max())}
    where = f"{dataset.source}" + (f" ({len(data)} of {len(dataset)} images)" if len(data) < len(dataset) else "")
    findings += mc.check_unnormalised_input(report, scale_predictions)
    non_finite = mc.check_non_finite(probs, where, [it.path for it in data.items], report.chosen)
    if non_finite:
        return findings + non_finite
    findings += mc.check_prediction_collapse(probs, mut.threshold, y, classes, where=where)

    emit(on_event, Message("comparing training=True with training=False"))
    xs, ys = x[few], (y[few] if y is not None else None)
    findings += mc.check_mode_mismatch(mut.model, xs, mut.threshold, ys, ctviewer_model=mut.is_ctviewer)
    emit(on_event, Message("repeating calls, alone and batched"))
    findings += mc.check_unstable_predictions(mut.model, xs, ctviewer_model=mut.is_ctviewer)

    trained_here = _trained_on_this_data(mut, dataset)
    if trained_here:
        findings.append(Finding(
            "evaluated-on-training-data", "info",
            f"The model was trained on these images ({trained_here}), so its accuracy and AUC on them are "
            "optimistic; only held-out patients measure generalisation.",
            {"how_known": trained_here, "validation_auc_in_card": mut.validation_auc},
            "Judge the model by its validation or cross-validated metrics (ctviewer cv), or run it on new patients.",
        ))
    if baseline and y is not None and len(set(y.tolist())) == 2:
        result, skipped = _baseline_result(data, cache, on_event)
        if skipped:
            findings.append(skipped)
        else:
            from ctviewer.core.metrics.evaluation import delong_auc

            model_auc = delong_auc(y, probs).auc
            emit(on_event, Message(f"histogram baseline AUC {result.auc:.3f} (patient-grouped {result.k}-fold CV) "
                                   f"vs model AUC {model_auc:.3f} on these {len(y)} images"))
            known = bool(trained_here) or mut.trained_on is not None or mut.split is not None
            findings += mc.check_baseline(probs, y, result, validation_auc=mut.validation_auc,
                                          trained_on_this_data=bool(trained_here) if known else None,
                                          columns_known=mut.is_ctviewer)
    return findings


def _trained_on_this_data(mut: Any, dataset: Any) -> str:
    """How we know the model saw (some of) these images in training; "" when we do not."""
    from ctviewer.core.model.provenance import training_overlap

    return training_overlap(dataset, mut.trained_on or "", mut.split).how


def findings_to_json(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """The ``--json`` form: a list of ``{code, severity, message, evidence, fix}``."""
    return [f.to_json_dict() for f in findings]


__all__ = [
    "CODES", "MAX_IMAGES", "MODE_IMAGES", "SEVERITIES", "Finding", "check_class_imbalance", "check_duplicate_leak",
    "check_history", "check_patient_ids", "check_patient_leak", "check_slices_per_patient", "check_small_class",
    "check_tail_split",
    "findings_to_json", "format_finding", "json_safe", "run_checks", "small_class_findings", "sort_findings",
]
