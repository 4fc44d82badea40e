"""The engine's messages and the values its calls return. Pickled over a local connection.

From the GUI: `Call`, `Cancel`, `Quit`. From the engine: `EventMessage` (progress of a call),
`Result`, `Failure`, `CancelledReply`. Every answer names the call it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ctviewer.core.data.imaging import Preprocessing

if TYPE_CHECKING:
    from ctviewer.core.data.splits import Folds, Split
    from ctviewer.core.metrics.predictions import Predictions
    from ctviewer.core.model.config import TrainConfig

KEY_ENV = "CTVIEWER_ENGINE_KEY"  # the connection's secret, passed by environment (not visible in ps)

# Calls that run long: they get the call's events and stop flag (``on_event``, ``should_stop``).
LONG_CALLS = frozenset({"train", "predict", "doctor", "export"})


@dataclass(frozen=True)
class Call:
    """Run ``Engine.<name>(**kwargs)``; answered by events, then one result, failure or cancel."""

    id: int
    name: str  # an `ctviewer.engine.server.Engine` method
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class Cancel:
    """Stop call ``id`` at its next check (it answers `CancelledReply`)."""

    id: int


@dataclass(frozen=True)
class Quit:
    """Cancel everything and end the engine process."""


@dataclass(frozen=True)
class Reply:
    """From the engine, about call ``id`` (None: about the engine or the connection, not one call)."""

    id: int | None


@dataclass(frozen=True)
class EventMessage(Reply):
    """Progress of the call: a `ctviewer.core.events` event."""

    event: Any


@dataclass(frozen=True)
class Result(Reply):
    """The call returned ``value``."""

    value: Any


@dataclass(frozen=True)
class Failure(Reply):
    """The call raised: the message for the user and the traceback for the details."""

    message: str
    details: str  # the traceback
    user_error: bool  # a CTViewerError: the message is for the user as it is


@dataclass(frozen=True)
class CancelledReply(Reply):
    """The call stopped because it was cancelled."""


Answer = EventMessage | Result | Failure | CancelledReply


@dataclass
class ModelHandle:
    """What the GUI knows of a model living in the engine: everything but the weights."""

    id: str
    kind: str  # "trained", "bundle" or "ensemble"
    source: str  # shown to the user
    preprocessing: Preprocessing
    classes: tuple[str, str]
    threshold: float
    model_id: str = ""
    config: TrainConfig | None = None
    history: dict[str, list[float]] | None = None
    split: Split | Folds | None = None
    best_epoch: int | None = None
    epochs_run: int = 0
    cancelled: bool = False
    folder: str = ""
    trained_on: str = ""  # content hash of the training dataset (from the model / its card)
    n_trained: int = 0  # images in the training dataset (0: not known)
    expected: str = ""  # the card's expected performance on new images (pooled out-of-fold), one line
    # {"series"|"patient": (threshold or None, where it was chosen)}, as `volumes.level_threshold` reads the card.
    level_thresholds: dict[str, tuple[float | None, str]] = field(default_factory=dict)


@dataclass
class TrainingOutcome:
    """The result of a training call: the model handle and its honest predictions."""

    handle: ModelHandle | None
    predictions: Predictions | None  # validation hold-out, or out-of-fold
    description: str
    summary: str
    histories: list[dict[str, list[float]]] = field(default_factory=list)
