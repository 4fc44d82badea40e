"""The doctor on a Keras model and numpy arrays, as a notebook user has them (no files, no bundle).

The same checks as `ctviewer.core.doctor.run_checks`, fed from arrays: the data checks run
on `ctviewer.core.data.arrays.array_index` (item names ``x[i]``), the split is what
``model.fit(x, y, validation_split=f)`` holds out (the last ``f`` of the arrays), and the
model checks run on ``x`` as given: the arrays are the model's input, so the input-scale
check judges their values instead of trying file scales. TensorFlow is imported when a
model is given.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ctviewer.core.doctor import MAX_IMAGES, MODE_IMAGES, _skipped, _spread_indices
from ctviewer.core.doctor.data_checks import (
    check_class_imbalance,
    check_duplicate_leak,
    check_history,
    check_patient_ids,
    check_patient_leak,
    check_small_class,
    check_tail_split,
)
from ctviewer.core.doctor.findings import Finding, sort_findings
from ctviewer.core.errors import DatasetError, ModelError
from ctviewer.core.events import EventCallback, Message, emit


def tail_split_of(dataset: Any, validation_split: float | None) -> Any:
    """The `Split` Keras' ``validation_split`` makes of arrays in this order (None for no split)."""
    if validation_split is None:
        return None
    if not 0.0 < float(validation_split) < 1.0:
        raise ValueError(f"validation_split must be between 0 and 1 (got {validation_split})")
    from ctviewer.core.data.splits import keras_tail_split

    return keras_tail_split(dataset, float(validation_split))


def _array_words(finding: Finding) -> Finding:
    """The data checks speak of folders and labels.csv; say it in terms of arrays."""
    message = finding.message.replace("in folder order", "in the arrays' order")
    evidence = dict(finding.evidence)
    if evidence.get("order") == "as discovered (class folders in turn)":
        evidence["order"] = "as given (x[0], x[1], ...)"
    fix = finding.fix
    if finding.code == "no-patient-ids":
        message = message.replace("images have no patient id", "images have no patient id (no patients= given)")
        fix = "Pass patients= (one id per row of x) so splits and the doctor keep each patient's slices together."
    return dataclasses.replace(finding, message=message, evidence=evidence, fix=fix)


def data_findings(dataset: Any, split: Any = None, patients_given: bool = False) -> list[Finding]:
    """The cheap checks on labels, order, duplicates and the tail split (no model)."""
    findings: list[Finding] = []
    if dataset is None or not dataset.is_labelled:
        return findings
    findings += check_class_imbalance(dataset)
    findings += check_patient_ids(dataset)
    findings += check_tail_split(dataset, split)
    findings += check_duplicate_leak(dataset, split)
    if patients_given:
        findings += check_patient_leak(split, dataset)
    findings += check_small_class(dataset, split)
    return [_array_words(f) for f in findings]


def model_input(model: Any, x: Any, rows: Any = None) -> np.ndarray:
    """``x`` as float32 in the model's input shape; a missing channel axis of one is added.

    ``rows``: the row number in the caller's array of each row of ``x`` (for messages).

    Raises
    ------
    ModelError
        The model has several inputs, or ``x`` does not fit its input shape.
    ValueError
        NaN or infinite values (naming the first such row).
    """
    shape = model.input_shape
    if isinstance(shape, list):
        raise ModelError(f"the model has {len(shape)} inputs; the doctor checks one-image models")
    arr = np.asarray(x, dtype=np.float32)
    want = tuple(shape)[1:]
    if arr.ndim == len(want) and want[-1] == 1:
        arr = arr[..., None]
    if arr.ndim != len(want) + 1 or any(w is not None and w != a for w, a in zip(want, arr.shape[1:])):
        raise ModelError(f"x has shape {np.shape(x)} but the model takes {tuple(shape)}")
    bad = ~np.isfinite(arr).reshape(len(arr), -1).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        first = int(rows[first]) if rows is not None else first
        raise ValueError(f"x holds NaN or infinite values ({int(bad.sum())} images, first x[{first}])")
    return arr


