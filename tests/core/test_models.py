"""core.models / core.layers: every model by name, the seed network's shape, save/load, inference
determinism, custom layers' arithmetic, and the offline ImageNet-weights path (no internet)."""

from __future__ import annotations

import socket
from dataclasses import replace

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from ctviewer.core.data import imaging
from ctviewer.core.errors import ModelError
from ctviewer.core.model import layers as ct_layers
from ctviewer.core.model import recipes as models
from ctviewer.core.model.config import TrainConfig

SIZE = 32


def _images(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Wide-window images: a 'body' disc of soft tissue with a brighter (enhanced) spot."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size, 1), np.float32)
    for i in range(n):
        hu = np.full((size, size), -1000.0)
        hu[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.4) ** 2] = 40.0
        cy, cx = rng.integers(size // 3, 2 * size // 3, 2)
        hu[(yy - cy) ** 2 + (xx - cx) ** 2 < 9] = rng.uniform(40, 300)
        hu += rng.normal(0, 15, hu.shape)
        out[i, ..., 0] = imaging.apply_window(hu, 0.0, 2000.0)
    return out


def _config(name: str, **overrides) -> TrainConfig:
    return replace(models.default_config(name), **{"input_size": SIZE, "weights": None, **overrides})


@pytest.fixture(scope="module")
def trained_default() -> keras.Model:
    """The default model after one short epoch, so BatchNorm statistics are not the initial ones."""
    keras.utils.set_random_seed(1)
    config = _config("default", epochs=1, batch_size=4)
    model = models.build_model(config)
    models.compile_model(model, config, steps_per_epoch=2)
    x = _images(8)
    model.fit(x, np.array([0, 1] * 4), epochs=1, batch_size=4, verbose=0)
    return model


# --------------------------------------------------------------------------- names and outputs


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_every_model_builds_with_two_column_softmax(name: str) -> None:
    model = models.build_model(_config(name))
    x = _images(3)
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (3, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(probs >= 0)
    assert model.input_shape == (None, SIZE, SIZE, 1)


def test_default_config_names_its_model_and_differs_per_recipe() -> None:
    for name in models.MODEL_NAMES:
        assert models.default_config(name).model == name
    seed = models.default_config("seed")
    assert (seed.optimizer, seed.batch_size, seed.epochs) == ("sgd", 10, 50)
    assert models.default_config("default").optimizer != "sgd"
    assert models.default_config("resnet50").weights == "imagenet"


def test_unknown_model_name_lists_the_valid_ones() -> None:
    with pytest.raises(ModelError) as err:
        models.build_model(TrainConfig(model="alexnet", input_size=SIZE))
    for name in models.MODEL_NAMES:
        assert name in str(err.value)
    with pytest.raises(ModelError):
        models.default_config("vgg")


@pytest.mark.parametrize("name, size", [("default", 8), ("seed", 16), ("resnet50", 24)])
def test_too_small_input_is_a_model_error(name: str, size: int) -> None:
    with pytest.raises(ModelError, match="too small"):
        models.build_model(_config(name, input_size=size))


@pytest.mark.parametrize("size", [40, 100])
def test_default_accepts_sizes_that_are_not_powers_of_two(size: int) -> None:
    model = models.build_model(_config("default", input_size=size))
    assert np.asarray(model(_images(2, size=size), training=False)).shape == (2, 2)


# --------------------------------------------------------------------------- the question's network


def test_seed_is_the_questions_network() -> None:
    model = models.build_model(_config("seed", input_size=64))
    kinds = [type(layer).__name__ for layer in model.layers if type(layer).__name__ != "InputLayer"]
    assert kinds == (
        ["Conv2D", "BatchNormalization", "MaxPooling2D"] * 3
        + ["Flatten", "Dropout"]
        + ["Dense", "BatchNormalization"] * 3
        + ["Dense"]
    )
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(c.filters == 32 and c.kernel_size == (3, 3) and c.activation.__name__ == "relu" for c in convs)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [16, 8, 4, 2]
    assert [d.activation.__name__ for d in dense] == ["relu", "relu", "relu", "softmax"]
    dropout = next(layer for layer in model.layers if isinstance(layer, keras.layers.Dropout))
    assert dropout.rate == pytest.approx(0.7)


def test_default_is_the_documented_ensemble_without_lambda_layers() -> None:
    model = models.build_model(_config("default"))
    kinds = [type(layer).__name__ for layer in model.layers]
    members = models.DefaultArchitecture().members
    assert members > 1 and kinds[-1] == "Average"
    for kind in ("MaskedSoftHistogram", "SoftHistogram", "WindowToHU", "WindowChannels", "IntensityJitter",
                 "RandomAffine"):
        assert kinds.count(kind) == members, kind
    assert "Lambda" not in kinds


# --------------------------------------------------------------------------- compile, save, inference


def test_compile_model_logs_accuracy_and_positive_class_auc() -> None:
    config = _config("default", epochs=1, batch_size=4)
    model = models.compile_model(models.build_model(config), config, steps_per_epoch=2)
    history = model.fit(_images(8), np.array([0, 1] * 4), epochs=1, batch_size=4, verbose=0,
                        validation_data=(_images(4, seed=1), np.array([0, 1, 0, 1])))
    for key in ("loss", "accuracy", "auc", "val_loss", "val_accuracy", "val_auc"):
        assert key in history.history
    assert isinstance(model.optimizer, keras.optimizers.AdamW)


@pytest.mark.parametrize("name", ["default", "seed"])
def test_the_train_step_creates_no_variable_so_it_is_traced_once(name: str) -> None:
    # A variable created inside a tf.function's first trace (Keras' optimiser slots, built lazily) makes
    # TensorFlow trace the whole train step again: seconds per fit, per fold worker.
    import tensorflow as tf

    config = _config(name, epochs=1, batch_size=4)
    model = models.compile_model(models.build_model(config), config, steps_per_epoch=2)
    made_in_a_trace: list[str] = []

    def watch(next_creator, **kwargs):
        if not tf.executing_eagerly():
            made_in_a_trace.append(str(kwargs.get("name")))
        return next_creator(**kwargs)

    with tf.variable_creator_scope(watch):
        model.fit(_images(8), np.array([0, 1] * 4), epochs=1, batch_size=4, verbose=0,
                  validation_data=(_images(4, seed=1), np.array([0, 1, 0, 1])))
        model.predict(_images(4), verbose=0)
    assert made_in_a_trace == []
    assert int(model.optimizer.iterations.numpy()) == 2  # the steps ran under the watch


@pytest.mark.parametrize("optimizer, schedule", [("sgd", "constant"), ("adam", "cosine")])
def test_compile_model_honours_optimizer_and_schedule(optimizer: str, schedule: str) -> None:
    config = _config("seed", optimizer=optimizer, schedule=schedule, learning_rate=0.05, epochs=10)
    model = models.compile_model(models.build_model(config), config, steps_per_epoch=3)
    expected = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}[optimizer]
    assert type(model.optimizer) is expected
    lr = model.optimizer._learning_rate  # the schedule object or the constant
    if schedule == "cosine":
        assert isinstance(lr, keras.optimizers.schedules.CosineDecay)
        assert float(lr(30)) == pytest.approx(0.0, abs=1e-7)  # decays to 0 over epochs * steps
    else:
        assert float(model.optimizer.learning_rate) == pytest.approx(0.05)


def test_positive_class_auc_matches_the_rank_definition() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    p1 = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    probs = np.stack([1 - p1, p1], axis=1)
    pos, neg = p1[y == 1], p1[y == 0]
    expected = np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg])
    for labels in (y, np.eye(2)[y]):  # sparse and one-hot
        metric = ct_layers.PositiveClassAUC()
        metric.update_state(labels, probs)
        assert float(metric.result()) == pytest.approx(expected, abs=0.01)


