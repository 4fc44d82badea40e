"""Training and cross-validation: patient-grouped splits, tf.data from the cache, events out, cancel in.

`fit` trains one model on a labelled dataset:

1. a patient-grouped, stratified validation hold-out inside the data (never Keras'
   ``validation_split``, unless a config asks to reproduce that mistake);
2. preprocessed arrays from the on-disk cache, fed by ``tf.data`` (streamed from the
   memory-mapped ``.npy`` files when the set is large, stacked in memory when small);
3. class weights, early stopping on ``config.monitor`` with the best weights restored;
4. a Keras callback that sends `ctviewer.core.events` and stops within one batch when
   ``should_stop()`` says so, keeping the best weights of the completed epochs;
5. a decision threshold chosen on the validation predictions (Youden's J by default).

TensorFlow is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import Dataset
from ctviewer.core.data.splits import TRAIN, VALIDATION, Split, keras_tail_split, train_validation_test_split
from ctviewer.core.errors import DatasetError, ModelError
from ctviewer.core.events import EventCallback, Message, StopCheck, emit
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.core.model.config import TrainConfig, preprocessing_of
from ctviewer.core.model.precision import requested_precision
from ctviewer.core.training.control import _make_control_callback
from ctviewer.core.training.pipeline import (
    PreprocessedImages,
    _full_labels,
    _load_images,
    class_weights,
    make_tf_dataset,
)
from ctviewer.core.training.results import TrainedModel, summarize_dataset
from ctviewer.core.training.reuse import CompiledModelPool


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Python, numpy and TensorFlow seeds; deterministic TF kernels where the platform has them."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(seed))
    if deterministic:
        try:
            tf.config.experimental.enable_op_determinism()
        except (AttributeError, RuntimeError):  # pragma: no cover - very old TF
            pass


def _make_split(dataset: Dataset, config: TrainConfig) -> Split:
    if config.keras_validation_split:
        return keras_tail_split(dataset, float(config.keras_validation_split), seed=config.seed)
    if config.validation_fraction and config.validation_fraction > 0:
        return train_validation_test_split(dataset, validation=config.validation_fraction, seed=config.seed)
    return train_validation_test_split(dataset, validation=0.0, seed=config.seed)


def _check_config(config: TrainConfig) -> None:
    from ctviewer.core.data.imaging import parse_window
    from ctviewer.core.model.recipes import MODEL_NAMES

    if str(config.model).strip().lower() not in MODEL_NAMES:
        raise ModelError(f"unknown model {config.model!r}; valid names: {', '.join(MODEL_NAMES)}")
    if config.epochs < 1:
        raise ModelError(f"epochs must be at least 1 (got {config.epochs})")
    if config.batch_size < 1:
        raise ModelError(f"batch size must be at least 1 (got {config.batch_size})")
    if config.input_size < 16:
        raise ModelError(f"input size {config.input_size} is too small; use at least 16 pixels")
    if config.resize not in ("pad", "crop", "stretch"):
        raise ModelError(f"unknown resize mode {config.resize!r}; use 'pad', 'crop' or 'stretch'")
    try:
        parse_window(config.window)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    requested_precision(config)  # an unknown precision (config or environment) fails before any loading


def fit(
    dataset: Dataset,
    config: TrainConfig,
    on_event: EventCallback | None = None,
    should_stop: StopCheck | None = None,
    cache: Cache | None = None,
    strategy: Any = None,
    split: Split | None = None,
    stream: bool | None = None,
    deterministic: bool = True,
    fold: int | None = None,
    models: CompiledModelPool | None = None,
) -> TrainedModel:
    """Train ``config.model`` on a labelled two-class dataset.

    Parameters
    ----------
    dataset
        A `ctviewer.core.data.dataset.Dataset` with two classes and ``positive`` set.
    config
        The recipe (`ctviewer.core.model.recipes.default_config(name)` with overrides).
    on_event
        Receives `Progress` (loading), `BatchEnded`, `EpochEnded`, `Message` events.
    should_stop
        Polled after every batch; when it returns True training stops within that batch
        and the best weights of the completed epochs are kept (``cancelled=True``).
    cache
        Preprocessed-array cache (a default `ctviewer.core.data.cache.Cache()` when None).
    strategy
        A ``tf.distribute`` strategy; the model is built and compiled in its scope.
    split
        Use this train/validation split instead of drawing one from ``config.seed``.
    stream
        Read images from the cache files batch by batch (True), stack them in memory
        (False), or decide by size (None: stream above `IN_MEMORY_LIMIT_BYTES`).
    deterministic
        Ask TensorFlow for deterministic kernels (same seed, same machine, same result).
    fold
        Cross-validation fold number, passed through to `EpochEnded` events.
    models
        Reuse this pool's compiled model (re-initialised for ``config.seed``) instead of
        building and tracing a new one; the returned model then belongs to the pool until
        `CompiledModelPool.detach` copies it out (`cross_validate` does).

    Raises
    ------
    DatasetError
        One class only, too few patients, unlabelled or unreadable images.
    ModelError
        Unknown model name or an impossible configuration.
    Cancelled
        ``should_stop()`` became true while the images were still loading.
    """
    started = time.perf_counter()
    _check_config(config)
    dataset.require_binary()
    classes = (str(dataset.negative), str(dataset.positive))
    split = split if split is not None else _make_split(dataset, config)
    if split.paths != tuple(dataset.paths):
        raise DatasetError("the given split was drawn from a different dataset (paths differ)")
    train_idx, val_idx = split.indices(TRAIN), split.indices(VALIDATION)
    y = _full_labels(dataset)
    notes: list[str] = []
    if config.keras_validation_split:
        notes.append(f"validation = last {config.keras_validation_split:.0%} of the data in folder order "
                     "(Keras validation_split), as asked: not shuffled, not grouped by patient")
    if len(val_idx) and len(set(y[val_idx].tolist())) < 2:
        notes.append("the validation set holds one class only: its AUC and threshold mean nothing")
    for note in notes:
        emit(on_event, Message(note, "warning"))

    cache = cache if cache is not None else Cache()
    prep = preprocessing_of(config)
    images = _load_images(dataset, prep, cache, on_event, should_stop, stream)

    import tensorflow as tf

    from ctviewer.core.model.recipes import build_model, compile_model, with_resolved_precision

    config = with_resolved_precision(config)  # "auto" becomes what runs, and the card records that
    seed_everything(config.seed, deterministic)
    if config.model == "texture":
        trained = _fit_texture(dataset, config, split, images, on_event, should_stop, fold, classes, notes)
        trained.seconds = time.perf_counter() - started
        return trained
    strategy = strategy if strategy is not None else tf.distribute.get_strategy()
    weights = class_weights(y[train_idx]) if config.class_weight else None
    train_ds = make_tf_dataset(images, train_idx, y, config.batch_size, shuffle=config.shuffle_training_data,
                               seed=config.seed, weights=weights)
    val_ds = make_tf_dataset(images, val_idx, y, config.batch_size) if len(val_idx) else None
    monitor = config.monitor if val_ds is not None else config.monitor.removeprefix("val_")
    batches = math.ceil(len(train_idx) / config.batch_size)
    if models is not None:
        model = models.model_for(config, batches, strategy)
    else:
        with strategy.scope():
            model = build_model(config)
            compile_model(model, config, steps_per_epoch=batches)
    control = _make_control_callback(config.epochs, batches, config, monitor, on_event, should_stop, fold)
    # shuffle=False: the tf.data pipeline already shuffles (seeded), Keras must not try.
    model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=[control], verbose=0, shuffle=False)

    trained = TrainedModel(
        model=model, config=config, threshold=0.5, history=control.history, split=split, classes=classes,
        dataset=summarize_dataset(dataset), best_epoch=control.best_epoch, epochs_run=control.epochs_run,
        cancelled=control.cancelled, notes=notes,
    )
    _finish(trained, dataset, images, val_idx, on_event, started)
    return trained


def _finish(trained: TrainedModel, dataset: Dataset, images: PreprocessedImages, val_idx: np.ndarray,
            on_event: EventCallback | None, started: float) -> None:
    if len(val_idx):
        _choose_threshold_on_validation(trained, dataset.subset(val_idx.tolist()), images, val_idx, on_event)
    else:
        trained.notes.append("no validation set: no early stopping on held-out data, threshold left at 0.5")
    trained.seconds = time.perf_counter() - started


def _rows(images: PreprocessedImages, idx: np.ndarray) -> np.ndarray:
    """The preprocessed images ``idx``, from the stack or the cache files (a chunk, never the whole set)."""
    if images.stacked is not None:
        return images.stacked[idx]
    return np.stack([np.load(images.files[i], mmap_mode="r") for i in idx]) if len(idx) else np.zeros((0, 1, 1))


def _fit_texture(dataset: Dataset, config: TrainConfig, split: Split, images: PreprocessedImages,
                 on_event: EventCallback | None, should_stop: StopCheck | None, fold: int | None,
                 classes: tuple[str, str], notes: list[str]) -> TrainedModel:
    """The texture recipe: frozen random features, one logistic read-out (no epochs, no optimiser).

    The read-out learns from the training and validation rows alike; its strength and the
    threshold come from patient-grouped inner cross-validation on them (nothing to early-stop).
    """
    from sklearn.metrics import log_loss, roc_auc_score

    from ctviewer.core.errors import Cancelled
    from ctviewer.core.events import BatchEnded, EpochEnded
    from ctviewer.core.model.recipes import build_model
    from ctviewer.core.model.texture import extract_features, fit_readout

    model = build_model(config)
    y = _full_labels(dataset)
    rows = np.concatenate([split.indices(TRAIN), split.indices(VALIDATION)])
    chunk = 4 * max(1, config.batch_size)
    parts = []
    for number, start in enumerate(range(0, len(rows), chunk)):
        if should_stop is not None and should_stop():
            raise Cancelled("training cancelled while the texture features were computed")
        parts.append(extract_features(model, _rows(images, rows[start : start + chunk]), config.batch_size))
        emit(on_event, BatchEnded(number, math.ceil(len(rows) / chunk), 0, epochs=1))
    features = np.concatenate(parts)
    labels = y[rows]
    readout = fit_readout(model, features, labels, dataset.patients[rows], balanced=config.class_weight,
                          seed=config.seed)
    p = np.asarray(model.get_layer("probabilities")(features.astype(np.float32)))[:, 1]
    logs = {"loss": float(log_loss(labels, p, labels=[0, 1])), "auc": float(roc_auc_score(labels, p))}
    inner = readout.inner_probabilities
    if inner is not None and np.isfinite(inner).all():
        # The inner out-of-fold predictions stand in for a validation set: honest AUC and loss.
        logs["val_loss"] = float(log_loss(labels, np.clip(inner, 1e-7, 1 - 1e-7), labels=[0, 1]))
        logs["val_auc"] = float(roc_auc_score(labels, inner))
    emit(on_event, EpochEnded(0, 1, logs, fold))
    notes.append(f"texture read-out: L2 strength C={readout.strength:g} chosen by {readout.inner_folds}-fold "
                 f"patient-grouped inner cross-validation (AUC per C: "
                 f"{', '.join(f'{c:g}: {a:.3f}' for c, a in readout.inner_auc.items()) or 'too few patients'})")
    trained = TrainedModel(
        model=model, config=config, threshold=0.5, history={k: [v] for k, v in logs.items()}, split=split,
        classes=classes, dataset=summarize_dataset(dataset), best_epoch=0, epochs_run=1, notes=notes,
    )
    if "val_auc" in logs:
        trained.threshold = _threshold_by_rule(trained, labels, inner, "to the inner folds", on_event)
    else:
        notes.append("too few patients for inner folds: read-out strength fixed, threshold left at 0.5")
    return trained


def _threshold_by_rule(trained: TrainedModel, y: np.ndarray, probs: np.ndarray, where: str,
                       on_event: EventCallback | None) -> float:
    """The threshold ``trained.config``'s rule picks on (y, probs); 0.5 with a warning when it cannot."""
    from ctviewer.core.metrics.evaluation import choose_threshold

    config = trained.config
    try:
        if config.threshold_rule == "fixed":
            return 0.5 if config.threshold_target is None else float(config.threshold_target)
        return float(choose_threshold(y, probs, config.threshold_rule, config.threshold_target))  # type: ignore[arg-type]
    except ValueError as exc:
        note = f"threshold left at 0.5: cannot apply rule {config.threshold_rule!r} {where} ({exc})"
        trained.notes.append(note)
        emit(on_event, Message(note, "warning"))
        return 0.5


