"""Checks that run the model on the data: collapse, train/inference mode, stability, input scale, baseline.

Each ``check_*`` returns a list of `Finding`. The functions that call the model take a plain
``keras.Model`` and model-ready arrays, so the GUI can run them on what it already has.
Calling a model with ``training=True`` updates BatchNorm's moving statistics; every such
call here is wrapped in `weights_restored`, so the model is unchanged afterwards.
TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ctviewer.core.doctor.findings import Finding
from ctviewer.core.doctor.model_source import SCALE_WORDS, ScaleReport, flat_layers

# Largest probability change between modes that still counts as "the same".
MODE_TOLERANCE = 0.05
# Largest change between calls / batch sizes in one mode: float noise only.
STABILITY_TOLERANCE = 1e-4
# A model whose probabilities span less than this over the data ignores the image.
FLAT_OUTPUT = 0.01
# The baseline "matches" a model whose AUC is less than this much above it.
BASELINE_MARGIN = 0.01

_MODE_LAYERS = ("BatchNormalization", "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
                "AlphaDropout", "RandomFlip", "RandomRotation", "RandomTranslation", "RandomZoom",
                "RandomContrast", "RandomBrightness", "IntensityJitter", "RandomAffine")


# --------------------------------------------------------------------------- calling the model


def positive_probs(out: Any) -> np.ndarray:
    """Positive-class probability from a (N, 2) softmax or (N, 1) sigmoid output (logits are squashed)."""
    out = np.asarray(out, dtype=np.float64)
    if out.ndim != 2 or out.shape[1] not in (1, 2):
        raise ValueError(f"model output shape {out.shape} is not (N, 1) or (N, 2)")
    if out.shape[1] == 2:
        if out.min() < -1e-6 or out.max() > 1 + 1e-6 or not np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
            e = np.exp(out - out.max(axis=1, keepdims=True))
            out = e / e.sum(axis=1, keepdims=True)
        return out[:, 1]
    col = out[:, 0]
    if col.min() < -1e-6 or col.max() > 1 + 1e-6:
        col = 1.0 / (1.0 + np.exp(-col))
    return col


def call_probs(model: Any, x: np.ndarray, training: bool, batch_size: int = 16) -> np.ndarray:
    """Positive-class probabilities of ``model(x, training=training)``, ``batch_size`` images per call."""
    import keras

    out = []
    for start in range(0, len(x), batch_size):
        y = model(keras.ops.convert_to_tensor(x[start:start + batch_size]), training=training)
        out.append(positive_probs(keras.ops.convert_to_numpy(y)))
    return np.concatenate(out) if out else np.empty(0)


@contextlib.contextmanager
def weights_restored(model: Any) -> Iterator[None]:
    """Put every weight (BatchNorm moving statistics included) back as it was on exit."""
    saved = model.get_weights()
    try:
        yield
    finally:
        model.set_weights(saved)


def mode_layers(model: Any) -> dict[str, list[str]]:
    """Names of the layers that behave differently with ``training=True``, by layer type."""
    found: dict[str, list[str]] = {}
    for layer in flat_layers(model):
        # By class name along the MRO, so a subclass (ctviewer's FusedBatchNormalization) counts as its kind.
        kind = next((c.__name__ for c in type(layer).__mro__ if c.__name__ in _MODE_LAYERS), None)
        if kind is not None:
            found.setdefault(kind, []).append(layer.name)
    return found


def _summary(probs: np.ndarray, threshold: float) -> dict[str, Any]:
    return {"n": int(probs.size), "n_called_positive": int((probs >= threshold).sum()),
            "prob_min": float(probs.min()), "prob_max": float(probs.max()), "prob_mean": float(probs.mean())}


def _accuracy(probs: np.ndarray, threshold: float, y: np.ndarray | None) -> float | None:
    if y is None or not (y >= 0).all():
        return None
    return float(np.mean((probs >= threshold).astype(np.int64) == y))


# --------------------------------------------------------------------------- non-finite output


def check_non_finite(probs: np.ndarray, where: str, names: Sequence[str], input_scale: str) -> list[Finding]:
    """NaN or infinite outputs (``names``: the file or array row of each output)."""
    bad = ~np.isfinite(np.asarray(probs, dtype=np.float64))
    if not bad.any():
        return []
    return [Finding(
        "non-finite-output", "error",
        f"The model outputs NaN or infinity for {int(bad.sum())} of {len(bad)} images of {where}: its weights "
        "diverged in training or the input is far outside what it was trained on.",
        {"n_non_finite": int(bad.sum()), "n": len(bad), "input_scale": input_scale,
         "example_files": [names[i] for i in np.flatnonzero(bad)[:5]]},
        "Retrain with normalised inputs and a smaller learning rate; check the input scale (--input-scale).",
    )]


# --------------------------------------------------------------------------- collapse


def check_prediction_collapse(probs: np.ndarray, threshold: float, y: np.ndarray | None = None,
                              classes: Sequence[str] = ("negative", "positive"), where: str = "the given data",
                              mode: str = "inference mode (training=False)") -> list[Finding]:
    """Every image called the same class, or probabilities that barely depend on the image."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.size < 2:
        return []
    called = (probs >= threshold).astype(np.int64)
    spread = float(probs.max() - probs.min())
    one_class = len(set(called.tolist())) == 1
    if not one_class and spread >= FLAT_OUTPUT:
        return []
    evidence = {**_summary(probs, threshold), "threshold": threshold, "prob_spread": spread, "mode": mode,
                "data": where}
    both_labelled = y is not None and set(np.asarray(y).tolist()) >= {0, 1}
    if y is not None:
        evidence["true_class_counts"] = {classes[0]: int((np.asarray(y) == 0).sum()),
                                         classes[1]: int((np.asarray(y) == 1).sum())}
    if one_class:
        name = classes[int(called[0])]
        message = (f"The model calls all {probs.size} images of {where} {name} (probabilities "
                   f"{probs.min():.3f}-{probs.max():.3f} at threshold {threshold:.3g}) in {mode}: it has collapsed "
                   "to one class.")
    else:
        message = (f"The model's probabilities on {where} span only {spread:.4f} ({probs.min():.4f}-"
                   f"{probs.max():.4f}) in {mode}: its output hardly depends on the image.")
    # On labelled data of both classes one answer for all is certainly wrong; on unlabelled or
    # one-class data it may be right, so it is only a warning there.
    severity = "error" if both_labelled else "warning"
    return [Finding(
        "prediction-collapse", severity, message, evidence,
        "Check labels and split first (one-class validation, class-sorted data), normalise inputs, weight the "
        "classes, predict with training=False, and compare with a simpler model (ctviewer's default recipe).",
    )]


