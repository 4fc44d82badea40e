"""Patient-grouped k-fold cross-validation: out-of-fold predictions for every image."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import Dataset, iter_arrays
from ctviewer.core.data.splits import kfold, smallest_class_patients
from ctviewer.core.errors import Cancelled, DatasetError
from ctviewer.core.events import EventCallback, FoldStarted, Message, StopCheck, emit, stop_requested
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.core.model.config import DEFAULT_FOLDS, TrainConfig, preprocessing_of
from ctviewer.core.training.fit import _check_config, fit
from ctviewer.core.training.fold_workers import FoldTask, FoldWorkerDied, FoldWorkers, rebuild_model, worker_plan
from ctviewer.core.training.oof import choose_oof_threshold, compare_threshold_rules
from ctviewer.core.training.plan import RecipeChooser, config_for_choice, wants_choice
from ctviewer.core.training.results import CVResult, TrainedModel, summarize_dataset
from ctviewer.core.training.reuse import CompiledModelPool


def resolve_folds(dataset: Dataset, folds: int | None, notes: list[str]) -> int:
    """``folds``, or the default 5 lowered (with a note) when a class has fewer patients than that.

    An explicit number of folds is taken as asked (`kfold` says when the data cannot make it).
    """
    if folds is not None:
        return int(folds)
    smallest = smallest_class_patients(dataset)
    if smallest >= DEFAULT_FOLDS:
        return DEFAULT_FOLDS
    if smallest < 2:
        raise DatasetError(f"cannot make patient-grouped folds: a class has {smallest} patient(s); "
                           "each class needs at least 2 patients (add patients, or use --folds 1)")
    notes.append(f"{smallest} folds instead of {DEFAULT_FOLDS}: a class has only {smallest} patients")
    return smallest


def _fold_config(config: TrainConfig, k: int) -> TrainConfig:
    # Without an inner hold-out a fold trains a fixed schedule: all epochs, the last one kept
    # (restoring the "best" epoch by training loss would just pick the most over-fitted one).
    fixed = not config.validation_fraction or config.validation_fraction <= 0
    # No mirror TTA inside a fold ensemble: the members' out-of-fold AUC was the same without it
    # (three SIIM ensembles, mean difference -0.0004, bench/ensemble_tta.py) at half the
    # prediction cost; the out-of-fold predictions are made the way the ensemble predicts.
    # The texture recipe's folds keep one seed, so one draw of its frozen networks: their features
    # are computed once per image for the recipe choice and every fold (texture.extract_features),
    # and the fold ensemble runs the networks once (Ensemble.from_trained). Its read-outs still
    # differ per fold; a new draw per fold cost 6 feature passes per image for no gain in AUC.
    seed = config.seed if config.model == "texture" else config.seed + k
    return replace(config, seed=seed, restore_best=config.restore_best and not fixed, tta=False)


def cross_validate(
    dataset: Dataset,
    config: TrainConfig,
    folds: int | None = None,
    on_event: EventCallback | None = None,
    should_stop: StopCheck | None = None,
    keep_models: bool = False,
    cache: Cache | None = None,
    strategy: Any = None,
    stream: bool | None = None,
    keep_partial: bool = False,
) -> CVResult:
    """Patient-grouped stratified k-fold: train on k-1 folds, predict the held-out one.

    The one code path of ``ctviewer train`` (which keeps the fold models as an ensemble)
    and ``ctviewer cv`` (which by default does not). Each fold model early-stops on its own
    patient-grouped hold-out inside its training part (or, with ``validation_fraction`` 0,
    trains a fixed schedule), so it never sees its out-of-fold images. The ensemble's
    threshold is then chosen by ``config.threshold_rule`` on the pooled out-of-fold
    predictions of every image, and the pooled metrics are at that threshold. The
    threshold rules are also checked cross-fitted (`ctviewer.core.training.oof`).

    Parameters
    ----------
    folds
        Number of folds; None: 5, or fewer (with a note in ``notes``) when a class has
        fewer than 5 patients.
    keep_models
        Keep the fold models and their averaging `Ensemble` (``result.ensemble``).
    keep_partial
        On cancel, keep the folds that finished (a smaller ensemble, ``cancelled=True``)
        instead of raising `Cancelled`. Raises all the same when no fold finished.

    Raises
    ------
    DatasetError
        Fewer than ``folds`` patients in a class, one class only, etc.
    Cancelled
        ``should_stop()`` became true (and ``keep_partial`` is off, or no fold finished).
    """
    from ctviewer.core.metrics.evaluation import compute_metrics, metrics_from_predictions
    from ctviewer.core.model.inference import predict

    started = time.perf_counter()
    _check_config(config)
    dataset.require_binary()
    notes: list[str] = []
    n_folds = resolve_folds(dataset, folds, notes)
    for note in notes:
        emit(on_event, Message(note))
    assignment = kfold(dataset, n_folds, seed=config.seed)
    cache = cache if cache is not None else Cache()
    probs = np.full(len(dataset), np.nan)
    thresholds: list[float] = []
    histories: list[dict[str, list[float]]] = []
    kept: list[TrainedModel] = []
    cancelled = False
    y = dataset.y
    from ctviewer.core.model.recipes import before_issue_15, with_resolved_precision

    config = with_resolved_precision(config)  # every fold, the result and the card: the precision that ran
    models = None if before_issue_15() else CompiledModelPool()  # one trace for all folds
    runner: FoldWorkers | None = None
    try:  # the workers end whatever happens
        chooser, choices = None, []
        if wants_choice(config):
            chooser = RecipeChooser(dataset, config, cache, on_event, should_stop)
            if keep_models or config.ensemble:  # one ensemble needs one recipe: chosen on all its images
                choices.append(chooser.choose(np.arange(len(dataset))))
                config = config_for_choice(config, choices[0])
                notes.append(f"recipe chosen on all {len(dataset)} images: {choices[0].reason}")
                emit(on_event, Message(notes[-1]))
        runner, fold_recipes = _submit_folds(dataset, config, assignment, chooser, choices, cache, strategy, stream,
                                             keep_models or config.ensemble, on_event)
        for k in range(n_folds):
            if stop_requested(should_stop):
                cancelled = _stop_or_raise(f"before fold {k + 1}", keep_partial, k, n_folds, notes)
                break
            emit(on_event, FoldStarted(k, n_folds))
            train_idx, test_idx = assignment.train_indices(k), assignment.test_indices(k)
            fold_recipe = config
            if chooser is not None and not (keep_models or config.ensemble):  # cv: chosen without the fold's images
                if fold_recipes is None:
                    choices.append(chooser.choose(train_idx))
                fold_recipe = config_for_choice(config, choices[k])
                notes.append(f"fold {k + 1}: {choices[k].reason}")
                emit(on_event, Message(notes[-1]))
            trained, fold_probs = None, None
            try:
                if runner is not None:
                    try:
                        outcome = runner.result(k, on_event, should_stop)
                        trained, fold_probs = outcome.trained, outcome.probs
                        if outcome.variables is not None:
                            trained.model = rebuild_model(trained.config, outcome.variables)
                    except FoldWorkerDied as exc:
                        runner.close()
                        runner = None
                        emit(on_event, Message(f"{exc}; training the remaining folds in this process", "warning"))
                if trained is None:
                    trained = fit(dataset.subset(train_idx.tolist()), _fold_config(fold_recipe, k), on_event,
                                  should_stop, cache=cache, strategy=strategy, stream=stream, fold=k, models=models)
            except Cancelled:  # while the fold's images were loading
                cancelled = _stop_or_raise(f"during fold {k + 1}", keep_partial, k, n_folds, notes)
                break
            if trained.cancelled:
                del trained
                cancelled = _stop_or_raise(f"during fold {k + 1}", keep_partial, k, n_folds, notes)
                break
            if fold_probs is None:
                fold_probs = predict(trained, dataset.subset(test_idx.tolist()),
                                     batch_size=config.batch_size, cache=cache).probs
            probs[test_idx] = fold_probs
            thresholds.append(trained.threshold)
            histories.append(trained.history)
            if keep_models or config.ensemble:
                if models is not None:  # the pool re-initialises its model next fold
                    trained.model = models.detach(trained.model)
                kept.append(trained)
            else:
                del trained
    finally:
        if runner is not None:
            runner.close()
    done = np.flatnonzero(np.isfinite(probs))
    classes = (str(dataset.negative), str(dataset.positive))
    fold_of = np.asarray(assignment.fold_of, dtype=np.int64)
    threshold = _pooled_threshold(y[done], probs[done], config, notes, on_event)
    tested = dataset.subset(done.tolist())
    oof = Predictions(
        paths=tested.paths, probs=probs[done], threshold=threshold, classes=classes,
        labels=[it.label for it in tested.items], patients=[it.patient for it in tested.items],
        studies=[it.study for it in tested.items], series=[it.series for it in tested.items],
        folds=fold_of[done], model_id=f"cv{n_folds}-{config.model}",
    )
    fold_metrics: list[Any] = []
    for k in range(len(thresholds)):
        test_idx = assignment.test_indices(k)
        try:
            fold_metrics.append(compute_metrics(y[test_idx], probs[test_idx], threshold, classes))
        except ValueError:
            fold_metrics.append(None)
    result = CVResult(
        predictions=oof, metrics=metrics_from_predictions(oof), folds=assignment, fold_thresholds=thresholds,
        fold_metrics=fold_metrics, histories=histories, config=config, dataset=summarize_dataset(dataset),
        models=kept, cancelled=cancelled, notes=notes, threshold=threshold,
        recipe_choices=[c.to_json_dict() for c in choices],
        rule_checks=compare_threshold_rules(y[done], probs[done], fold_of[done], thresholds,
                                            config.threshold_rule, config.threshold_target),
    )
    if kept:
        from ctviewer.core.model.ensemble import Ensemble

        result.ensemble = Ensemble.from_trained(kept, threshold=threshold)
        # The ensemble was trained on the whole dataset (each member on its k-1 folds).
        result.ensemble.dataset = result.dataset
        result.ensemble.cross_validation = result
    result.seconds = time.perf_counter() - started
    return result


def _submit_folds(dataset: Dataset, config: TrainConfig, assignment: Any, chooser: RecipeChooser | None,
                  choices: list[Any], cache: Cache, strategy: Any, stream: bool | None, keep: bool,
                  on_event: EventCallback | None) -> tuple[FoldWorkers | None, list[TrainConfig] | None]:
    """Start the fold workers and give them their folds: ``(runner, every fold's recipe)``, or ``(None, ...)``
    to train here.

    The workers need every fold's recipe at the start, so a cv's per-fold recipe choices are made
    here (into ``choices``, in fold order), and every image is preprocessed into the cache here
    once, so the workers only read it. They start once the recipes are known: a texture recipe
    needs none, and workers importing TensorFlow beside its feature pass would slow it.
    """
    workers, threads = worker_plan(config, [len(assignment.train_indices(k)) for k in range(assignment.k)], strategy)
    if not workers or type(cache) is not Cache:  # the workers read the images from this cache's folder
        return None, None
    recipes = []
    for k in range(assignment.k):
        recipe = config
        if chooser is not None and not keep:
            choices.append(chooser.choose(assignment.train_indices(k)))
            recipe = config_for_choice(config, choices[-1])
        recipes.append(_fold_config(recipe, k))
    if all(recipe.model == "texture" for recipe in recipes):  # no epochs to share out
        return None, recipes
    runner = FoldWorkers(workers, threads)
    try:  # they import TensorFlow meanwhile
        for prep in {preprocessing_of(recipe) for recipe in recipes}:
            for _ in iter_arrays(dataset, prep, cache, on_event):
                pass
        cache.flush()
        runner.submit([FoldTask(k, dataset.subset(assignment.train_indices(k).tolist()),
                                dataset.subset(assignment.test_indices(k).tolist()), recipes[k], str(cache.root),
                                stream, keep) for k in range(assignment.k)])
    except BaseException:
        runner.close()
        raise
    emit(on_event, Message(f"training the {assignment.k} folds in {runner.workers} worker processes"))
    return runner, recipes


def _stop_or_raise(when: str, keep_partial: bool, completed: int, planned: int, notes: list[str]) -> bool:
    if not keep_partial or completed == 0:
        raise Cancelled(f"cross-validation cancelled {when}" + ("; no fold had finished, nothing kept"
                                                                  if keep_partial else ""))
    notes.append(f"cancelled {when}: an ensemble of the {completed} completed fold model(s) of {planned}; "
                 f"its out-of-fold metrics cover only the images of those folds")
    return True


def _pooled_threshold(y: np.ndarray, probs: np.ndarray, config: TrainConfig, notes: list[str],
                      on_event: EventCallback | None) -> float:
    try:
        return choose_oof_threshold(y, probs, config.threshold_rule, config.threshold_target)
    except ValueError as exc:
        note = f"threshold left at 0.5: cannot apply rule {config.threshold_rule!r} to the out-of-fold predictions ({exc})"
        notes.append(note)
        emit(on_event, Message(note, "warning"))
        return 0.5
