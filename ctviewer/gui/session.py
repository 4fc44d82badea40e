"""What the window currently holds: dataset, model, predictions. A plain view-model, no Qt.

Panels read it and change it only through its ``set_*`` methods; whoever needs to follow a
change subscribes (`Session.subscribe`) instead of being told by hand: the browser, the
training, results, doctor and tags panels, the Grad-CAM controller and the status bar each
follow the changes they show. The window only sets the session. Keeping it out of the
widgets means the state can be inspected (and tested) without looking inside Qt objects.

The changes: ``"dataset"`` (another dataset: its predictions went first), ``"labels"`` (the
same images relabelled in the browser: predictions stay), ``"model"``, ``"predictions"``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import Dataset
from ctviewer.core.data.imaging import Preprocessing
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.engine.client import EngineClient
from ctviewer.engine.protocol import ModelHandle

Change = Literal["dataset", "labels", "model", "predictions"]
Listener = Callable[[Change], None]


@dataclass
class Session:
    """The window's state. ``model`` is a `ModelHandle` of a model living in the engine, or None."""

    cache: Cache = field(default_factory=Cache)
    dataset: Dataset | None = None
    model: ModelHandle | None = None
    model_source: str = ""  # "trained in this session" or the bundle folder
    predictions: Predictions | None = None
    predictions_description: str = ""  # what the predictions are, in words ("all 48 images of ...")
    engine: EngineClient | None = None
    _listeners: list[Listener] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.engine is None:
            self.engine = EngineClient(str(self.cache.root))

    # ------------------------------------------------------------------ changes

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(change)`` after every change; returns the function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _changed(self, change: Change) -> None:
        for listener in list(self._listeners):
            listener(change)

    def set_dataset(self, dataset: Dataset | None) -> None:
        """Another dataset (or the same folder read again): the old one's predictions go first."""
        self.dataset = dataset
        if self.predictions is not None:
            self.predictions, self.predictions_description = None, ""
            self._changed("predictions")
        self._changed("dataset")

    def set_labels(self, dataset: Dataset) -> None:
        """The same images with their labels edited (the browser): the predictions stay."""
        self.dataset = dataset
        self._changed("labels")

    def set_model(self, model: ModelHandle | None, source: str) -> None:
        self.model, self.model_source = model, source
        self._changed("model")

    def set_predictions(self, predictions: Predictions | None, description: str = "") -> None:
        """Predictions of the session's dataset, and what they are in words (the Results caption)."""
        if predictions is self.predictions:
            return  # told twice: one notification
        self.predictions, self.predictions_description = predictions, description
        self._changed("predictions")

    def model_preprocessing(self) -> Preprocessing | None:
        """How the model wants its input (window, size, resize), as its handle says."""
        return None if self.model is None else self.model.preprocessing

    def describe(self) -> str:
        parts = []
        if self.dataset is not None:
            parts.append(f"{len(self.dataset)} images, {len(self.dataset.classes)} classes")
        else:
            parts.append("no dataset")
        parts.append(f"model: {self.model_source}" if self.model is not None else "no model")
        if self.predictions is not None:
            parts.append(f"{len(self.predictions)} predictions")
        return " | ".join(parts)