# --------------------------------------------------------------------------- training vs inference mode


def check_mode_mismatch(model: Any, x: np.ndarray, threshold: float = 0.5, y: np.ndarray | None = None,
                        ctviewer_model: bool = False, tolerance: float = MODE_TOLERANCE, batch_size: int = 16,
                        seed: int = 0) -> list[Finding]:
    """Outputs on the same images with ``training=True`` vs ``training=False``.

    Training-mode batches are drawn in a shuffled order (both classes mixed, as in training);
    BatchNorm then normalises with each batch's own statistics and Dropout drops units.
    """
    layers = mode_layers(model)
    if not layers or len(x) == 0:
        return []
    order = np.random.default_rng(seed).permutation(len(x))
    p_inf = call_probs(model, x, training=False, batch_size=batch_size)
    with weights_restored(model):
        p_train = np.empty(len(x))
        p_train[order] = call_probs(model, x[order], training=True, batch_size=batch_size)
    change = np.abs(p_train - p_inf)
    if float(change.max()) <= tolerance:
        return []
    flips = int(((p_train >= threshold) != (p_inf >= threshold)).sum())
    evidence: dict[str, Any] = {
        "n_images": len(x), "batch_size": batch_size, "max_prob_change": float(change.max()),
        "mean_prob_change": float(change.mean()), "n_class_flips": flips, "tolerance": tolerance,
        "training_false": _summary(p_inf, threshold), "training_true": _summary(p_train, threshold),
        "layers": layers,
    }
    acc_inf, acc_train = _accuracy(p_inf, threshold, y), _accuracy(p_train, threshold, y)
    if acc_inf is not None:
        evidence["accuracy_training_false"], evidence["accuracy_training_true"] = acc_inf, acc_train
    kinds = ", ".join(sorted(layers))
    collapsed = {name: len(set((p >= threshold).tolist())) == 1 for name, p in (("False", p_inf), ("True", p_train))}
    detail = ""
    if collapsed["False"] != collapsed["True"]:
        one, other = ("False (model.predict)", "True") if collapsed["False"] else ("True", "False")
        detail = f"; with training={one} all {len(x)} get the same class, with training={other} they do not"
    message = (f"The same {len(x)} images get probabilities up to {change.max():.2f} apart (mean {change.mean():.2f}) "
               f"with training=True and training=False, and {flips} change class: {kinds} behave differently in the "
               f"two modes{detail}.")
    if ctviewer_model:
        severity = "info"
        fix = ("Nothing to do inside ctviewer (it always predicts with training=False); if you call the model "
               "yourself, use model.predict or model(x, training=False), never learning_phase=1.")
    else:
        severity = "warning"
        fix = ("Predict with model.predict / model(x, training=False) (never learning_phase=1); if training=False "
               "is the worse one, BatchNorm's moving statistics do not fit the data: train longer, normalise the "
               "input, or use larger mixed-class batches.")
    return [Finding("batchnorm-mode-mismatch", severity, message, evidence, fix)]