def test_default_model_round_trips_through_safe_mode_load(tmp_path, trained_default) -> None:
    path = tmp_path / "model.keras"
    trained_default.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    x = _images(5, seed=3)
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)), np.asarray(trained_default(x, training=False)))
    assert [type(layer).__name__ for layer in loaded.layers] == [type(layer).__name__ for layer in trained_default.layers]


def test_augmentation_is_active_only_when_training(trained_default) -> None:
    x = _images(6, seed=4)
    first = np.asarray(trained_default(x, training=False))
    again = np.asarray(trained_default(x, training=False))
    np.testing.assert_array_equal(first, again)
    # Another batch size may round differently (more so with bfloat16 conv blocks, "auto" on a CPU
    # that has them: 2e-6 measured), never by more than float noise.
    alone = np.concatenate([np.asarray(trained_default(x[i : i + 1], training=False)) for i in range(len(x))])
    np.testing.assert_allclose(alone, first, rtol=0, atol=1e-5)
    by_predict = trained_default.predict(x, batch_size=4, verbose=0)
    np.testing.assert_allclose(by_predict, first, rtol=0, atol=1e-5)
    # The same call with training=True draws augmentations (and batch statistics): it differs.
    assert not np.allclose(np.asarray(trained_default(x, training=True)), first, atol=1e-6)


# --------------------------------------------------------------------------- custom layers


def test_window_to_hu_inverts_the_wide_window() -> None:
    hu = np.array([[-1000.0, -200.0, 0.0, 40.0, 250.0, 1000.0]], np.float32)
    x = imaging.apply_window(hu, 0.0, 2000.0)
    np.testing.assert_allclose(np.asarray(ct_layers.WindowToHU(0.0, 2000.0)(x)), hu, atol=1e-3)


def test_window_channels_map_each_window_to_unit_range() -> None:
    hu = np.array([-1000.0, 40.0, 150.0, 300.0], np.float32).reshape(1, 1, 4, 1)
    out = np.asarray(ct_layers.WindowChannels([(40.0, 400.0), (150.0, 300.0)])(hu))
    assert out.shape == (1, 1, 4, 2)
    np.testing.assert_allclose(out[0, 0, :, 0], [0.0, 0.5, 0.775, 1.0], atol=1e-6)
    np.testing.assert_allclose(out[0, 0, :, 1], [0.0, 0.133333, 0.5, 1.0], atol=1e-5)


