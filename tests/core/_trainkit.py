"""Helpers shared by the training/inference/bundle/CLI tests: tiny data, tiny configs, tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import Dataset, discover
from ctviewer.core.model.config import TrainConfig

TINY_SIZE = 32


def tiny_demo(folder: Path, n_patients: int = 5, slices: int = 2, size: int = 48) -> tuple[Dataset, Cache]:
    """A demo CT set (two classes, ``n_patients`` each) and a private cache for it."""
    from ctviewer.core.data.demo import make_demo_dataset

    make_demo_dataset(folder / "data", n_patients=n_patients, slices_per_patient=slices, size=size)
    cache = Cache(folder / "cache")
    return discover(folder / "data", positive="contrast", cache=cache), cache


def tiny_config(**overrides: object) -> TrainConfig:
    """The default recipe at 32 px for 2 epochs: seconds on 2 cores."""
    from ctviewer.core.model.recipes import default_config

    base = default_config("default").with_overrides(input_size=TINY_SIZE, epochs=2, batch_size=8, patience=5)
    return base.with_overrides(**overrides)


def bn_dropout_model(size: int = TINY_SIZE, seed: int = 0):
    """A throwaway model with BatchNorm and Dropout (the original question's ingredients), trained one step
    so that BatchNorm's moving statistics differ from the batch statistics."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 1))
    x = layers.Conv2D(8, 3, padding="same", name="conv_a")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_b")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.7)(x)
    x = layers.Dense(16, activation="relu")(x)
    x = layers.BatchNormalization()(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    x_train = rng.random((16, size, size, 1), dtype=np.float32)
    model.fit(x_train, np.arange(16) % 2, epochs=1, batch_size=8, verbose=0)
    return model
