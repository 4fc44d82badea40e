"""What training returns: `TrainedModel`, `CVResult` and the `DatasetSummary` of the data a model saw."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ctviewer.core.data.dataset import Dataset
from ctviewer.core.data.imaging import Preprocessing
from ctviewer.core.data.splits import Folds, Split
from ctviewer.core.metrics.evaluation import Metrics
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.core.model.bundle import SPLIT_FILE
from ctviewer.core.model.config import TrainConfig, preprocessing_of
from ctviewer.core.model.ensemble import Ensemble
from ctviewer.core.model.identity import weights_id
from ctviewer.core.model.predictor import PredictorBase
from ctviewer.core.model.provenance import dataset_content_hash

if TYPE_CHECKING:
    import keras


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
    # (path, content hash) of every image, so predictions can say which were training images;
    # written to the bundle's image list, not to the card.
    images: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "n_images": self.n_images, "n_patients": self.n_patients,
            "class_counts": dict(self.class_counts), "positive": self.positive, "negative": self.negative,
            "content_hash": self.content_hash,
        }


def summarize_dataset(dataset: Dataset) -> DatasetSummary:
    return DatasetSummary(
        source=str(dataset.source), n_images=len(dataset), n_patients=len(set(dataset.patients.tolist())),
        class_counts=dataset.class_counts(), positive=str(dataset.positive), negative=str(dataset.negative),
        content_hash=dataset_content_hash(dataset),
        images=tuple((str(it.path), str(it.content_hash)) for it in dataset.items),
    )


@dataclass
class TrainedModel(PredictorBase):
    """A trained model and everything needed to use, save and question it (a `Predictor`)."""

    model: keras.Model
    config: TrainConfig
    threshold: float
    history: dict[str, list[float]]
    split: Split
    classes: tuple[str, str]  # (negative, positive)
    dataset: DatasetSummary
    validation_predictions: Predictions | None = None
    validation_metrics: Metrics | None = None
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

    @property
    def tta(self) -> bool:
        return bool(self.config.tta)

    @property
    def validation_auc(self) -> float | None:
        auc = None if self.validation_metrics is None else self.validation_metrics.auc
        return None if auc is None or math.isnan(auc) else float(auc)

    @property
    def trained_on(self) -> str | None:
        return self.dataset.content_hash

    card_kind: ClassVar[str] = "single"

    def card_fields(self) -> dict[str, Any]:
        """What the model card records of one trained model beyond every model's fields."""
        return {
            "history": self.history, "best_epoch": self.best_epoch, "epochs_run": self.epochs_run,
            "cancelled": self.cancelled,
            "split": {"method": self.split.method, "seed": self.split.seed, "counts": self.split.counts(),
                      "file": SPLIT_FILE},
            "notes": list(self.notes),
        }


@dataclass
class CVResult:
    """Out-of-fold predictions for every image, pooled metrics and per-fold details."""

    predictions: Predictions  # out of fold; ``folds`` and per-fold ``row_thresholds`` set
    metrics: Metrics  # pooled over all images
    folds: Folds
    fold_thresholds: list[float]
    fold_metrics: list[Metrics | None]
    histories: list[dict[str, list[float]]]
    config: TrainConfig
    dataset: DatasetSummary
    models: list[TrainedModel] = field(default_factory=list)
    ensemble: Ensemble | None = None  # when keep_models / config.ensemble
    seconds: float = 0.0
    cancelled: bool = False  # stopped early; only the completed folds are in the result
    notes: list[str] = field(default_factory=list)
    rule_checks: list[Any] = field(default_factory=list)  # ctviewer.core.training.oof.RuleCheck
    threshold: float = 0.5  # the ensemble's: chosen on the pooled out-of-fold predictions
    recipe_choices: list[dict[str, Any]] = field(default_factory=list)  # ctviewer.core.training.plan, per choice

    @property
    def completed_folds(self) -> int:
        return len(self.fold_thresholds)

    def fold_rows(self) -> list[dict[str, Any]]:
        """The per-fold table: images tested, inner-validation threshold, metrics at the ensemble threshold."""
        rows = []
        for k, m in enumerate(self.fold_metrics):
            row: dict[str, Any] = {"fold": k, "n": len(self.folds.test_indices(k)),
                                   "inner_threshold": self.fold_thresholds[k]}
            if m is not None:
                row.update({name: m.to_json_dict()[name] for name in ("auc", "accuracy", "sensitivity",
                                                                      "specificity")})
            rows.append(row)
        return rows

    def expected_performance(self) -> dict[str, Any]:
        """The model card's block: pooled out-of-fold metrics with intervals, per fold, rule check."""
        return {
            "source": "pooled out-of-fold predictions: every image predicted by the fold model that never saw "
                      "its patient",
            "folds": self.folds.k,
            "completed_folds": self.completed_folds,
            "threshold": self.threshold,
            "threshold_rule": self.config.threshold_rule,
            "threshold_target": self.config.threshold_target,
            "metrics": self.metrics.to_json_dict(),
            "per_fold": self.fold_rows(),
            "threshold_rules_checked": [c.to_json_dict() for c in self.rule_checks],
            "recipe_choices": list(self.recipe_choices),
            "notes": list(self.notes),
        }

    def to_json_extra(self) -> dict[str, Any]:
        """What metrics.json holds besides the pooled metrics."""
        return {
            "folds": self.folds.k,
            "seed": self.folds.seed,
            "model": self.config.model,
            "completed_folds": self.completed_folds,
            "cancelled": self.cancelled,
            "fold_thresholds": list(self.fold_thresholds),
            "threshold_rule": self.config.threshold_rule,
            "fold_metrics": [
                {"fold": i, **({k: m.to_json_dict()[k] for k in ("n", "auc", "accuracy", "sensitivity",
                                                                      "specificity", "threshold")} if m else {})}
                for i, m in enumerate(self.fold_metrics)
            ],
            "threshold_rules_checked": [c.to_json_dict() for c in self.rule_checks],
            "recipe_choices": list(self.recipe_choices),
            "notes": list(self.notes),
            "dataset": self.dataset.to_json_dict(),
            "config": self.config.to_dict(),
            "seconds": round(self.seconds, 1),
        }
