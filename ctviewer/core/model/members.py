"""The members of a fold ensemble, all computed in one graph: mean probability and member spread.

A fold ensemble (`Ensemble.from_trained`) is one Keras model whose sub-models ``member0``
... ``member{k-1}`` feed an ``Average`` layer named ``mean_probabilities``. For the spread of
the members (how much they disagree on an image), `spread_model` builds a second model on
the very same layers with two outputs: the ensemble's own mean (same layers, same
arithmetic, so the same numbers as the saved model) and the members' positive-class
probabilities stacked (N, k). One forward pass gives both, for every member at once.

A texture ensemble whose members share their frozen networks runs them once, as the sub-model
``shared_texture_features``; its members are then read-outs of those features.
"""

from __future__ import annotations

import re
import weakref
from typing import Any

MEAN_LAYER = "mean_probabilities"
SHARED_FEATURES = "shared_texture_features"
_MEMBER_NAME = re.compile(r"^member\d+$")
# keras.Model -> its spread model (or None when it is not a fold ensemble); built once per model.
_SPREAD_MODELS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def fold_members(model: Any) -> list[Any]:
    """The member sub-models of a fold ensemble, in order; [] for any other model."""
    layers = getattr(model, "layers", None) or []
    if not any(layer.name == MEAN_LAYER for layer in layers):
        return []
    members = [layer for layer in layers if _MEMBER_NAME.match(layer.name) and hasattr(layer, "layers")]
    return sorted(members, key=lambda layer: int(layer.name.removeprefix("member")))


def shared_features(model: Any) -> Any:
    """The feature trunk a texture fold ensemble's members share (their inputs are its output), or None."""
    return next((layer for layer in getattr(model, "layers", []) if layer.name == SHARED_FEATURES), None)


def spread_model(model: Any) -> Any:
    """A model ``x -> [mean probabilities (N, 2), member positive probabilities (N, k)]``, or None.

    None when ``model`` is not a fold ensemble of two or more members.
    """
    try:
        return _SPREAD_MODELS[model]
    except (KeyError, TypeError):
        pass
    members = fold_members(model)
    built = None
    if len(members) >= 2:
        import keras

        inputs = model.inputs[0]
        x = shared_features(model)(inputs) if shared_features(model) is not None else inputs
        outputs = [member(x) for member in members]
        mean = model.get_layer(MEAN_LAYER)(outputs)
        positives = keras.ops.stack([out[:, 1] for out in outputs], axis=1)
        built = keras.Model(inputs, [mean, positives], name=f"{model.name}_with_members")
    try:
        _SPREAD_MODELS[model] = built
    except TypeError:
        pass
    return built
