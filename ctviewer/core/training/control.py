"""The Keras callback of every training: events out, cancel in, early stopping and best weights."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ctviewer.core.errors import TrainingError
from ctviewer.core.events import BatchEnded, EpochEnded, EventCallback, Message, StopCheck, emit, stop_requested
from ctviewer.core.model.config import TrainConfig


def _monitor_mode(monitor: str) -> str:
    return "max" if any(k in monitor for k in ("auc", "acc")) else "min"


def _make_control_callback(epochs: int, batches: int, config: TrainConfig, monitor: str,
                           on_event: EventCallback | None, should_stop: StopCheck | None,
                           fold: int | None) -> Any:
    import keras

    class TrainingControl(keras.callbacks.Callback):
        """Events out, cancel in, early stopping and best weights in one place.

        A cancel stops training after the current batch. The interrupted epoch's numbers
        cover part of an epoch (and part of the validation set, which is cut short too),
        so that epoch is left out of the history and of the best-weights choice.
        """

        def on_train_begin(self, logs: Any = None) -> None:
            self.history: dict[str, list[float]] = {}
            self.best: float | None = None
            self.best_epoch: int | None = None
            self.best_weights: list[np.ndarray] | None = None
            self.wait = 0
            self.cancelled = False
            self.epochs_run = 0
            self.epoch = 0
            self.sign = 1.0 if _monitor_mode(monitor) == "max" else -1.0

        def _check_cancel(self) -> None:
            if not self.cancelled and stop_requested(should_stop):
                self.cancelled = True
                self.model.stop_training = True

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch = epoch
            self._check_cancel()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            values = _floats(logs)
            _refuse_non_finite_loss(values, f"epoch {self.epoch + 1}, batch {batch + 1}", fold)
            emit(on_event, BatchEnded(batch, batches, self.epoch, values))
            self._check_cancel()

        def on_test_batch_end(self, batch: int, logs: Any = None) -> None:
            self._check_cancel()
            if self.cancelled:
                self.model.stop_evaluating = True

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if self.cancelled:
                emit(on_event, Message(f"stopped during epoch {epoch + 1}; keeping the best completed epoch"))
                return
            logs = _floats(logs)
            _refuse_non_finite_loss(logs, f"epoch {epoch + 1}", fold)
            self.epochs_run = epoch + 1
            for key, value in logs.items():
                self.history.setdefault(key, []).append(value)
            emit(on_event, EpochEnded(epoch, epochs, logs, fold))
            value = logs.get(monitor)
            if value is not None and math.isfinite(value) and (self.best is None or self.sign * (value - self.best) > 0):
                self.best, self.best_epoch, self.wait = value, epoch, 0
                if config.restore_best:
                    self.best_weights = [np.array(w, copy=True) for w in self.model.get_weights()]
            else:
                self.wait += 1
                if self.wait >= config.patience:
                    emit(on_event, Message(
                        f"early stopping after epoch {epoch + 1}: {monitor} did not improve for {self.wait} epochs"))
                    self.model.stop_training = True

        def on_train_end(self, logs: Any = None) -> None:
            if config.restore_best and self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return TrainingControl()


def _refuse_non_finite_loss(logs: dict[str, float], when: str, fold: int | None) -> None:
    """Stop at once: a NaN/Inf loss never recovers, and weights trained on it give NaN probabilities."""
    for key in ("loss", "val_loss"):
        value = logs.get(key)
        if value is not None and not math.isfinite(value):
            where = f"fold {fold + 1}, " if fold is not None else ""
            raise TrainingError(f"training stopped: {key} became {value} at {where}{when}; an input or a setting "
                                "(e.g. the learning rate) gives non-finite numbers. Nothing was saved.")


def _floats(logs: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (logs or {}).items():
        try:
            out[str(key)] = float(np.asarray(value))
        except (TypeError, ValueError):
            continue
    return out

