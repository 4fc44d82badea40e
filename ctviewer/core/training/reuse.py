"""One compiled model reused by the folds of a cross-validation: traced once, re-initialised per fold.

Tracing the training, evaluation and prediction functions of the default recipe (three
members, augmentation, histograms) costs more than ten seconds, about as much as the
training itself on ~100 images. A 5-fold ``train`` or ``cv`` builds five models of the same
architecture, so it paid that five times. `CompiledModelPool` keeps the first fold's
compiled model and, for every later fold, loads a freshly initialised model's variables
(weights, BatchNorm statistics, random-generator states: the fold's own seed) into it and
zeroes the optimizer's state, so a fold trains exactly as a new model would, without a
retrace. When a fold's model must outlive the next fold (an ensemble member),
`CompiledModelPool.detach` copies it into a model of its own.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ctviewer.core.model.config import TrainConfig


def copy_variables(source: Any, target: Any) -> None:
    """Assign every variable of ``source`` (weights, statistics, seed states) to ``target``'s."""
    assign_variables(target, [v.value for v in source.variables])


def assign_variables(target: Any, values: list[Any]) -> None:
    """Assign ``values`` (one per variable of ``target``, in its order) to ``target``'s variables."""
    dst = target.variables
    if len(values) != len(dst) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(values, dst)):
        raise ValueError("models differ in their variables; cannot copy one into the other")
    for value, variable in zip(values, dst):
        variable.assign(value)


def reset_optimizer(optimizer: Any) -> None:
    """Zero an optimizer's state (step count, moments) as if it had never been applied."""
    import keras

    for variable in optimizer.variables:
        variable.assign(keras.ops.zeros(variable.shape, variable.dtype))


class CompiledModelPool:
    """Hands out one compiled model per architecture, re-initialised for each fold's seed."""

    def __init__(self) -> None:
        self._model: Any = None
        self._key: str | None = None
        self._config: TrainConfig | None = None

    @staticmethod
    def _key_of(config: TrainConfig, strategy: Any) -> str:
        # Everything that shapes the graph; the seed only sets initial values, which are reloaded. The
        # precision as built (the environment may override the config's): a bfloat16 and a float32 fold
        # trace different graphs.
        from ctviewer.core.model.recipes import conv_precision_of

        return f"{replace(config, seed=0)!r}/{conv_precision_of(config)}/{id(strategy)}"

    def model_for(self, config: TrainConfig, steps_per_epoch: int, strategy: Any) -> Any:
        """A compiled model for ``config``, initialised as ``build_model(config)`` would be."""
        from ctviewer.core.model.recipes import build_model, compile_model, set_schedule_steps

        key = self._key_of(config, strategy)
        with strategy.scope():
            fresh = build_model(config)
            if self._model is not None and key == self._key:
                copy_variables(fresh, self._model)
                reset_optimizer(self._model.optimizer)
                set_schedule_steps(self._model, steps_per_epoch, config.epochs)
                self._model.stop_training = False
                self._config = config
                return self._model
            compile_model(fresh, config, steps_per_epoch=steps_per_epoch)
        self._model, self._key, self._config = fresh, key, config
        return fresh

    def detach(self, model: Any) -> Any:
        """``model`` itself, or, if it is the pool's (to be re-initialised by the next fold), a copy."""
        if model is not self._model or self._config is None:
            return model
        from ctviewer.core.model.recipes import build_model

        copy = build_model(self._config)
        copy_variables(model, copy)
        return copy
