"""What the window currently holds: dataset, model, predictions. A plain view-model, no Qt.

Panels read it; the main window changes it and tells the panels. Keeping it out of the
widgets means the state can be inspected (and tested) without looking inside Qt objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import Dataset
from ctviewer.core.data.imaging import Preprocessing
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.gui.engine import EngineClient


@dataclass
class Session:
    """The window's state. ``model`` is a `ModelHandle` of a model living in the engine, or None."""

    cache: Cache = field(default_factory=Cache)
    dataset: Dataset | None = None
    model: Any = None  # ctviewer.gui.engine_child.ModelHandle
    model_source: str = ""  # "trained in this session" or the bundle folder
    predictions: Predictions | None = None
    engine: EngineClient | None = None

    def __post_init__(self) -> None:
        if self.engine is None:
            self.engine = EngineClient(str(self.cache.root))

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
