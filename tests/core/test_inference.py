"""predict: the same image gives the same probability alone, in any batch, on every call; TTA; Grad-CAM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _trainkit import TINY_SIZE, bn_dropout_model, tiny_demo

from ctviewer.core.data.dataset import discover
from ctviewer.core.data.imaging import Preprocessing
from ctviewer.core.errors import Cancelled, ModelError
from ctviewer.core.events import Progress
from ctviewer.core.explain.gradcam import conv_layers, default_layers, grad_cam
from ctviewer.core.model.inference import predict, predict_arrays


@pytest.fixture(scope="module")
def model():
    return bn_dropout_model()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).random((13, TINY_SIZE, TINY_SIZE), dtype=np.float32)


def test_same_image_same_probability_alone_in_any_batch_and_every_call(model, images):
    together = predict_arrays(model, images, batch_size=8)
    again = predict_arrays(model, images, batch_size=8)
    alone = np.array([predict_arrays(model, images[i : i + 1], batch_size=8)[0] for i in range(len(images))])
    order = np.random.default_rng(0).permutation(len(images))
    shuffled = np.empty_like(together)
    shuffled[order] = predict_arrays(model, images[order], batch_size=8)
    mixed = predict_arrays(model, np.concatenate([images[:3], np.zeros_like(images[:5])]), batch_size=8)[:3]
    np.testing.assert_array_equal(together, again)
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_array_equal(together, shuffled)
    np.testing.assert_array_equal(together[:3], mixed)
    # Other batch sizes run other kernels: equal to float32 rounding, far below the bug's size.
    for batch_size in (1, 5, 32):
        np.testing.assert_allclose(predict_arrays(model, images, batch_size=batch_size), together, atol=1e-6)


def test_the_question_bug_is_real_for_this_model(model, images):
    """Guard for the test above: in training mode the same model does depend on the batch."""
    x = images[..., None]
    alone = np.asarray(model(x[:1], training=True))[0, 1]
    in_batch = np.asarray(model(x, training=True))[0, 1]
    assert abs(alone - in_batch) > 1e-3


def test_tta_is_deterministic_and_averages_the_mirror(model, images):
    plain = predict_arrays(model, images, batch_size=8)
    mirror = predict_arrays(model, images[:, :, ::-1], batch_size=8)
    tta = predict_arrays(model, images, batch_size=8, tta=True)
    np.testing.assert_array_equal(tta, predict_arrays(model, images, batch_size=8, tta=True))
    np.testing.assert_allclose(tta, (plain + mirror) / 2, atol=1e-12)
    assert not np.allclose(tta, plain)


def test_predict_dataset_labelled_and_unlabelled(model, tmp_path: Path):
    dataset, cache = tiny_demo(tmp_path, n_patients=2, slices=2)
    events = []
    pred = predict(model, dataset, batch_size=3, cache=cache, on_event=events.append)
    assert pred.paths == dataset.paths and pred.labels == [it.label for it in dataset.items]
    assert pred.classes == ("no_contrast", "contrast") and pred.threshold == 0.5
    assert [e.done for e in events if isinstance(e, Progress)] == [3, 6, 8]
    direct = predict_arrays(model, np.stack([cache.array(p, Preprocessing("wide", TINY_SIZE)) for p in pred.paths]),
                            batch_size=3)
    np.testing.assert_array_equal(pred.probs, direct)

    # A folder without class subfolders: unlabelled, still predicted.
    unlabelled = discover(tmp_path / "data" / "contrast" / "DEMO-0000", cache=cache)
    assert not unlabelled.is_labelled
    pred_u = predict(model, unlabelled, cache=cache)
    assert len(pred_u) == 2 and pred_u.labels == [None, None] and list(pred_u.y_true) == [-1, -1]

    with pytest.raises(Cancelled):
        predict(model, dataset, cache=cache, should_stop=lambda: True)
    with pytest.raises(ModelError, match="expects 32x32"):
        predict(model, np.zeros((2, 40, 40), np.float32))


def test_grad_cam_finds_the_last_conv_and_returns_a_normalised_map(model, images):
    assert conv_layers(model)[-1][1].name == "conv_b"
    heat = grad_cam(model, images[0])
    assert heat.shape == (TINY_SIZE, TINY_SIZE) and heat.dtype == np.float32
    assert 0.0 <= heat.min() and heat.max() <= 1.0
    heat_a = grad_cam(model, images[0][..., None], layer_name="conv_a")
    assert heat_a.shape == (TINY_SIZE, TINY_SIZE)
    # The layer's own call is restored afterwards: prediction is unchanged.
    np.testing.assert_array_equal(predict_arrays(model, images[:2]), predict_arrays(model, images[:2]))
    assert "call" not in vars(conv_layers(model)[-1][1])
    with pytest.raises(ModelError, match="no layer named"):
        grad_cam(model, images[0], layer_name="nope")


def test_grad_cam_looks_where_the_score_comes_from_inside_a_nested_backbone():
    """A nested backbone whose score is the mean brightness: the map peaks on the bright square."""
    import keras
    from keras import layers

    size = 16
    inner_in = keras.Input((size, size, 1))
    conv = layers.Conv2D(2, 1, use_bias=False, kernel_initializer="ones", activation="relu", name="inner_conv")
    backbone = keras.Model(inner_in, layers.GlobalAveragePooling2D()(conv(inner_in)), name="backbone")
    outer_in = keras.Input((size, size, 1))
    head = layers.Dense(2, activation="softmax",
                        kernel_initializer=keras.initializers.Constant([[-1.0, 1.0], [-1.0, 1.0]]))
    model = keras.Model(outer_in, head(backbone(outer_in)))
    assert conv_layers(model)[-1][0] == "backbone/inner_conv"
    image = np.full((size, size), 0.05, np.float32)
    image[2:6, 9:13] = 1.0
    heat = grad_cam(model, image)
    assert heat[2:6, 9:13].min() == pytest.approx(1.0)
    outside = np.ones_like(heat, dtype=bool)
    outside[1:7, 8:14] = False
    assert heat[outside].max() < 0.1
    # Explaining the negative class instead: nothing raises its score, so the map is empty.
    assert np.all(grad_cam(model, image, class_index=0) == 0.0)


def test_grad_cam_explains_feature_maps_not_a_sigmoid_gate():
    """A 1x1 sigmoid gate after the feature convolution is skipped: its Grad-CAM is not the default."""
    import keras
    from keras import layers

    inputs = keras.Input((16, 16, 1))
    features = layers.Conv2D(4, 3, padding="same", activation="relu", name="features")(inputs)
    gate = layers.Conv2D(1, 1, activation="sigmoid", name="gate")(features)
    pooled = layers.Concatenate()([layers.GlobalAveragePooling2D()(features), layers.GlobalAveragePooling2D()(gate)])
    model = keras.Model(inputs, layers.Dense(2, activation="softmax")(pooled))
    image = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    assert default_layers(model) == ["features"]
    np.testing.assert_array_equal(grad_cam(model, image), grad_cam(model, image, layer_name="features"))


def test_default_recipe_grad_cam_averages_each_members_last_feature_conv():
    from ctviewer.core.model.recipes import build_model, default_config

    model = build_model(default_config("default").with_overrides(input_size=32))
    chosen = default_layers(model)
    members = len({name.split("_")[0] for name in chosen})
    assert len(chosen) == members > 1
    assert not any("attention" in name for name in chosen)  # the sigmoid mask heads are gates
    image = np.random.default_rng(1).random((32, 32)).astype(np.float32)
    maps = [grad_cam(model, image, layer_name=name) for name in chosen]
    mean = np.mean(maps, axis=0)
    expected = mean / mean.max() if mean.max() > 0 else mean
    np.testing.assert_allclose(grad_cam(model, image), expected, rtol=1e-5, atol=1e-6)


def test_grad_cam_needs_a_conv_layer():
    import keras

    inputs = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(flat))
    with pytest.raises(ModelError, match="no 2-D convolution"):
        grad_cam(model, np.zeros((8, 8), np.float32))


def test_predict_uses_bundle_preprocessing_from_trained_model(tmp_path: Path):
    """A trained model carries its preprocessing: predict(dataset) reads the right cached arrays."""
    from _trainkit import tiny_config

    from ctviewer.core.training.fit import fit

    dataset, cache = tiny_demo(tmp_path, n_patients=3, slices=1)
    # tta=False: the comparison below is against a plain forward pass (the default recipe uses TTA).
    trained = fit(dataset, tiny_config(epochs=1, window="soft_tissue", tta=False), cache=cache)
    pred = predict(trained, dataset, cache=cache)
    x = np.stack([cache.array(p, Preprocessing("soft_tissue", TINY_SIZE, "pad")) for p in dataset.paths])
    np.testing.assert_array_equal(pred.probs, predict_arrays(trained.model, x))
    assert pred.threshold == trained.threshold and pred.model_id == trained.model_id
    # A recipe with TTA gets TTA by default; an explicit tta=False still wins.
    import dataclasses

    with_tta = dataclasses.replace(trained, config=trained.config.with_overrides(tta=True))
    np.testing.assert_array_equal(predict(with_tta, dataset, cache=cache).probs,
                                  predict(trained, dataset, tta=True, cache=cache).probs)
    np.testing.assert_array_equal(predict(with_tta, dataset, tta=False, cache=cache).probs, pred.probs)


def test_a_bare_keras_model_becomes_a_predictor_at_the_boundary(model, images, tmp_path: Path):
    """Prediction sees Predictors only: a bare keras.Model is wrapped once, with a card's defaults."""
    from ctviewer.core.model.inference import predictor_for
    from ctviewer.core.model.predictor import KerasPredictor, as_predictor

    wrapped = as_predictor(model)
    assert isinstance(wrapped, KerasPredictor) and wrapped.model is model
    assert wrapped.preprocessing == Preprocessing("wide", TINY_SIZE, "pad")
    assert (wrapped.classes, wrapped.threshold, wrapped.tta, wrapped.model_id) == (("negative", "positive"), 0.5,
                                                                                   False, "")
    assert wrapped.history is None and wrapped.split is None and wrapped.trained_on is None
    np.testing.assert_array_equal(wrapped.probabilities(images, batch_size=8), predict_arrays(model, images, 8))
    assert as_predictor(wrapped) is wrapped  # a Predictor stays itself
    with pytest.raises(ModelError, match="cannot predict with a dict"):
        as_predictor({})

    dataset, cache = tiny_demo(tmp_path, n_patients=2, slices=1)
    for_dataset = predictor_for(model, dataset)
    assert for_dataset.classes == ("no_contrast", "contrast")  # a bare model's outputs, named by the dataset
    np.testing.assert_array_equal(predict(for_dataset, dataset, cache=cache).probs,
                                  predict(model, dataset, cache=cache).probs)
