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

`cross_validate` runs `fit` on each fold of a patient-grouped stratified k-fold and
collects out-of-fold predictions for every image.

TensorFlow is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ctviewer.core.cache import Cache
from ctviewer.core.config import TrainConfig
from ctviewer.core.dataset import Dataset
from ctviewer.core.errors import Cancelled, DatasetError, ImageReadError, ModelError
from ctviewer.core.events import (
    BatchEnded,
    EpochEnded,
    EventCallback,
    FoldStarted,
    Message,
    Progress,
    StopCheck,
    emit,
    stop_requested,
)
from ctviewer.core.imaging import Preprocessing
from ctviewer.core.predictions import Predictions
from ctviewer.core.splits import TRAIN, VALIDATION, Folds, Split, keras_tail_split, kfold, train_validation_test_split

# Above this many bytes of preprocessed images, training streams them from disk.
IN_MEMORY_LIMIT_BYTES = 512 * 1024 * 1024


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class DatasetSummary:
    """What a model was trained on, for its model card."""

    source: str
    n_images: int
    n_patients: int
    class_counts: dict[str, int]
    positive: str
    negative: str
    content_hash: str  # hash of the sorted per-file content hashes

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "n_images": self.n_images, "n_patients": self.n_patients,
            "class_counts": dict(self.class_counts), "positive": self.positive, "negative": self.negative,
            "content_hash": self.content_hash,
        }


def dataset_content_hash(dataset: Dataset) -> str:
    """Order-independent hash of the dataset's files (sorted per-file content hashes)."""
    h = hashlib.blake2b(digest_size=16)
    for chash in sorted(item.content_hash for item in dataset.items):
        h.update(chash.encode())
        h.update(b"\n")
    return h.hexdigest()


def summarize_dataset(dataset: Dataset) -> DatasetSummary:
    return DatasetSummary(
        source=str(dataset.source), n_images=len(dataset), n_patients=len(set(dataset.patients.tolist())),
        class_counts=dataset.class_counts(), positive=str(dataset.positive), negative=str(dataset.negative),
        content_hash=dataset_content_hash(dataset),
    )


@dataclass
class TrainedModel:
    """A trained model and everything needed to use, save and question it."""

    model: Any  # keras.Model
    config: TrainConfig
    threshold: float
    history: dict[str, list[float]]
    split: Split
    classes: tuple[str, str]  # (negative, positive)
    dataset: DatasetSummary
    validation_predictions: Predictions | None = None
    validation_metrics: Any = None  # ctviewer.core.evaluation.Metrics
    best_epoch: int | None = None  # 0-based; None when no epoch completed
    epochs_run: int = 0
    cancelled: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def positive(self) -> str:
        return self.classes[1]

    @property
    def preprocessing(self) -> Preprocessing:
        return preprocessing_of(self.config)

    @property
    def threshold_rule(self) -> str:
        return self.config.threshold_rule

    @property
    def model_id(self) -> str:
        return weights_id(self.model)


def preprocessing_of(config: TrainConfig) -> Preprocessing:
    return Preprocessing(window=config.window, size=int(config.input_size), resize=config.resize)


def weights_id(model: Any) -> str:
    """Short hash of a model's weights (and weight shapes): equal weights, equal id."""
    h = hashlib.blake2b(digest_size=6)
    for w in model.get_weights():
        arr = np.ascontiguousarray(w)
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- data


@dataclass
class PreprocessedImages:
    """Preprocessed images of a dataset, as `make_tf_dataset` reads them.

    Attributes
    ----------
    files : list of str
        One ``.npy`` file per image (the cache's arrays), read memory-mapped when streaming;
        may be empty when ``stacked`` is given.
    stacked : numpy.ndarray or None
        All images as one ``(n, size, size)`` float32 array, or None to stream from ``files``.
    size : int
        Side of the square images in pixels.
    """

    files: list[str]
    stacked: np.ndarray | None
    size: int
    tensor: Any = None  # ``stacked`` as one TF tensor, made once and shared by the train/validation pipelines

    def as_tensor(self) -> Any:
        import tensorflow as tf

        if self.tensor is None:
            self.tensor = tf.constant(self.stacked)
        return self.tensor


