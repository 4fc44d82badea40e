"""What "a model" is to the rest of ctviewer: the `Predictor` protocol.

A model trained in this session (`ctviewer.core.training.results.TrainedModel`), a loaded
bundle (`ctviewer.core.model.bundle.Bundle`) and an ensemble of fold models
(`ctviewer.core.model.ensemble.Ensemble`) all answer the same questions: how to prepare an
image, what the classes are, where the threshold is, whether to average the mirror view,
which weights these are, and what was recorded about their training. Callers ask the
protocol instead of probing attributes with ``getattr``.

A bare ``keras.Model`` (a user's own, or one given to the notebook API) becomes a Predictor
at the boundary, in `as_predictor`: wrapped in a `KerasPredictor` with the defaults a model
without a card gets. Past that point the core sees Predictors only.

No TensorFlow at import; ``keras`` and the split types are imported for type checking only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ctviewer.core.data.imaging import Preprocessing
from ctviewer.core.errors import ModelError
from ctviewer.core.events import StopCheck

if TYPE_CHECKING:
    import keras

    from ctviewer.core.data.splits import Folds, Split


DEFAULT_CLASSES = ("negative", "positive")  # the names of a bare model's two outputs


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
    tells a Predictor from a bare ``keras.Model`` (cheap, unlike a Protocol check that would
    evaluate ``model_id``).
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


@dataclass(frozen=True, eq=False)
class KerasPredictor(PredictorBase):
    """A bare ``keras.Model`` as a `Predictor`: no card, so the defaults of `as_predictor`, and
    nothing recorded about its training."""

    model: keras.Model
    preprocessing: Preprocessing
    classes: tuple[str, str] = DEFAULT_CLASSES
    threshold: float = 0.5
    tta: bool = False
    model_id: str = ""
    history: dict[str, list[float]] | None = None
    split: Split | Folds | None = None
    validation_auc: float | None = None
    trained_on: str | None = None


def as_predictor(model: Predictor | keras.Model, preprocessing: Preprocessing | None = None,
                 classes: tuple[str, str] = DEFAULT_CLASSES) -> Predictor:
    """``model`` as a `Predictor`: a ctviewer model as it is, a bare ``keras.Model`` wrapped.

    ``preprocessing`` and ``classes`` are what a bare model is given, having no card to say:
    by default the "wide" window at the model's input size with padding, and generic class
    names. A ctviewer model keeps its own.

    Raises
    ------
    ModelError
        ``model`` is neither (no ``predict_on_batch``), or a bare model's input is not
        (None, size, size, 1).
    """
    if isinstance(model, PredictorBase):
        return model  # type: ignore[return-value]
    if not hasattr(model, "predict_on_batch"):
        raise ModelError(f"cannot predict with a {type(model).__name__}; give a keras.Model, a bundle or a trained model")
    if preprocessing is None:
        preprocessing = Preprocessing(window="wide", size=input_size(model), resize="pad")
    return KerasPredictor(model=model, preprocessing=preprocessing, classes=tuple(classes))


def input_size(model: Any) -> int:
    """Side of the square (size, size, 1) input a Keras model expects."""
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 1 or shape[1] is None:
        raise ModelError(f"model input shape {shape} is not (None, size, size, 1): not a ctviewer model")
    return int(shape[1])
