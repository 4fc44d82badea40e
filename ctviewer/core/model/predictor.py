"""What "a model" is to the rest of ctviewer: the `Predictor` protocol.

A model trained in this session (`ctviewer.core.training.results.TrainedModel`), a loaded
bundle (`ctviewer.core.model.bundle.Bundle`) and an ensemble of fold models
(`ctviewer.core.model.ensemble.Ensemble`) all answer the same questions: how to prepare an
image, what the classes are, where the threshold is, whether to average the mirror view,
which weights these are, and what was recorded about their training. Callers ask the
protocol instead of probing attributes with ``getattr``.

No TensorFlow at import; ``keras`` and the split types are imported for type checking only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from ctviewer.core.data.imaging import Preprocessing
from ctviewer.core.events import StopCheck

if TYPE_CHECKING:
    import keras

    from ctviewer.core.data.splits import Folds, Split


class Predictor(Protocol):
    """A ctviewer model ready to predict: implemented by TrainedModel, Bundle and Ensemble."""

    @property
    def model(self) -> keras.Model: ...

    @property
    def preprocessing(self) -> Preprocessing: ...

    @property
    def classes(self) -> tuple[str, str]: ...  # (negative, positive)

    @property
    def threshold(self) -> float: ...

    @property
    def tta(self) -> bool: ...  # the recipe's test-time augmentation choice

    @property
    def model_id(self) -> str: ...

    @property
    def history(self) -> dict[str, list[float]] | None: ...

    @property
    def split(self) -> Split | Folds | None: ...  # the data split its training used, when recorded

    @property
    def validation_auc(self) -> float | None: ...

    @property
    def trained_on(self) -> str | None: ...  # content hash of the training data

    def probabilities(self, x: np.ndarray, batch_size: int = 32, tta: bool | None = None,
                      should_stop: StopCheck | None = None) -> np.ndarray: ...


class PredictorBase:
    """The shared half of every `Predictor`: probabilities on preprocessed arrays.

    Subclasses provide ``model`` and ``tta``; isinstance(x, PredictorBase) is how the core
    tells a ctviewer model from a bare ``keras.Model`` (cheap, unlike a Protocol check that
    would evaluate ``model_id``).
    """

    model: keras.Model
    tta: bool

    def probabilities(self, x: np.ndarray, batch_size: int = 32, tta: bool | None = None,
                      should_stop: StopCheck | None = None) -> np.ndarray:
        """Positive-class probabilities (N,) of preprocessed images (N, S, S[, 1]) in [0, 1].

        ``tta`` None: as the model's recipe says.
        """
        from ctviewer.core.model.inference import predict_arrays

        return predict_arrays(self.model, x, batch_size, self.tta if tta is None else bool(tta), should_stop)