def test_soft_histogram_is_a_distribution_over_body_pixels() -> None:
    hu = np.full((2, 8, 8, 1), -1000.0, np.float32)  # air does not count
    hu[0, :4] = 0.0  # image 0: half soft tissue at 0 HU ...
    hu[0, 4:6] = 200.0  # ... a quarter at 200 HU
    hu[1, :2] = 100.0  # image 1: a small body, all at 100 HU
    layer = ct_layers.SoftHistogram(low_hu=-200.0, high_hu=600.0, bins=9, log=False)  # 100 HU bins
    out = np.asarray(layer(hu))
    assert out.shape == (2, 9)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out[0, 2], 32 / 48, atol=1e-6)  # bin centred at 0 HU
    np.testing.assert_allclose(out[0, 4], 16 / 48, atol=1e-6)  # bin centred at 200 HU
    np.testing.assert_allclose(out[1, 3], 1.0, atol=1e-6)  # normalised by the body, not the image


def test_masked_histogram_measures_inside_the_mask() -> None:
    hu = np.zeros((1, 4, 4, 1), np.float32)
    hu[0, :, :2] = 200.0
    masks = np.zeros((1, 4, 4, 2), np.float32)
    masks[0, :, :2, 0] = 1.0  # mask 0: the 200 HU half
    masks[0, ..., 1] = 1.0  # mask 1: everything
    out = np.asarray(ct_layers.MaskedSoftHistogram(-200.0, 600.0, 9, log=False)([hu, masks])).reshape(2, 9)
    np.testing.assert_allclose(out[0, 4], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[1, [2, 4]], [0.5, 0.5], atol=1e-6)


def test_intensity_jitter_changes_hu_only_in_training() -> None:
    layer = ct_layers.IntensityJitter(offset_hu=20.0, gain=0.05, seed=3)
    hu = np.full((4, 2, 2, 1), 100.0, np.float32)
    np.testing.assert_array_equal(np.asarray(layer(hu, training=False)), hu)
    jittered = np.asarray(layer(hu, training=True))
    assert not np.allclose(jittered, hu)
    assert np.all(np.abs(jittered - hu) <= 20.0 + 0.05 * 100.0 + 1e-4)
    # one offset/gain per image, not per pixel
    assert np.allclose(jittered, jittered[:, :1, :1, :])


# --------------------------------------------------------------------------- ImageNet weights offline


def test_backbone_loads_a_local_weights_file(tmp_path) -> None:
    reference = keras.applications.EfficientNetB0(
        include_top=False, weights=None, input_shape=(SIZE, SIZE, 3), pooling="avg"
    )
    path = tmp_path / "efficientnetb0_notop.weights.h5"
    reference.save_weights(path)
    model = models.build_model(_config("efficientnetb0", weights=str(path)))
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    assert not backbone.trainable
    for got, want in zip(backbone.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_missing_weights_file_is_a_model_error(tmp_path) -> None:
    missing = tmp_path / "nope.h5"
    with pytest.raises(ModelError, match="nope.h5"):
        models.build_model(_config("resnet50", weights=str(missing)))


def test_imagenet_uses_the_keras_cache_before_the_network(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cached = tmp_path / "models" / "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"placeholder")
    assert models.resolve_weights("densenet121", "imagenet") == str(cached)


def test_imagenet_weights_names_the_file_resolve_weights_finds(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    for name in models.BACKBONES:
        published = models.imagenet_weights(f" {name.upper()} ")
        assert published.url.endswith("/" + published.file_name)
        cached = models.keras_cache_dir() / published.file_name
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(b"placeholder")
        assert models.resolve_weights(name, "imagenet") == str(cached)
    for name in ("default", "seed", "vgg16"):
        with pytest.raises(ModelError, match=name):
            models.imagenet_weights(name)


def test_imagenet_offline_without_cache_says_what_to_download(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", offline)
    monkeypatch.setattr(socket.socket, "connect", offline)
    with pytest.raises(ModelError) as err:
        models.build_model(_config("resnet50", weights="imagenet"))
    message = str(err.value)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "models") in message
    assert "--weights" in message


def test_no_network_without_allow_download(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv(models.ALLOW_DOWNLOAD_ENV, raising=False)
    touched = []

    def record(*args, **kwargs):
        touched.append(args)
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "getaddrinfo", record)
    monkeypatch.setattr(socket, "create_connection", record)
    with pytest.raises(ModelError) as err:
        models.build_model(_config("efficientnetb0", weights="imagenet"))
    assert not touched
    message = str(err.value)
    assert "--allow-download" in message and str(tmp_path / "models") in message
    assert models.imagenet_weights("efficientnetb0").file_name in message

    monkeypatch.setenv(models.ALLOW_DOWNLOAD_ENV, "1")  # allowed: the download is tried (and fails here)
    with pytest.raises(ModelError, match="download failed"):
        models.build_model(_config("efficientnetb0", weights="imagenet"))
    assert touched
