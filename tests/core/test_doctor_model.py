"""Doctor checks that run a model: each is tested on real Keras output, firing and staying quiet.

Tiny 16 px models and synthetic arrays keep the file fast.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from ctviewer.core.doctor.model_checks import (
    call_probs,
    check_baseline,
    check_mode_mismatch,
    check_prediction_collapse,
    check_unnormalised_input,
    check_unstable_predictions,
    mode_layers,
    weights_restored,
)
from ctviewer.core.doctor.model_source import as_model_under_test, detect_input_scale, shape_for_model
from ctviewer.core.errors import ModelError

SIZE = 16


def hu_images(n: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, 16, 16) HU phantoms: air around a 40 HU body; class 1 has a bright (250 HU) spot."""
    rng = np.random.default_rng(seed)
    x = np.full((n, SIZE, SIZE), -1000.0, dtype=np.float32)
    y = np.arange(n) % 2
    for i in range(n):
        x[i, 3:13, 3:13] = 40.0 + rng.normal(0, 10, (10, 10))
        if y[i]:
            r, c = rng.integers(4, 10, 2)
            x[i, r:r + 3, c:c + 3] = 250.0
    return x, y


def scales_of(hu: np.ndarray) -> dict[str, np.ndarray]:
    unit = np.clip((hu + 1000.0) / 2000.0, 0.0, 1.0)
    return {"unit": unit[..., None], "hu": hu[..., None], "raw": (hu + 1024.0)[..., None]}


