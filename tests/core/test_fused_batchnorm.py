"""FusedBatchNormalization: Keras' BatchNorm numbers from TensorFlow's fused kernel (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from ctviewer.core.doctor.model_checks import mode_layers  # noqa: E402
from ctviewer.core.model import recipes  # noqa: E402
from ctviewer.core.model.config import default_config  # noqa: E402
from ctviewer.core.model.layers import FusedBatchNormalization  # noqa: E402


def _maps(n: int = 8, size: int = 16, channels: int = 4) -> np.ndarray:
    rng = np.random.default_rng(0)
    # Per-channel offsets and scales far from 0/1, so a wrong mean or variance shows.
    return (rng.normal(3.0, 2.0, (n, size, size, channels)) * np.arange(1, channels + 1)).astype(np.float32)


def _pair(momentum: float = 0.9) -> tuple[keras.layers.Layer, keras.layers.Layer]:
    plain, fused = keras.layers.BatchNormalization(momentum=momentum), FusedBatchNormalization(momentum=momentum)
    x = _maps()
    plain.build(x.shape)
    fused.build(x.shape)
    rng = np.random.default_rng(1)
    weights = [rng.uniform(0.5, 2.0, 4), rng.normal(0, 1, 4), rng.normal(1, 1, 4), rng.uniform(0.5, 3.0, 4)]
    plain.set_weights([w.astype(np.float32) for w in weights])
    fused.set_weights([w.astype(np.float32) for w in weights])
    return plain, fused


def test_outputs_match_keras_in_training_and_in_inference() -> None:
    plain, fused = _pair()
    x = _maps()
    np.testing.assert_allclose(np.asarray(fused(x, training=False)), np.asarray(plain(x, training=False)), atol=1e-5)
    np.testing.assert_allclose(np.asarray(fused(x, training=True)), np.asarray(plain(x, training=True)), atol=1e-5)


def test_moving_statistics_follow_keras_biased_variance() -> None:
    plain, fused = _pair(momentum=0.5)
    x = _maps()
    before = np.asarray(fused.moving_variance).copy()
    plain(x, training=True)
    fused(x, training=True)
    assert not np.allclose(np.asarray(fused.moving_variance), before)  # it did update
    np.testing.assert_allclose(np.asarray(fused.moving_mean), np.asarray(plain.moving_mean), rtol=1e-5)
    # The fused kernel returns n/(n-1) times the batch variance; the layer must undo that.
    np.testing.assert_allclose(np.asarray(fused.moving_variance), np.asarray(plain.moving_variance), rtol=1e-5)


def _tiny_cnn(norm: type) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 2))
    y = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    y = norm(momentum=0.9)(y)
    y = keras.layers.ReLU()(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(y))


def test_a_training_step_gives_the_weights_keras_gives() -> None:
    plain, fused = _tiny_cnn(keras.layers.BatchNormalization), _tiny_cnn(FusedBatchNormalization)
    fused.set_weights(plain.get_weights())
    x = np.random.default_rng(2).random((8, 16, 16, 2), dtype=np.float32)
    y = np.arange(8) % 2
    for model in (plain, fused):
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
        model.train_on_batch(x, y)
    start = _tiny_cnn(keras.layers.BatchNormalization).get_weights()
    moved = [np.abs(p - s).max() for p, s in zip(plain.get_weights(), start)]
    assert max(moved) > 1e-3  # the step changed the weights, so equality below means something
    for p, f in zip(plain.get_weights(), fused.get_weights()):
        np.testing.assert_allclose(f, p, atol=1e-5)


def test_saved_model_loads_and_predicts_bit_identically(tmp_path) -> None:
    model = _tiny_cnn(FusedBatchNormalization)
    x = np.random.default_rng(3).random((4, 16, 16, 2), dtype=np.float32)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, np.arange(4) % 2, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    assert any(isinstance(layer, FusedBatchNormalization) for layer in loaded.layers)
    np.testing.assert_array_equal(np.asarray(loaded.predict(x, verbose=0)), np.asarray(model.predict(x, verbose=0)))


def test_default_recipe_uses_it_and_the_benchmark_switch_selects_keras(monkeypatch) -> None:
    config = default_config("default").with_overrides(input_size=32)

    def norm_kinds() -> set[str]:
        model = recipes.build_model(config)
        return {type(layer).__name__ for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}

    assert "FusedBatchNormalization" in norm_kinds()
    monkeypatch.setenv(recipes.TRAINING_PATH_ENV, "before-issue-15")
    assert "FusedBatchNormalization" not in norm_kinds()


def test_doctor_counts_it_as_a_batchnorm_layer() -> None:
    found = mode_layers(_tiny_cnn(FusedBatchNormalization))
    assert "BatchNormalization" in found