# --------------------------------------------------------------------------- stability


def check_unstable_predictions(model: Any, x: np.ndarray, ctviewer_model: bool = False, calls: int = 3,
                               tolerance: float = STABILITY_TOLERANCE, n_alone: int = 8,
                               batch_size: int = 16) -> list[Finding]:
    """Repeat calls and alone-vs-batched calls, in inference mode and in training mode.

    Inference mode must give the same numbers every time (error otherwise). Training mode
    (``training=True``, what ``learning_phase=1`` did) varies with Dropout and with the
    batch's statistics; that is reported for a plain model, whose user may call it so.
    """
    if len(x) == 0:
        return []
    sub = x[:batch_size]
    alone_idx = np.arange(min(n_alone, len(sub)))
    results: dict[str, dict[str, float]] = {}
    for training in (False, True):
        with weights_restored(model):
            runs = np.stack([call_probs(model, sub, training, batch_size=len(sub)) for _ in range(calls)])
            alone = np.array([call_probs(model, sub[i:i + 1], training, batch_size=1)[0] for i in alone_idx])
        results[f"training_{str(training).lower()}"] = {
            "max_change_between_calls": float((runs.max(axis=0) - runs.min(axis=0)).max()),
            "max_change_alone_vs_batch": float(np.abs(alone - runs[0][alone_idx]).max()),
        }
    inf, tr = results["training_false"], results["training_true"]
    evidence: dict[str, Any] = {"n_images": len(sub), "calls": calls, "n_alone": len(alone_idx),
                                "tolerance": tolerance, **results}
    unstable_inf = max(inf.values()) > tolerance
    unstable_tr = max(tr.values()) > tolerance
    if unstable_inf:
        return [Finding(
            "unstable-predictions", "error",
            f"In inference mode (training=False) the same image gets probabilities up to "
            f"{max(inf.values()):.3g} apart between calls or between alone and batched: predictions are not "
            "reproducible.",
            evidence,
            "Remove randomness active at inference (custom layers, Lambda dropout, unseeded augmentation) or "
            "make it depend on the training flag.",
        )]
    if unstable_tr and not ctviewer_model:
        worst = max(tr, key=lambda k: tr[k])
        how = "from one call to the next" if worst.startswith("max_change_between") else "alone vs in a batch"
        return [Finding(
            "unstable-predictions", "warning",
            f"Called with training=True (as with learning_phase=1) the same image's probability changes by up to "
            f"{tr[worst]:.2f} {how}; with training=False it is stable (within {max(inf.values()):.1g}).",
            evidence,
            "Predict with model.predict or model(x, training=False); do not set the learning phase to 1.",
        )]
    return []


# --------------------------------------------------------------------------- input scale