def model_findings(model: Any, x: np.ndarray, y: np.ndarray | None, *, classes: tuple[str, str],
                   threshold: float = 0.5, patients: np.ndarray | None = None, baseline: bool = True,
                   max_images: int = MAX_IMAGES, mode_images: int = MODE_IMAGES,
                   on_event: EventCallback | None = None) -> list[Finding]:
    """Input scale, collapse, training vs inference mode, stability and the histogram baseline on ``x``.

    ``y`` (0/1, or None) and ``patients`` are aligned with ``x``; at most ``max_images`` rows,
    spread evenly (so class-sorted arrays still give both classes), are used.
    """
    from ctviewer.core.doctor import model_checks as mc
    from ctviewer.core.doctor.model_source import array_scale_report

    n = len(x)
    selection = _spread_indices(n, max_images)
    xs = model_input(model, np.asarray(x)[selection], selection)  # only the rows used are copied to float32
    ys = None if y is None else np.asarray(y)[selection]
    names = [f"x[{int(i)}]" for i in selection]
    where = "x" + (f" ({len(xs)} of {n} images)" if len(xs) < n else f" ({n} images)")
    findings: list[Finding] = []
    report = array_scale_report(model, xs)
    findings += mc.check_unnormalised_input(report)
    emit(on_event, Message(f"predicting {len(xs)} images (training=False)"))
    probs = mc.call_probs(model, xs, training=False)
    non_finite = mc.check_non_finite(probs, where, names, "as given")
    if non_finite:
        return findings + non_finite
    findings += mc.check_prediction_collapse(probs, threshold, ys, classes, where=where)
    few = _spread_indices(len(xs), mode_images)
    emit(on_event, Message("comparing training=True with training=False"))
    findings += mc.check_mode_mismatch(model, xs[few], threshold, None if ys is None else ys[few])
    emit(on_event, Message("repeating calls, alone and batched"))
    findings += mc.check_unstable_predictions(model, xs[few])
    if baseline and ys is not None and set(ys.tolist()) >= {0, 1}:
        from ctviewer.core.explain.baseline import baseline_for_arrays

        groups = patients[selection] if patients is not None else np.asarray(names)
        emit(on_event, Message("fitting the histogram baseline (grouped cross-validation)"))
        try:
            result = baseline_for_arrays(xs, ys, groups)
        except DatasetError as exc:
            findings.append(_skipped("baseline-beats-model", str(exc)))
        else:
            grouped = "by patient" if patients is not None else "by row (no patients given)"
            findings += [dataclasses.replace(f, evidence={
                **f.evidence, "baseline": f"logistic regression on intensity histograms of x, {result.k}-fold CV "
                f"grouped {grouped} (out-of-fold)"}) for f in mc.check_baseline(probs, ys, result)]
    return findings


def run_array_checks(model: Any, x: Any, y: Any = None, *, validation_split: float | None = None,
                     history: Any = None, patients: Any = None, classes: tuple[str, str] | None = None,
                     threshold: float = 0.5, baseline: bool = True, max_images: int = MAX_IMAGES,
                     mode_images: int = MODE_IMAGES, on_event: EventCallback | None = None) -> list[Finding]:
    """Every check arrays, labels, a split fraction, a history and a model allow; errors first.

    Parameters
    ----------
    model
        A ``keras.Model`` taking ``x`` (None: data and history checks only).
    x, y
        The arrays in the order given to ``model.fit``; ``y`` 0/1, one-hot rows or class names.
    validation_split
        The fraction given to ``model.fit(validation_split=...)``, if any.
    history
        A Keras ``History`` or its ``.history`` dict.
    patients
        One patient id per row of ``x``.
    classes
        Names for class 0 and class 1 (for the messages).
    threshold
        Probability of class 1 at or above which an image is called class 1.

    Raises
    ------
    ValueError
        Arrays of the wrong shape or labels that are not binary.
    ModelError
        ``x`` does not fit the model.
    """
    from ctviewer.core.data.arrays import array_index

    dataset = array_index(x, y, patients, classes)
    split = tail_split_of(dataset, validation_split)
    findings = data_findings(dataset, split, patients is not None)
    if history is not None:
        findings += check_history(history)
    if model is not None:
        y01 = dataset.y if y is not None else None
        names = (str(dataset.negative), str(dataset.positive)) if y is not None else ("class 0", "class 1")
        findings += model_findings(model, x, y01, classes=classes or names, threshold=threshold,
                                   patients=dataset.patients if patients is not None else None, baseline=baseline,
                                   max_images=max_images, mode_images=mode_images, on_event=on_event)
    return sort_findings(findings)
