"""`Ensemble`: the k fold models of a cross-validation as one model averaging their probabilities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ctviewer.core.data.imaging import Preprocessing
from ctviewer.core.errors import ModelError
from ctviewer.core.model.config import TrainConfig
from ctviewer.core.model.predictor import PredictorBase

if TYPE_CHECKING:
    import keras

    from ctviewer.core.data.splits import Split
    from ctviewer.core.metrics.evaluation import Metrics
    from ctviewer.core.training.results import DatasetSummary, TrainedModel


@dataclass
class Ensemble(PredictorBase):
    """A `ctviewer.core.model.predictor.Predictor` averaging the softmax outputs of its members."""

    model: keras.Model  # input -> mean of the members' softmax outputs
    members: list[TrainedModel]
    threshold: float
    config: TrainConfig  # of the first member; seeds differ per fold
    classes: tuple[str, str]
    dataset: DatasetSummary  # the whole training data (each member saw its k-1 folds of it)
    # The CVResult that made it (out-of-fold predictions, expected performance), when known.
    cross_validation: Any = None

    @property
    def preprocessing(self) -> Preprocessing:
        return self.members[0].preprocessing

    @property
    def tta(self) -> bool:
        return bool(self.config.tta)

    @property
    def model_id(self) -> str:
        from ctviewer.core.model.identity import weights_id

        return weights_id(self.model)

    @property
    def history(self) -> dict[str, list[float]] | None:
        return None  # one per member; the ensemble itself was not trained

    @property
    def split(self) -> Split | None:
        return None

    @property
    def validation_auc(self) -> float | None:
        return None

    @property
    def trained_on(self) -> str | None:
        return self.dataset.content_hash

    @property
    def validation_metrics(self) -> Metrics | None:
        return None  # each member has its own; the ensemble's are cross-validated (given to save_bundle)

    card_kind: ClassVar[str] = "ensemble"

    def card_fields(self) -> dict[str, Any]:
        """What the model card records of an ensemble beyond every model's fields: its members."""
        from ctviewer.core.model.identity import weights_id

        return {"members": [{"model_id": weights_id(m.model), "threshold": m.threshold, "seed": m.config.seed,
                             "best_epoch": m.best_epoch, "epochs_run": m.epochs_run} for m in self.members]}

    @classmethod
    def from_trained(cls, members: list[TrainedModel], threshold: float | None = None) -> Ensemble:
        """Average ``members`` (TrainedModel, same preprocessing and classes); threshold = median of theirs."""
        import keras
        import numpy as np

        from ctviewer.core.model.texture import shared_trunk

        if not members:
            raise ModelError("an ensemble needs at least one model")
        first = members[0]
        if any(m.preprocessing != first.preprocessing or m.classes != first.classes for m in members):
            raise ModelError("ensemble members differ in preprocessing or classes")
        size = first.preprocessing.size
        inputs = keras.Input((size, size, 1), name="image")
        trunk = shared_trunk([m.model for m in members])
        if trunk is not None:
            # Texture members with the same frozen networks: run them once, then each read-out.
            features = trunk(inputs)
            outputs = [_readout_member(m.model, features, f"member{i}")(features) for i, m in enumerate(members)]
        else:
            # Each member becomes a uniquely named sub-model sharing its layers and weights.
            outputs = [keras.Model(m.model.inputs[0], m.model.outputs[0], name=f"member{i}")(inputs)
                       for i, m in enumerate(members)]
        mean = outputs[0] if len(outputs) == 1 else keras.layers.Average(name="mean_probabilities")(outputs)
        model = keras.Model(inputs, mean, name="ctviewer_ensemble")
        t = float(np.median([m.threshold for m in members])) if threshold is None else float(threshold)
        return cls(model=model, members=list(members), threshold=t, config=first.config, classes=first.classes,
                   dataset=first.dataset)


def _readout_member(model: keras.Model, features: Any, name: str) -> keras.Model:
    """A texture member's read-out alone, as a sub-model on the shared features."""
    import keras

    from ctviewer.core.model.texture import READOUT_LAYER

    inputs = keras.Input(tuple(features.shape[1:]), name="features")
    return keras.Model(inputs, model.get_layer(READOUT_LAYER)(inputs), name=name)
