"""Patient-grouped k-fold cross-validation: out-of-fold predictions for every image."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import Dataset
from ctviewer.core.data.splits import kfold
from ctviewer.core.errors import Cancelled
from ctviewer.core.events import EventCallback, FoldStarted, StopCheck, emit, stop_requested
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.core.model.config import TrainConfig
from ctviewer.core.training.fit import _check_config, fit
from ctviewer.core.training.results import CVResult, TrainedModel, summarize_dataset


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
    from ctviewer.core.metrics.evaluation import compute_metrics, metrics_from_predictions
    from ctviewer.core.model.inference import predict

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
        from ctviewer.core.model.ensemble import Ensemble

        result.ensemble = Ensemble.from_trained(kept, threshold=pooled_threshold)
    result.seconds = time.perf_counter() - started
    return result
