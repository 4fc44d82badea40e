"""Prediction that gives the same answer for the same image, every time.

The original question's model printed a different probability for the same image
depending on what else was in the batch: BatchNorm was running in training mode at
prediction time. Here every forward pass for prediction is ``predict_on_batch`` (Keras
calls the model with ``training=False``), so BatchNorm uses its moving averages, Dropout
and the augmentation layers are off, and each image is computed on its own. Batches are
padded to one fixed shape, so an image gives bit-identical output alone or in any batch
of the same ``batch_size``.

Import is cheap: TensorFlow/Keras load on the first prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import Dataset
from ctviewer.core.data.imaging import Preprocessing
from ctviewer.core.errors import Cancelled, ModelError
from ctviewer.core.events import EventCallback, Message, Progress, StopCheck, emit, stop_requested
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.core.model.members import spread_model
from ctviewer.core.model.predictor import DEFAULT_CLASSES, Predictor, as_predictor, input_size

if TYPE_CHECKING:
    import keras


def predictor_for(model: Predictor | keras.Model, data: Any, preprocessing: Preprocessing | None = None) -> Predictor:
    """The boundary: ``model`` as a `Predictor` (`as_predictor`); past it, prediction sees Predictors only.

    A bare ``keras.Model`` has no card: it calls its two outputs by the dataset's class names
    (generic ones for arrays), and reads images with ``preprocessing`` or the default one.
    """
    classes = DEFAULT_CLASSES
    if isinstance(data, Dataset):
        classes = (data.negative or DEFAULT_CLASSES[0], data.positive or DEFAULT_CLASSES[1])
    return as_predictor(model, preprocessing, classes)


# --------------------------------------------------------------------------- arrays


def _as_batchable(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] != 1:
        raise ValueError(f"expected images shaped (N, H, W) or (N, H, W, 1), got {x.shape}")
    return x


def tta_views(x: np.ndarray) -> list[np.ndarray]:
    """The test-time augmentation views of a (N, H, W, 1) batch: itself and its left-right mirror.

    Only a mirror: the training augmentation of every recipe includes horizontal flips, and
    a flip needs no interpolation, so TTA stays exactly reproducible.
    """
    return [x, x[:, :, ::-1, :]]


def _positive_column(out: Any) -> np.ndarray:
    out = np.asarray(out)
    if out.ndim != 2 or out.shape[1] != 2:
        raise ModelError(f"model output shape {out.shape} is not (N, 2) softmax: not a ctviewer model")
    return out[:, 1].astype(np.float64)


def predict_arrays(model: Any, x: np.ndarray, batch_size: int = 32, tta: bool = False,
                   should_stop: StopCheck | None = None,
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Positive-class probabilities (N,) for preprocessed images (N, S, S[, 1]) in [0, 1].

    Every batch is padded to ``batch_size`` rows, so the model always sees one input shape
    (one compiled function, and the same arithmetic for an image wherever it sits).
    """
    return predict_arrays_with_spread(model, x, batch_size, tta, should_stop, progress)[0]


def predict_arrays_with_spread(model: Any, x: np.ndarray, batch_size: int = 32, tta: bool = False,
                               should_stop: StopCheck | None = None,
                               progress: Callable[[int, int], None] | None = None,
                               ) -> tuple[np.ndarray, np.ndarray | None]:
    """`predict_arrays`, plus the standard deviation of a fold ensemble's members (None otherwise)."""
    x = _as_batchable(x)
    n = x.shape[0]
    probs = np.empty(n, dtype=np.float64)
    spread = np.empty(n, dtype=np.float64) if spread_model(model) is not None else None
    for start in range(0, n, batch_size):
        if stop_requested(should_stop):
            raise Cancelled("prediction cancelled")
        stop = min(start + batch_size, n)
        batch_probs, batch_spread = _predict_batch(model, x[start:stop], batch_size, tta)
        probs[start:stop] = batch_probs
        if spread is not None and batch_spread is not None:
            spread[start:stop] = batch_spread
        if progress:
            progress(stop, n)
    return probs, spread