def _load_images(dataset: Dataset, prep: Preprocessing, cache: Cache, on_event: EventCallback | None,
                 should_stop: StopCheck | None, stream: bool | None) -> PreprocessedImages:
    """Preprocess every image into the cache once (so epochs only read), then stack if small."""
    n = len(dataset)
    nbytes = n * prep.size * prep.size * 4
    if stream is None:
        stream = nbytes > IN_MEMORY_LIMIT_BYTES
    has_files = hasattr(cache, "array_path") and hasattr(cache, "arrays_dir")
    stream = stream and has_files
    files: list[str] = []
    stacked = None if stream else np.empty((n, prep.size, prep.size), dtype=np.float32)
    for i, item in enumerate(dataset.items):
        if stop_requested(should_stop):
            raise Cancelled("loading cancelled")
        try:
            arr = cache.array(item.path, prep)
        except ImageReadError as exc:
            raise DatasetError(f"{exc.path}: {exc.reason}") from None
        if stacked is not None:
            stacked[i] = arr
        if has_files:
            files.append(str(cache.array_path(cache.inspect(item.path).content_hash, prep)))
        emit(on_event, Progress(i + 1, n, "loading images"))
    return PreprocessedImages(files=files, stacked=stacked, size=prep.size)


def class_weights(y: np.ndarray) -> dict[int, float]:
    """n / (2 n_c): each class contributes equally to the loss."""
    counts = np.bincount(y, minlength=2).astype(np.float64)
    return {c: (len(y) / (2.0 * counts[c]) if counts[c] else 0.0) for c in (0, 1)}