def small_model(bn: bool = True, dropout: float = 0.0, momentum: float = 0.99,
                rescale: float | None = None) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 1))
    x = inputs
    if rescale is not None:
        x = keras.layers.Rescaling(rescale)(x)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    if bn:
        x = keras.layers.BatchNormalization(momentum=momentum)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    if dropout:
        x = keras.layers.Dropout(dropout, seed=1)(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def brightness_model() -> keras.Model:
    """Class 1 when the brightest pixel is above ~0.58 (HU 160): separates the phantoms, never collapses."""
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.GlobalMaxPooling2D()(inputs)
    dense = keras.layers.Dense(2, activation="softmax")
    outputs = dense(x)
    model = keras.Model(inputs, outputs)
    dense.set_weights([np.array([[-100.0, 100.0]], dtype=np.float32), np.array([58.0, -58.0], dtype=np.float32)])
    return model


@keras.saving.register_keras_serializable(package="ctviewer_tests")
class NoiseAlways(keras.layers.Layer):
    """A custom augmentation layer that forgets to check ``training``: random at inference too."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(1)

    def call(self, inputs):
        return inputs + keras.random.normal(keras.ops.shape(inputs), stddev=0.5, seed=self.seed_generator)


def unit_images(n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    hu, y = hu_images(n)
    return scales_of(hu)["unit"], y


# --------------------------------------------------------------------------- collapse


def test_collapse_fires_on_a_model_whose_output_bias_forces_one_class():
    model = small_model(bn=False)
    last = model.layers[-1]
    kernel, _ = last.get_weights()
    last.set_weights([kernel * 0.01, np.array([0.0, 8.0], dtype=np.float32)])
    x, y = unit_images()
    probs = call_probs(model, x, training=False)
    [f] = check_prediction_collapse(probs, 0.5, y, ("no", "yes"))
    assert f.severity == "error" and f.evidence["n_called_positive"] == len(x)
    assert "yes" in f.message and f.evidence["true_class_counts"] == {"no": 16, "yes": 16}


def test_collapse_fires_when_probabilities_hardly_depend_on_the_image():
    probs = 0.5 + np.linspace(-0.002, 0.002, 10)  # split by the threshold, yet flat
    [f] = check_prediction_collapse(probs, 0.5, np.arange(10) % 2)
    assert "span only" in f.message and f.evidence["prob_spread"] < 0.01


def test_collapse_quiet_for_a_model_that_separates():
    x, y = unit_images()
    probs = call_probs(brightness_model(), x, training=False)
    assert len(set((probs >= 0.5).tolist())) == 2
    assert check_prediction_collapse(probs, 0.5, y) == []


# --------------------------------------------------------------------------- training vs inference mode


def test_mode_mismatch_fires_for_untrained_batchnorm_and_restores_the_weights():
    model = small_model(bn=True, dropout=0.5)
    x, y = scales_of(hu_images()[0])["hu"], hu_images()[1]  # BN at its initial statistics, inputs far from them
    before = [w.copy() for w in model.get_weights()]
    [f] = check_mode_mismatch(model, x, 0.5, y)
    assert f.code == "batchnorm-mode-mismatch" and f.severity == "warning"
    assert f.evidence["max_prob_change"] > 0.05
    assert set(f.evidence["layers"]) == {"BatchNormalization", "Dropout"}
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    # Inside ctviewer (always training=False) the same numbers are only information.
    [g] = check_mode_mismatch(model, x, 0.5, y, ctviewer_model=True)
    assert g.severity == "info"


def test_mode_mismatch_quiet_without_mode_layers_or_with_fitting_statistics():
    x, y = unit_images()
    assert mode_layers(brightness_model()) == {}
    assert check_mode_mismatch(brightness_model(), x, 0.5, y) == []
    # BatchNorm whose moving statistics are those of this data: both modes agree.
    model = small_model(bn=True, momentum=0.0)
    model(x, training=True)  # momentum 0: the moving statistics become this batch's statistics
    assert check_mode_mismatch(model, x, 0.5, y, batch_size=len(x)) == []


def test_weights_restored_undoes_batchnorm_updates():
    model = small_model(bn=True, momentum=0.0)
    x, _ = unit_images()
    before = [w.copy() for w in model.get_weights()]
    with weights_restored(model):
        model(x, training=True)
        assert not all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


# --------------------------------------------------------------------------- stability


def test_unstable_predictions_error_when_inference_mode_is_random():
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.GlobalAveragePooling2D()(NoiseAlways()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    x, _ = unit_images()
    [f] = check_unstable_predictions(model, x)
    assert f.severity == "error"
    assert f.evidence["training_false"]["max_change_between_calls"] > 1e-4


def test_unstable_predictions_warns_for_training_mode_of_a_plain_model():
    model = small_model(bn=True, dropout=0.5)
    x = scales_of(hu_images()[0])["unit"]
    [f] = check_unstable_predictions(model, x)
    assert f.severity == "warning" and "training=True" in f.message
    assert f.evidence["training_false"]["max_change_between_calls"] <= 1e-4
    assert f.evidence["training_false"]["max_change_alone_vs_batch"] <= 1e-4
    assert max(f.evidence["training_true"].values()) > 1e-4
    # A ctviewer model is never called in training mode for predictions: nothing to report.
    assert check_unstable_predictions(model, x, ctviewer_model=True) == []


def test_unstable_predictions_quiet_for_a_deterministic_model():
    x, _ = unit_images()
    assert check_unstable_predictions(brightness_model(), x) == []


# --------------------------------------------------------------------------- input scale


def _trained_on(scale: str) -> tuple[keras.Model, dict[str, np.ndarray]]:
    hu, y = hu_images(48)
    arrays = scales_of(hu)
    model = small_model(bn=True, momentum=0.5)
    model.compile(optimizer=keras.optimizers.SGD(1e-6), loss="sparse_categorical_crossentropy")
    model.fit(arrays[scale], y, epochs=2, batch_size=8, verbose=0)
    return model, arrays


def test_unnormalised_input_detected_from_batchnorm_statistics():
    model, arrays = _trained_on("hu")
    report = detect_input_scale(as_model_under_test(model), arrays)
    assert report.evidence_kind == "batchnorm" and report.detected in ("hu", "raw")
    assert report.batchnorm_mismatch["unit"] > report.batchnorm_mismatch[report.detected]
    [f] = check_unnormalised_input(report)
    assert f.code == "unnormalised-input" and f.evidence["detected_scale"] == report.detected


def test_unnormalised_input_quiet_for_a_model_trained_on_unit_images():
    model, arrays = _trained_on("unit")
    report = detect_input_scale(as_model_under_test(model), arrays)
    assert report.detected == "unit" and report.chosen == "unit"
    assert check_unnormalised_input(report) == []


def test_a_rescaling_layer_counts_as_normalisation_and_tells_the_scale():
    model = small_model(bn=False, rescale=1.0 / 4095.0)
    report = detect_input_scale(as_model_under_test(model), scales_of(hu_images()[0]))
    assert report.evidence_kind == "normalisation-layer" and report.chosen == "raw"
    assert check_unnormalised_input(report) == []


def test_forcing_hu_on_a_unit_model_is_flagged():
    model, arrays = _trained_on("unit")
    report = detect_input_scale(as_model_under_test(model), arrays, forced="hu")
    assert report.chosen == "hu" and report.detected == "unit"
    [f] = check_unnormalised_input(report)
    assert "trained on" in f.message


# --------------------------------------------------------------------------- baseline


class _Baseline:
    def __init__(self, auc: float) -> None:
        from ctviewer.core.metrics.evaluation import Interval

        self.auc, self.auc_ci, self.accuracy, self.k = auc, Interval(auc - 0.05, min(1.0, auc + 0.05)), 0.9, 5


def test_baseline_beats_model_fires_when_the_model_is_no_better():
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    [f] = check_baseline(rng.random(40), y, _Baseline(0.95))
    assert f.code == "baseline-beats-model" and f.evidence["baseline_auc"] == 0.95
    [g] = check_baseline(1.0 - y * 0.9, y, _Baseline(0.95))  # ranks the classes backwards
    assert "swapped" in g.message


def test_baseline_quiet_when_the_model_is_clearly_better():
    y = np.arange(40) % 2
    assert check_baseline(y * 0.8 + 0.1, y, _Baseline(0.9)) == []


# --------------------------------------------------------------------------- loading


def test_model_under_test_rejects_what_it_cannot_examine(tmp_path):
    with pytest.raises(ModelError, match="no such"):
        as_model_under_test(tmp_path / "missing.keras")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelError, match="not a Keras model file"):
        as_model_under_test(tmp_path / "notes.txt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ModelError, match="SavedModel"):
        as_model_under_test(tmp_path / "folder")
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="cannot be loaded"):
        as_model_under_test(tmp_path / "broken.keras")
    inputs = keras.Input((8, 8, 5))
    five = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
    with pytest.raises(ModelError, match="5 channels"):
        as_model_under_test(five)


def test_plain_models_load_safely_from_keras_and_h5(tmp_path):
    model = small_model(bn=True)
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    for name in ("m.keras", "m.h5"):
        mut = as_model_under_test(tmp_path / name)
        assert mut.kind == "plain" and mut.size == SIZE and mut.channels == 1
        x, _ = unit_images(4)
        assert np.allclose(call_probs(mut.model, x, False), call_probs(model, x, False), atol=1e-6)
    lam_in = keras.Input((SIZE, SIZE, 1))
    lam = keras.layers.Lambda(lambda t: t * 2.0)(lam_in)
    lam_model = keras.Model(lam_in, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(lam)))
    lam_model.save(tmp_path / "lambda.keras")
    with pytest.raises(ModelError, match="safe mode"):
        as_model_under_test(tmp_path / "lambda.keras")


def test_three_channel_models_get_grey_repeated():
    x = np.random.default_rng(0).random((2, SIZE, SIZE)).astype(np.float32)
    rgb = shape_for_model(x, 3)
    assert rgb.shape == (2, SIZE, SIZE, 3) and np.array_equal(rgb[..., 0], rgb[..., 2])