def _predict_batch(model: Any, batch: np.ndarray, batch_size: int, tta: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean probability of the views of each image, and the spread of the members' (view-averaged) ones."""
    m = batch.shape[0]
    views = tta_views(batch) if tta else [batch]
    with_members = spread_model(model)
    total = np.zeros(m, dtype=np.float64)
    member_total: np.ndarray | None = None
    for view in views:
        padded = np.zeros((batch_size,) + view.shape[1:], dtype=np.float32)
        padded[:m] = view
        if with_members is None:
            total += _positive_column(model.predict_on_batch(padded))[:m]
            continue
        mean, members = with_members.predict_on_batch(padded)
        total += _positive_column(mean)[:m]
        members = np.asarray(members, dtype=np.float64)[:m]
        member_total = members if member_total is None else member_total + members
    spread = None if member_total is None else np.std(member_total / len(views), axis=1)
    return total / len(views), spread


# --------------------------------------------------------------------------- datasets


def predict(
    model_or_bundle: Predictor | keras.Model,
    data: Any,
    tta: bool | None = None,
    batch_size: int = 32,
    cache: Cache | None = None,
    on_event: EventCallback | None = None,
    should_stop: StopCheck | None = None,
    preprocessing: Preprocessing | None = None,
) -> Predictions:
    """Predict every image of a dataset (labelled or not) or an array of preprocessed images.

    Parameters
    ----------
    model_or_bundle
        A loaded bundle (`ctviewer.core.model.bundle.Bundle`), a `TrainedModel`, an ensemble,
        or a bare ``keras.Model`` (wrapped by `predictor_for`: ``preprocessing`` defaults to
        the "wide" window, the model's input size and padding).
    data
        A `ctviewer.core.data.dataset.Dataset`, or preprocessed images (N, S, S[, 1]).
    tta
        Average the image and its mirror (see `tta_views`); None: as the model's recipe
        says (`Predictor.tta`: ``TrainConfig.tta``, stored in the bundle's card).
    batch_size
        Images per forward pass; memory stays bounded by it (images stream from the cache).
    cache
        Preprocessed-array cache (`ctviewer.core.data.cache.Cache()` by default).
    on_event, should_stop
        ``Progress(done, total, "predicting")`` events; cancel between batches (raises Cancelled).

    Returns
    -------
    Predictions
        One row per image, in dataset order; ``threshold``, ``classes`` and ``model_id``
        from the bundle (0.5 and generic names for a bare model).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1 (got {batch_size})")
    predictor = predictor_for(model_or_bundle, data, preprocessing)
    prep = preprocessing or predictor.preprocessing
    tta = predictor.tta if tta is None else bool(tta)
    size = input_size(predictor.model)
    if size != prep.size:
        raise ModelError(f"model input is {size} px but the preprocessing makes {prep.size} px images")

    def report(done: int, total: int) -> None:
        emit(on_event, Progress(done, total, "predicting"))

    if isinstance(data, np.ndarray):
        x = _as_batchable(data)
        if x.shape[1:3] != (size, size):
            raise ModelError(f"images are {x.shape[1]}x{x.shape[2]} px but the model expects {size}x{size}")
        probs, spread = predict_arrays_with_spread(predictor.model, x, batch_size, tta, should_stop, report)
        return Predictions(paths=[f"array[{i}]" for i in range(len(x))], probs=probs,
                           threshold=float(predictor.threshold), classes=tuple(predictor.classes),
                           model_id=predictor.model_id, uncertainty=spread)
    pred = _predict_dataset(predictor, data, prep, tta, batch_size, cache, on_event, should_stop, report)
    from ctviewer.core.model.provenance import training_image_marks

    pred.in_training = training_image_marks(predictor, data)
    return pred


def _predict_dataset(predictor: Predictor, dataset: Dataset, prep: Preprocessing, tta: bool, batch_size: int,
                     cache: Cache | None, on_event: EventCallback | None, should_stop: StopCheck | None,
                     report: Callable[[int, int], None]) -> Predictions:
    cache = cache if cache is not None else Cache()
    model, classes = predictor.model, tuple(predictor.classes)
    foreign = sorted({it.label for it in dataset.items if it.label is not None} - set(classes))
    if foreign:
        emit(on_event, Message(
            f"labels {', '.join(foreign)} are not the model's classes ({classes[0]}, {classes[1]}): "
            f"counted as {classes[0]} in the metrics", "warning"))
    n = len(dataset)
    probs = np.empty(n, dtype=np.float64)
    spread = np.empty(n, dtype=np.float64) if spread_model(model) is not None else None
    # Stream: only one batch of preprocessed images is in memory at a time.
    for start in range(0, n, batch_size):
        if stop_requested(should_stop):
            raise Cancelled("prediction cancelled")
        items = dataset.items[start : start + batch_size]
        batch = np.stack([np.asarray(cache.array(it.path, prep), dtype=np.float32) for it in items])[..., None]
        batch_probs, batch_spread = _predict_batch(model, batch, batch_size, tta)
        probs[start : start + len(items)] = batch_probs
        if spread is not None and batch_spread is not None:
            spread[start : start + len(items)] = batch_spread
        report(start + len(items), n)
    return Predictions(
        paths=[it.path for it in dataset.items],
        probs=probs,
        threshold=float(predictor.threshold),
        classes=classes,
        labels=[it.label for it in dataset.items],
        patients=[it.patient for it in dataset.items],
        studies=[it.study for it in dataset.items],
        series=[it.series for it in dataset.items],
        model_id=predictor.model_id,
        uncertainty=spread,
    )


def predict_paths(model_or_bundle: Predictor | keras.Model, paths: Sequence[str | Path], **kwargs: Any) -> Predictions:
    """Predict a list of files (a user's drop): discovered as an unlabelled dataset first."""
    from ctviewer.core.data.dataset import discover

    return predict(model_or_bundle, discover(list(paths), cache=kwargs.get("cache")), **kwargs)
