"""Volumes as input: every slice of a series folder or a multi-frame DICOM, predicted one by one.

`predict` calls a file once (a multi-frame file on its middle frame). For a series- or
patient-level answer, :func:`predict_slices` predicts each frame of a multi-frame file as its own
row (``Predictions.frames`` says which), so ``aggregate(pred, "series")`` turns the file, or a
folder of single-slice files sharing a series UID, into one unit.

Sampling: with ``max_slices`` a series with more slices than that is predicted on
``max_slices`` slices evenly spaced through it (in slice order: position, instance number,
frame), always including the first and the last. Without it, every slice is predicted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import Dataset, Item
from ctviewer.core.errors import Cancelled, ModelError
from ctviewer.core.events import EventCallback, Progress, StopCheck, emit, stop_requested
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.core.model.inference import _predict_batch, predictor_for
from ctviewer.core.model.predictor import Predictor, input_size

SliceRow = tuple[int, int]  # (item index in the dataset, 0-based frame; -1 for a single-frame file)


def evenly_spaced(n: int, k: int | None) -> list[int]:
    """``k`` indices evenly spread over ``range(n)`` including both ends (all of them when k is None or >= n)."""
    if k is None or n <= k:
        return list(range(n))
    if k < 1:
        raise ValueError(f"max_slices must be at least 1 (got {k})")
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, k)})


def slice_rows(dataset: Dataset, max_slices: int | None = None) -> list[SliceRow]:
    """The slices to predict: every frame of every file, sampled per series by ``max_slices``."""
    groups: dict[str, list[SliceRow]] = {}
    for i, item in enumerate(dataset.items):
        key = item.series or f"patient:{item.patient}"
        frames = [(i, f) for f in range(item.frames)] if item.frames > 1 else [(i, -1)]
        groups.setdefault(key, []).extend(frames)
    rows: list[SliceRow] = []
    for members in groups.values():
        members.sort(key=lambda r: _slice_order(dataset.items[r[0]], r[1]))
        rows.extend(members[j] for j in evenly_spaced(len(members), max_slices))
    return sorted(rows)


def _slice_order(item: Item, frame: int) -> tuple[float, int, int]:
    position = item.slice_position if item.slice_position is not None else 0.0
    return (float(position), item.instance or 0, frame)


def predict_slices(model_or_bundle: Predictor | Any, dataset: Dataset, max_slices: int | None = None, tta: bool | None = None,
                   batch_size: int = 32, cache: Cache | None = None, on_event: EventCallback | None = None,
                   should_stop: StopCheck | None = None) -> Predictions:
    """One prediction row per slice (every frame of a multi-frame file), for series/patient answers.

    Parameters as for :func:`ctviewer.core.model.inference.predict`; ``max_slices`` samples each
    series (see the module docstring). Rows keep the dataset order, frames in order within a file.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1 (got {batch_size})")
    predictor = predictor_for(model_or_bundle, dataset, None)
    model, prep, classes = predictor.model, predictor.preprocessing, tuple(predictor.classes)
    tta = predictor.tta if tta is None else bool(tta)
    if input_size(model) != prep.size:
        raise ModelError(f"model input is {input_size(model)} px but the preprocessing makes {prep.size} px images")
    cache = cache if cache is not None else Cache()
    rows = slice_rows(dataset, max_slices)
    probs = np.empty(len(rows), dtype=np.float64)
    spread: np.ndarray | None = None
    load: Callable[[SliceRow], np.ndarray] = lambda r: np.asarray(  # noqa: E731 - one line
        cache.array(dataset.items[r[0]].path, prep, None if r[1] < 0 else r[1]), dtype=np.float32)
    for start in range(0, len(rows), batch_size):
        if stop_requested(should_stop):
            raise Cancelled("prediction cancelled")
        part = rows[start : start + batch_size]
        batch_probs, batch_spread = _predict_batch(model, np.stack([load(r) for r in part])[..., None],
                                                   batch_size, tta)
        probs[start : start + len(part)] = batch_probs
        if batch_spread is not None:  # an ensemble: the spread of its members, as for images
            spread = np.full(len(rows), np.nan) if spread is None else spread
            spread[start : start + len(part)] = batch_spread
        emit(on_event, Progress(start + len(part), len(rows), "predicting slices"))
    items = [dataset.items[i] for i, _ in rows]
    return Predictions(
        paths=[it.path for it in items], probs=probs, threshold=float(predictor.threshold), classes=classes,
        labels=[it.label for it in items], patients=[it.patient for it in items],
        studies=[it.study for it in items], series=[it.series for it in items], model_id=predictor.model_id,
        frames=np.array([f for _, f in rows], dtype=np.int64), uncertainty=spread,
    )


def level_threshold(model_or_bundle: Any, level: str, rule: str) -> tuple[float | None, str]:
    """The model's own ``level`` threshold for ``rule`` (from its card's ``levels``) and where it came from.

    ``(None, reason)`` when the model has none for that level and rule (an older bundle, a bare
    model, a hold-out with one class, another rule): the caller then uses the image threshold.
    """
    card = getattr(model_or_bundle, "card", None)
    levels = (card.raw.get("levels") if card is not None else None) or {}
    entry = levels.get(level) if isinstance(levels, dict) else None
    if not isinstance(entry, dict):
        return None, f"the model has no {level}-level threshold"
    if entry.get("rule") != rule:
        return None, f"the model's {level} threshold is for the {entry.get('rule')} rule, not {rule}"
    if entry.get("threshold") is None:
        return None, f"the model has no {level}-level threshold ({entry.get('note', 'not chosen')})"
    return float(entry["threshold"]), f"chosen on the model's {entry.get('chosen_on') or 'held-out data'}"
