"""Events that long-running core work (training, cross-validation, prediction) sends out.

Core functions take ``on_event(event)`` and ``should_stop() -> bool``; the GUI re-emits
events as Qt signals, the CLI draws progress bars. Names follow Keras' callbacks
(``on_epoch_end(epoch, logs)`` with ``val_``-prefixed keys) so the logs read the same.

This module never imports TensorFlow, so the GUI can import it at start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FoldStarted:
    """Cross-validation started fold ``fold`` (0-based) of ``folds``."""

    fold: int
    folds: int


@dataclass(frozen=True)
class EpochEnded:
    """Epoch ``epoch`` (0-based) of ``epochs`` ended; ``logs`` are Keras' (``loss``, ``val_auc``...)."""

    epoch: int
    epochs: int
    logs: dict[str, float] = field(default_factory=dict)
    fold: int | None = None


@dataclass(frozen=True)
class BatchEnded:
    """Training batch ``batch`` (0-based) of ``batches`` in epoch ``epoch`` ended."""

    batch: int
    batches: int
    epoch: int
    logs: dict[str, float] = field(default_factory=dict)
    epochs: int | None = None  # set when the run's epoch count differs from the form's (the texture recipe: 1)


@dataclass(frozen=True)
class Message:
    """Something a user should read (``level``: "info", "warning" or "error")."""

    text: str
    level: str = "info"


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` units of ``what`` (e.g. "loading images", "predicting") finished."""

    done: int
    total: int
    what: str


@dataclass(frozen=True)
class ImageFound:
    """A scan read one more image (a viewer can show the first before the scan ends)."""

    path: str


Event = FoldStarted | EpochEnded | BatchEnded | Message | Progress | ImageFound
EventCallback = Callable[[Event], None]
StopCheck = Callable[[], bool]


def emit(on_event: EventCallback | None, event: Event) -> None:
    """Send ``event`` to ``on_event`` when there is one (callers need not check for None)."""
    if on_event is not None:
        on_event(event)


def stop_requested(should_stop: StopCheck | None) -> bool:
    """True when a stop check exists and says stop."""
    return bool(should_stop is not None and should_stop())