def check_unnormalised_input(report: ScaleReport, scale_predictions: dict[str, dict[str, Any]] | None = None
                             ) -> list[Finding]:
    """Raw HU / stored values reaching the first layer without a normalising layer in the model."""
    evidence: dict[str, Any] = {"chosen_scale": report.chosen, "detected_scale": report.detected,
                                "how": report.evidence_kind, "reason": report.reason,
                                "input_ranges": report.ranges, "normalising_layers": report.normalising_layers}
    if report.batchnorm_mismatch:
        evidence["batchnorm_layer"] = report.batchnorm_layer
        evidence["batchnorm_mismatch_score"] = dict(report.batchnorm_mismatch)
    if scale_predictions:
        evidence["predictions_by_scale"] = scale_predictions
    if report.normalising_layers:
        return []
    trained_raw = report.detected in ("hu", "raw")
    if trained_raw:
        rng = report.ranges.get(report.detected, [math.nan, math.nan])
        return [Finding(
            "unnormalised-input", "warning",
            f"The model was trained on {SCALE_WORDS[report.detected]}, here {rng[0]:.0f} to {rng[1]:.0f}, that reach "
            f"its first layer unscaled: {report.reason}.",
            evidence,
            "Map images to [0, 1] with a fixed HU window (or add a Rescaling/Normalization layer first) and retrain; "
            "unscaled values make the first layers' gradients huge and the model sensitive to scanner offsets.",
        )]
    mismatched = report.detected is not None and report.detected != report.chosen
    if report.evidence_kind == "forced" and report.chosen in ("hu", "raw") and mismatched:
        return [Finding(
            "unnormalised-input", "warning",
            f"Images are fed as {SCALE_WORDS[report.chosen]} but the model was trained on "
            f"{SCALE_WORDS[report.detected]}: every prediction is made far outside the range it learnt.",
            evidence,
            "Feed the model images prepared exactly as in training (here: " f"{SCALE_WORDS[report.detected]}).",
        )]
    return []


# --------------------------------------------------------------------------- baseline


def check_baseline(model_probs: np.ndarray, y: np.ndarray, baseline: Any, trained_on_this_data: bool | None = None,
                   validation_auc: float | None = None, margin: float = BASELINE_MARGIN,
                   columns_known: bool = False) -> list[Finding]:
    """Does the histogram baseline's cross-validated AUC match or beat the model's AUC on the data?

    ``columns_known``: the model's output columns are known to be (negative, positive), as for
    a ctviewer model; otherwise an AUC below 0.5 is also worded as possibly swapped columns.
    """
    from ctviewer.core.metrics.evaluation import delong_auc

    y = np.asarray(y)
    if not set(y.tolist()) >= {0, 1} or baseline is None or math.isnan(baseline.auc):
        return []
    est = delong_auc(y, np.asarray(model_probs))
    if est.auc >= baseline.auc + margin:
        return []
    evidence: dict[str, Any] = {
        "model_auc": est.auc, "model_auc_ci": est.ci.to_list(), "baseline_auc": baseline.auc,
        "baseline_auc_ci": baseline.auc_ci.to_list(), "baseline_accuracy": baseline.accuracy,
        "baseline": f"logistic regression on HU histograms, patient-grouped {baseline.k}-fold CV (out-of-fold)",
        "n_images": int(y.size), "margin": margin,
    }
    if trained_on_this_data is not None:
        evidence["model_trained_on_this_data"] = trained_on_this_data
    if validation_auc is not None:
        evidence["model_validation_auc"] = validation_auc
    caveat = " on images it was (mostly) trained on" if trained_on_this_data else ""
    inverted = " (below 0.5: are the class columns swapped?)" if est.auc < 0.5 and not columns_known else ""
    verdict = ("the model does worse than image brightness alone" if est.auc < baseline.auc - 0.1
               else "the model learns no more than image brightness")
    return [Finding(
        "baseline-beats-model", "warning",
        f"A logistic regression on intensity histograms reaches AUC {baseline.auc:.3f} (patient-grouped "
        f"cross-validation) while the model reaches {est.auc:.3f}{caveat}{inverted}: {verdict}.",
        evidence,
        "Use the histogram baseline (or ctviewer's default recipe, which includes it) unless a CNN beats it under "
        "the same patient-grouped cross-validation.",
    )]