def make_tf_dataset(images: PreprocessedImages, indices: np.ndarray, y: np.ndarray, batch_size: int,
                    shuffle: bool = False, seed: int = 0, weights: dict[int, float] | None = None) -> Any:
    """A ``tf.data.Dataset`` of ``(x, y[, w])`` batches over ``indices``.

    Shuffling permutes indices only (the same order for the in-memory and streamed paths);
    streamed images are read from their memory-mapped cache files by a ``numpy_function``,
    so only the batches in flight are in memory.
    """
    import tensorflow as tf

    idx = tf.data.Dataset.from_tensor_slices(np.asarray(indices, dtype=np.int64))
    if shuffle:
        idx = idx.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
    labels = tf.constant(np.asarray(y, dtype=np.int32))
    size = images.size
    if images.stacked is not None:
        pixels = images.as_tensor()

        def image_of(i: Any) -> Any:
            return tf.gather(pixels, i)[..., None]
    else:
        files = list(images.files)

        def read(i: np.ndarray) -> np.ndarray:
            return np.asarray(np.load(files[int(i)], mmap_mode="r"), dtype=np.float32)[..., None]

        def image_of(i: Any) -> Any:
            x = tf.numpy_function(read, [i], tf.float32, stateful=False)
            x.set_shape((size, size, 1))
            return x

    if weights is not None:
        wtable = tf.constant([weights[0], weights[1]], dtype=tf.float32)
        ds = idx.map(lambda i: (image_of(i), tf.gather(labels, i), tf.gather(wtable, tf.gather(labels, i))),
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = idx.map(lambda i: (image_of(i), tf.gather(labels, i)), num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True)
    return ds.batch(batch_size).prefetch(2)


def _full_labels(dataset: Dataset) -> np.ndarray:
    return dataset.y.astype(np.int32)


# --------------------------------------------------------------------------- callback


def _monitor_mode(monitor: str) -> str:
    return "max" if any(k in monitor for k in ("auc", "acc")) else "min"


def _make_control_callback(epochs: int, batches: int, config: TrainConfig, monitor: str,
                           on_event: EventCallback | None, should_stop: StopCheck | None,
                           fold: int | None) -> Any:
    import keras

    class TrainingControl(keras.callbacks.Callback):
        """Events out, cancel in, early stopping and best weights in one place.

        A cancel stops training after the current batch. The interrupted epoch's numbers
        cover part of an epoch (and part of the validation set, which is cut short too),
        so that epoch is left out of the history and of the best-weights choice.
        """

        def on_train_begin(self, logs: Any = None) -> None:
            self.history: dict[str, list[float]] = {}
            self.best: float | None = None
            self.best_epoch: int | None = None
            self.best_weights: list[np.ndarray] | None = None
            self.wait = 0
            self.cancelled = False
            self.epochs_run = 0
            self.epoch = 0
            self.sign = 1.0 if _monitor_mode(monitor) == "max" else -1.0

        def _check_cancel(self) -> None:
            if not self.cancelled and stop_requested(should_stop):
                self.cancelled = True
                self.model.stop_training = True

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch = epoch
            self._check_cancel()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            emit(on_event, BatchEnded(batch, batches, self.epoch, _floats(logs)))
            self._check_cancel()

        def on_test_batch_end(self, batch: int, logs: Any = None) -> None:
            self._check_cancel()
            if self.cancelled:
                self.model.stop_evaluating = True

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if self.cancelled:
                emit(on_event, Message(f"stopped during epoch {epoch + 1}; keeping the best completed epoch"))
                return
            logs = _floats(logs)
            self.epochs_run = epoch + 1
            for key, value in logs.items():
                self.history.setdefault(key, []).append(value)
            emit(on_event, EpochEnded(epoch, epochs, logs, fold))
            value = logs.get(monitor)
            if value is not None and math.isfinite(value) and (self.best is None or self.sign * (value - self.best) > 0):
                self.best, self.best_epoch, self.wait = value, epoch, 0
                if config.restore_best:
                    self.best_weights = [np.array(w, copy=True) for w in self.model.get_weights()]
            else:
                self.wait += 1
                if self.wait >= config.patience:
                    emit(on_event, Message(
                        f"early stopping after epoch {epoch + 1}: {monitor} did not improve for {self.wait} epochs"))
                    self.model.stop_training = True

        def on_train_end(self, logs: Any = None) -> None:
            if config.restore_best and self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return TrainingControl()


def _floats(logs: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (logs or {}).items():
        try:
            out[str(key)] = float(np.asarray(value))
        except (TypeError, ValueError):
            continue
    return out


# --------------------------------------------------------------------------- fit


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
    from ctviewer.core.imaging import parse_window
    from ctviewer.core.models import MODEL_NAMES

    if str(config.model).strip().lower() not in MODEL_NAMES:
        raise ModelError(f"unknown model {config.model!r}; valid names: {', '.join(MODEL_NAMES)}")
    if config.epochs < 1:
        raise ModelError(f"epochs must be at least 1 (got {config.epochs})")
    if config.batch_size < 1:
        raise ModelError(f"batch size must be at least 1 (got {config.batch_size})")
    if config.input_size < 16:
        raise ModelError(f"input size {config.input_size} is too small; use at least 16 pixels")
    if config.resize not in ("pad", "crop"):
        raise ModelError(f"unknown resize mode {config.resize!r}; use 'pad' or 'crop'")
    try:
        parse_window(config.window)
    except ValueError as exc:
        raise ModelError(str(exc)) from None


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
) -> TrainedModel:
    """Train ``config.model`` on a labelled two-class dataset.

    Parameters
    ----------
    dataset
        A `ctviewer.core.dataset.Dataset` with two classes and ``positive`` set.
    config
        The recipe (`ctviewer.core.models.default_config(name)` with overrides).
    on_event
        Receives `Progress` (loading), `BatchEnded`, `EpochEnded`, `Message` events.
    should_stop
        Polled after every batch; when it returns True training stops within that batch
        and the best weights of the completed epochs are kept (``cancelled=True``).
    cache
        Preprocessed-array cache (a default `ctviewer.core.cache.Cache()` when None).
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

    from ctviewer.core.models import build_model, compile_model

    seed_everything(config.seed, deterministic)
    strategy = strategy if strategy is not None else tf.distribute.get_strategy()
    weights = class_weights(y[train_idx]) if config.class_weight else None
    train_ds = make_tf_dataset(images, train_idx, y, config.batch_size, shuffle=config.shuffle_training_data,
                               seed=config.seed, weights=weights)
    val_ds = make_tf_dataset(images, val_idx, y, config.batch_size) if len(val_idx) else None
    monitor = config.monitor if val_ds is not None else config.monitor.removeprefix("val_")
    batches = math.ceil(len(train_idx) / config.batch_size)
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
    if len(val_idx):
        _choose_threshold_on_validation(trained, dataset.subset(val_idx.tolist()), images, val_idx, on_event)
    else:
        trained.notes.append("no validation set: no early stopping on held-out data, threshold left at 0.5")
    trained.seconds = time.perf_counter() - started
    return trained


def _choose_threshold_on_validation(trained: TrainedModel, val_dataset: Dataset, images: PreprocessedImages,
                                    val_idx: np.ndarray, on_event: EventCallback | None) -> None:
    from ctviewer.core.evaluation import choose_threshold, metrics_from_predictions
    from ctviewer.core.inference import predict_arrays

    batch_size = max(1, trained.config.batch_size)
    chunks = []
    # Chunk by chunk, so a streamed (larger than memory) validation set is never stacked whole.
    for start in range(0, len(val_idx), 16 * batch_size):
        part = val_idx[start : start + 16 * batch_size]
        x = images.stacked[part] if images.stacked is not None else np.stack(
            [np.load(images.files[i], mmap_mode="r") for i in part])
        chunks.append(predict_arrays(trained.model, x, batch_size=batch_size, tta=trained.config.tta))
    probs = np.concatenate(chunks)
    pred = Predictions(
        paths=val_dataset.paths, probs=probs, threshold=0.5, classes=trained.classes,
        labels=[it.label for it in val_dataset.items], patients=[it.patient for it in val_dataset.items],
    )
    config = trained.config
    y = pred.y_true
    try:
        if config.threshold_rule == "fixed":
            threshold = 0.5 if config.threshold_target is None else float(config.threshold_target)
        else:
            threshold = choose_threshold(y, probs, config.threshold_rule, config.threshold_target)  # type: ignore[arg-type]
    except ValueError as exc:
        threshold = 0.5
        note = f"threshold left at 0.5: cannot apply rule {config.threshold_rule!r} on the validation set ({exc})"
        trained.notes.append(note)
        emit(on_event, Message(note, "warning"))
    pred.threshold = float(threshold)
    trained.threshold = float(threshold)
    trained.validation_predictions = pred
    try:
        trained.validation_metrics = metrics_from_predictions(pred)
    except ValueError:
        trained.validation_metrics = None


# --------------------------------------------------------------------------- cross-validation


@dataclass
class CVResult:
    """Out-of-fold predictions for every image, pooled metrics and per-fold details."""

    predictions: Predictions  # out of fold; ``folds`` and per-fold ``row_thresholds`` set
    metrics: Any  # ctviewer.core.evaluation.Metrics, pooled over all images
    folds: Folds
    fold_thresholds: list[float]
    fold_metrics: list[Any]
    histories: list[dict[str, list[float]]]
    config: TrainConfig
    dataset: DatasetSummary
    models: list[TrainedModel] = field(default_factory=list)
    ensemble: Any = None  # an `Ensemble` when keep_models / config.ensemble
    seconds: float = 0.0
    cancelled: bool = False

    def to_json_extra(self) -> dict[str, Any]:
        """What metrics.json holds besides the pooled metrics."""
        return {
            "folds": self.folds.k,
            "seed": self.folds.seed,
            "model": self.config.model,
            "fold_thresholds": list(self.fold_thresholds),
            "threshold_rule": self.config.threshold_rule,
            "fold_metrics": [
                {"fold": i, **({k: m.to_json_dict()[k] for k in ("n", "auc", "accuracy", "sensitivity",
                                                                      "specificity", "threshold")} if m else {})}
                for i, m in enumerate(self.fold_metrics)
            ],
            "dataset": self.dataset.to_json_dict(),
            "config": self.config.to_dict(),
            "seconds": round(self.seconds, 1),
        }


def cross_validate(
    dataset: Dataset,
    config: TrainConfig,
    folds: int = 5,
    on_event: EventCallback | None = None,
    should_stop: StopCheck | None = None,
    keep_models: bool = False,
    cache: Cache | None = None,
    strategy: Any = None,
    stream: bool | None = None,
) -> CVResult:
    """Patient-grouped stratified k-fold: train on k-1 folds, predict the held-out one.

    Each fold's model gets its own grouped validation hold-out inside its training part
    (early stopping and threshold), so no test image influences its own prediction. Each
    image is called at its own fold's threshold (``row_thresholds``), and the pooled metrics
    count those calls; ``threshold`` is the median of the k fold thresholds (the operating
    point of the ensemble). Per-fold thresholds and metrics are in the result.

    Raises
    ------
    DatasetError
        Fewer than ``folds`` patients in a class, one class only, etc.
    Cancelled
        ``should_stop()`` became true; the folds finished so far are discarded.
    """
    from ctviewer.core.cache import Cache
    from ctviewer.core.evaluation import compute_metrics, metrics_from_predictions
    from ctviewer.core.inference import predict

    started = time.perf_counter()
    _check_config(config)
    dataset.require_binary()
    assignment = kfold(dataset, folds, seed=config.seed)
    cache = cache if cache is not None else Cache()
    probs = np.full(len(dataset), np.nan)
    thresholds: list[float] = []
    fold_metrics: list[Any] = []
    histories: list[dict[str, list[float]]] = []
    kept: list[TrainedModel] = []
    y = dataset.y
    for k in range(folds):
        if stop_requested(should_stop):
            raise Cancelled(f"cross-validation cancelled before fold {k + 1}")
        emit(on_event, FoldStarted(k, folds))
        train_idx, test_idx = assignment.train_indices(k), assignment.test_indices(k)
        trained = fit(dataset.subset(train_idx.tolist()), replace(config, seed=config.seed + k), on_event,
                      should_stop, cache=cache, strategy=strategy, stream=stream, fold=k)
        if trained.cancelled:
            raise Cancelled(f"cross-validation cancelled during fold {k + 1}")
        fold_pred = predict(trained, dataset.subset(test_idx.tolist()),
                            batch_size=config.batch_size, cache=cache)
        probs[test_idx] = fold_pred.probs
        thresholds.append(trained.threshold)
        histories.append(trained.history)
        try:
            fold_metrics.append(compute_metrics(y[test_idx], fold_pred.probs, trained.threshold, trained.classes))
        except ValueError:
            fold_metrics.append(None)
        if keep_models or config.ensemble:
            kept.append(trained)
        else:
            del trained
    classes = (str(dataset.negative), str(dataset.positive))
    pooled_threshold = float(np.median(thresholds))
    fold_of = np.asarray(assignment.fold_of, dtype=np.int64)
    oof = Predictions(
        paths=dataset.paths, probs=probs, threshold=pooled_threshold, classes=classes,
        labels=[it.label for it in dataset.items], patients=[it.patient for it in dataset.items],
        studies=[it.study for it in dataset.items], series=[it.series for it in dataset.items],
        folds=fold_of, model_id=f"cv{folds}-{config.model}",
        row_thresholds=np.asarray(thresholds, dtype=np.float64)[fold_of],
    )
    result = CVResult(
        predictions=oof, metrics=metrics_from_predictions(oof), folds=assignment, fold_thresholds=thresholds,
        fold_metrics=fold_metrics, histories=histories, config=config, dataset=summarize_dataset(dataset),
        models=kept,
    )
    if kept:
        from ctviewer.core.bundle import Ensemble

        result.ensemble = Ensemble.from_trained(kept, threshold=pooled_threshold)
    result.seconds = time.perf_counter() - started
    return result
