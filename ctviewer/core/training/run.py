"""`run_training`: the one way the app and the CLI train a model on everything they have.

Default (``folds`` None, or 2 or more): k-fold `cross_validate` keeping the fold models, whose
averaging `Ensemble` is the model; ``folds`` 1: `fit` with a patient-grouped validation hold-out. Either
way the result names the model (a `Predictor`), the honest predictions to show (validation
hold-out or out-of-fold) and what they are, the histories, and a one-line summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import Dataset
from ctviewer.core.events import EventCallback, StopCheck
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.core.model.config import TrainConfig
from ctviewer.core.model.ensemble import Ensemble
from ctviewer.core.training.results import CVResult, TrainedModel

VALIDATION_PREDICTIONS = "validation patients of this training (set aside: the model did not train on them)"
OUT_OF_FOLD_PREDICTIONS = "cross-validation: each image predicted by models that did not train on it"


@dataclass
class TrainingRun:
    """What `run_training` made: the model, the predictions to show and how they were made."""

    model: TrainedModel | Ensemble | None  # None only if cross-validation kept no model
    predictions: Predictions | None  # validation hold-out, or out-of-fold
    predictions_are: str  # what ``predictions`` are, said to the user
    summary: str  # one line for a status bar
    histories: list[dict[str, list[float]]] = field(default_factory=list)
    trained: TrainedModel | None = None  # the single model (folds < 2)
    cv: CVResult | None = None  # the cross-validation (folds >= 2)

    @property
    def cancelled(self) -> bool:
        if self.cv is not None:
            return self.cv.cancelled
        return self.trained is not None and self.trained.cancelled


def run_training(dataset: Dataset, config: TrainConfig, folds: int | None = None, *,
                 on_event: EventCallback | None = None, should_stop: StopCheck | None = None,
                 cache: Cache | None = None) -> TrainingRun:
    """Train a k-fold cross-validated ensemble (the default) or, with ``folds`` 1, one model.

    Parameters
    ----------
    dataset, config
        The labelled binary dataset and the recipe (with any overrides).
    folds
        None: 5 fold models (fewer, with a note, when a class has fewer patients); k >= 2:
        k fold models; 1: one model with a patient-grouped validation hold-out.
    on_event, should_stop, cache
        As `fit` and `cross_validate` take them.

    Returns
    -------
    TrainingRun
        A cancelled single run keeps its best epoch; a cancelled ensemble keeps the folds
        that finished (``cancelled`` is True either way). `Cancelled` is raised only when
        nothing finished.
    """
    from ctviewer.core.training.cv import cross_validate
    from ctviewer.core.training.fit import fit

    if folds is None or folds >= 2:
        cv = cross_validate(dataset, config, folds=folds, on_event=on_event, should_stop=should_stop,
                            keep_models=True, keep_partial=True, cache=cache)
        kept, planned = cv.completed_folds, cv.folds.k
        done = (f"Training cancelled: an ensemble of the {kept} of {planned} folds that finished is kept"
                if cv.cancelled else f"{planned}-fold ensemble trained")
        return TrainingRun(model=cv.ensemble, predictions=cv.predictions, predictions_are=OUT_OF_FOLD_PREDICTIONS,
                           summary=f"{done}, threshold {cv.threshold:.3f}", histories=list(cv.histories), cv=cv)
    trained = fit(dataset, config, on_event=on_event, should_stop=should_stop, cache=cache)
    best = "none" if trained.best_epoch is None else str(trained.best_epoch + 1)
    summary = (f"Training {'cancelled' if trained.cancelled else 'done'}: {trained.epochs_run} epochs, "
               f"best epoch {best}, threshold {trained.threshold:.3f}")
    return TrainingRun(model=trained, predictions=trained.validation_predictions,
                       predictions_are=VALIDATION_PREDICTIONS, summary=summary, histories=[dict(trained.history)],
                       trained=trained)
