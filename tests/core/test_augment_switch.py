"""TrainConfig.augment switches the recipe's training-only augmentation layers off."""

from __future__ import annotations

import numpy as np

from ctviewer.core.model.recipes import build_model, default_config


def _augmentation_layers(model) -> list[str]:
    names = []
    for layer in model._flatten_layers(include_self=False):
        if "aug_" in layer.name:
            names.append(layer.name)
    return names


def test_default_recipe_with_and_without_augmentation() -> None:
    config = default_config("default").with_overrides(input_size=32)
    with_aug = build_model(config)
    without = build_model(config.with_overrides(augment=False))
    assert _augmentation_layers(with_aug), "the default recipe augments by default"
    assert _augmentation_layers(without) == []
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 1)).astype("float32")
    assert without(x, training=False).shape == (2, 2)
    assert with_aug.count_params() == without.count_params()  # same network, only the input pipeline differs