def _choose_threshold_on_validation(trained: TrainedModel, val_dataset: Dataset, images: PreprocessedImages,
                                    val_idx: np.ndarray, on_event: EventCallback | None) -> None:
    from ctviewer.core.metrics.evaluation import metrics_from_predictions
    from ctviewer.core.model.inference import predict_arrays

    batch_size = max(1, trained.config.batch_size)
    chunks = []
    # Chunk by chunk, so a streamed (larger than memory) validation set is never stacked whole.
    for start in range(0, len(val_idx), 16 * batch_size):
        part = val_idx[start : start + 16 * batch_size]
        chunks.append(predict_arrays(trained.model, _rows(images, part), batch_size=batch_size, tta=trained.config.tta))
    probs = np.concatenate(chunks)
    pred = Predictions(
        paths=val_dataset.paths, probs=probs, threshold=0.5, classes=trained.classes,
        labels=[it.label for it in val_dataset.items], patients=[it.patient for it in val_dataset.items],
        series=[it.series for it in val_dataset.items],
    )
    threshold = _threshold_by_rule(trained, pred.y_true, probs, "on the validation set", on_event)
    pred.threshold = float(threshold)
    trained.threshold = float(threshold)
    trained.validation_predictions = pred
    try:
        trained.validation_metrics = metrics_from_predictions(pred)
    except ValueError:
        trained.validation_metrics = None

