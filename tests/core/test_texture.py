"""The texture recipe: frozen random CNN features with a logistic read-out (issue 19)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import discover, load_stack
from ctviewer.core.explain.gradcam import grad_cam
from ctviewer.core.model import feature_memo


def _texture_pngs(folder: Path, patients: int = 8, per_patient: int = 2, size: int = 32, seed: int = 0) -> Path:
    """Two classes with exactly the same grey-level histogram but different grain (fine vs coarse noise)."""
    from PIL import Image
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    greys = np.sort(np.clip(128 + 40 * rng.normal(size=size * size), 0, 255)).astype(np.uint8)
    for label, sigma in (("fine", 0.6), ("coarse", 2.5)):
        for patient in range(patients):
            (folder / label).mkdir(parents=True, exist_ok=True)
            for k in range(per_patient):
                noise = ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma)
                # Each pixel takes the grey of its rank: every image has the same histogram.
                image = greys[np.argsort(np.argsort(noise, axis=None))].reshape(size, size)
                Image.fromarray(image).save(folder / label / f"{label}{patient}_{k}.png")
    return folder


def _config(**overrides):
    from ctviewer.core.model.recipes import default_config

    return default_config("texture").with_overrides(input_size=32, batch_size=8, **overrides)


def test_the_texture_recipe_is_frozen_random_features_and_a_zero_readout():
    from ctviewer.core.model.recipes import build_model

    config = _config()
    assert config.resize == "stretch" and config.validation_fraction == 0.0
    model = build_model(config)
    assert model.trainable_weights == model.get_layer("probabilities").trainable_weights
    probs = np.asarray(model.predict(np.random.default_rng(0).random((3, 32, 32, 1), dtype=np.float32), verbose=0))
    np.testing.assert_allclose(probs, 0.5)  # nothing learnt yet
    same_seed = build_model(config).get_layer("n0_conv1_0").get_weights()[0]
    np.testing.assert_array_equal(model.get_layer("n0_conv1_0").get_weights()[0], same_seed)
    other = build_model(config.with_overrides(seed=1)).get_layer("n0_conv1_0").get_weights()[0]
    assert not np.allclose(other, same_seed)


def test_features_are_the_same_for_an_image_and_its_mirror():
    from ctviewer.core.model.recipes import build_model
    from ctviewer.core.model.texture import TextureArchitecture, extract_features

    model = build_model(_config())
    x = np.random.default_rng(1).random((4, 32, 32), dtype=np.float32)
    features = extract_features(model, x)
    arch = TextureArchitecture()
    per_statistic = arch.nets * (64 + 128 + 256) + arch.half_scale_nets * (32 + 64 + 128)
    assert features.shape == (4, len(arch.statistics) * per_statistic)
    assert np.isfinite(features).all()
    np.testing.assert_allclose(extract_features(model, x[:, :, ::-1]), features, rtol=1e-5, atol=1e-6)
    assert not np.allclose(features[0], features[1])


def test_the_readout_written_into_the_model_matches_the_fitted_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from ctviewer.core.model.recipes import build_model
    from ctviewer.core.model.texture import fit_readout

    model = build_model(_config())
    rng = np.random.default_rng(2)
    d = int(model.get_layer("probabilities").get_weights()[0].shape[0])
    y = np.arange(40) % 2
    features = rng.normal(size=(40, d)) * rng.uniform(0.01, 3.0, size=d) + y[:, None] * 0.3
    groups = np.arange(40) // 2
    readout = fit_readout(model, features, y, groups)
    assert readout.strength in readout.inner_auc and readout.inner_folds == 5
    assert readout.inner_probabilities is not None and np.isfinite(readout.inner_probabilities).all()
    scaler = StandardScaler().fit(features)
    # The read-out is fitted in the span of the rows (texture._RowSpace): the same optimum as the
    # regression on all features, solved tightly here.
    reference = LogisticRegression(C=readout.strength, max_iter=20000, tol=1e-9, class_weight="balanced").fit(
        scaler.transform(features), y).predict_proba(scaler.transform(features))[:, 1]
    mine = np.asarray(model.get_layer("probabilities")(features.astype(np.float32)))[:, 1]
    np.testing.assert_allclose(mine, reference, atol=1e-4)


def test_cross_validation_of_the_texture_recipe_tells_grain_apart_and_predicts_reproducibly(tmp_path):
    from ctviewer.core.model.bundle import load_bundle, save_bundle
    from ctviewer.core.model.inference import predict
    from ctviewer.core.training.cv import cross_validate

    cache = Cache(tmp_path / "cache")
    dataset = discover(_texture_pngs(tmp_path / "data"), positive="fine", cache=cache)
    events = []
    feature_memo.forget()
    result = cross_validate(dataset, _config(ensemble=True), folds=4, cache=cache, on_event=events.append)
    assert result.metrics.auc > 0.9  # grain is invisible to a histogram: both classes share mean and spread
    # The folds share one draw of the networks: each image went through them once in training.
    assert {m.config.seed for m in result.models} == {0}
    assert feature_memo.stats()["misses"] == len(dataset)
    # ... and the ensemble runs them once: one shared trunk, then each fold's read-out.
    names = [layer.name for layer in result.ensemble.model.layers]
    assert names.count("shared_texture_features") == 1 and sum(n.startswith("member") for n in names) == 4
    assert all(len(h["loss"]) == 1 and "val_auc" in h for h in result.histories)
    assert any(type(e).__name__ == "EpochEnded" for e in events)
    assert all(0.0 < t < 1.0 for t in result.fold_thresholds)
    first = predict(result.ensemble, dataset, cache=cache).probs
    np.testing.assert_array_equal(predict(result.ensemble, dataset, cache=cache).probs, first)
    members = np.mean([predict(m, dataset, cache=cache).probs for m in result.models], axis=0)
    np.testing.assert_allclose(first, members, atol=1e-6)  # the mean of the members, computed once
    spread = predict(result.ensemble, dataset, cache=cache).uncertainty
    assert spread is not None and np.isfinite(spread).all() and spread.max() > 0
    save_bundle(result.ensemble, tmp_path / "bundle")
    loaded = load_bundle(tmp_path / "bundle")
    np.testing.assert_array_equal(predict(loaded, dataset, cache=cache).probs, first)
    image = np.asarray(load_stack(dataset.subset([0]), loaded.preprocessing, cache))[0]
    heat = grad_cam(loaded, image)  # through the shared networks, for the ensemble's mean
    assert heat.shape == image.shape[:2] and heat.max() == pytest.approx(1.0)


def test_features_are_remembered_per_frozen_network_and_pixels():
    from ctviewer.core.model.recipes import build_model
    from ctviewer.core.model.texture import extract_features

    feature_memo.forget()
    x = np.random.default_rng(5).random((6, 32, 32), dtype=np.float32)
    first = extract_features(build_model(_config()), x, batch_size=4)
    again = extract_features(build_model(_config()), x, batch_size=4)  # another model, the same networks
    np.testing.assert_array_equal(again, first)
    assert feature_memo.stats()["misses"] == 6 and feature_memo.stats()["hits"] == 6
    x[2, 0, 0] += 0.5  # one pixel of one image
    extract_features(build_model(_config()), x, batch_size=4)
    assert feature_memo.stats()["misses"] == 7
    other = extract_features(build_model(_config(seed=1)), x, batch_size=4)  # other networks: computed anew
    assert feature_memo.stats()["misses"] == 13 and not np.allclose(other, first)


def test_texture_members_with_different_networks_stay_separate_sub_models():
    from ctviewer.core.model.ensemble import Ensemble
    from ctviewer.core.model.inference import predict_arrays
    from ctviewer.core.model.recipes import build_model
    from ctviewer.core.training.results import TrainedModel

    def member(seed):
        model = build_model(_config(seed=seed))
        kernel, bias = model.get_layer("probabilities").get_weights()
        kernel[:, 1] = 1e-3 * np.random.default_rng(seed).normal(size=len(kernel))
        model.get_layer("probabilities").set_weights([kernel, bias])
        return TrainedModel(model=model, config=_config(seed=seed), threshold=0.5, history={}, split=None,
                            classes=("coarse", "fine"), dataset=None)

    members = [member(0), member(1)]  # e.g. a bundle trained before the networks were shared
    ensemble = Ensemble.from_trained(members)
    names = [layer.name for layer in ensemble.model.layers]
    assert "shared_texture_features" not in names and {"member0", "member1"} <= set(names)
    x = np.random.default_rng(6).random((3, 32, 32), dtype=np.float32)
    expected = np.mean([predict_arrays(m.model, x, batch_size=4) for m in members], axis=0)
    np.testing.assert_allclose(predict_arrays(ensemble.model, x, batch_size=4), expected, atol=1e-6)


def test_stretch_fills_the_square_with_the_whole_image():
    from ctviewer.core.data.imaging import fit_square, model_rect

    wide = np.zeros((20, 40), dtype=np.float32)
    wide[:, 20:] = 1.0  # right half bright
    square = fit_square(wide, 16, "stretch")
    assert square.shape == (16, 16)
    assert square[:, :7].max() < 0.05 and square[:, 9:].min() > 0.95  # no letterbox rows of black
    assert model_rect((20, 40), "stretch") == (0, 0, 40, 20)
    assert model_rect((20, 40), "pad") == (0, -10, 40, 40)


@pytest.mark.parametrize("bad", ["letterbox", ""])
def test_an_unknown_resize_mode_is_refused(bad):
    from ctviewer.core.errors import ModelError
    from ctviewer.core.training.fit import _check_config

    with pytest.raises(ModelError, match="resize"):
        _check_config(_config(resize=bad))


def test_channel_statistics_and_log_compress_compute_what_they_name():
    from ctviewer.core.model.layers import ChannelStatistics, LogCompress

    x = np.random.default_rng(2).random((3, 5, 7, 4)).astype(np.float32)
    x[:, :, :, 3] = 0.0  # a channel that never fires: std 0, finite
    pooled = np.asarray(ChannelStatistics(("mean", "std", "max"))(x))
    flat = x.reshape(3, -1, 4)
    np.testing.assert_allclose(pooled, np.hstack([flat.mean(1), flat.std(1), flat.max(1)]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(LogCompress(1e-3)(pooled)), np.log(pooled + 1e-3), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="statistics"):
        ChannelStatistics(("median",))


def test_grad_cam_of_a_texture_model_looks_through_every_network_and_respects_the_mirror():
    from ctviewer.core.explain.gradcam import default_layers, grad_cam
    from ctviewer.core.model.recipes import build_model
    from ctviewer.core.model.texture import TextureArchitecture

    model = build_model(_config())
    dense = model.get_layer("probabilities")
    kernel, bias = dense.get_weights()
    # A read-out that depends on every feature, small enough that the softmax does not saturate.
    kernel[:, 1] = 1e-3 * np.random.default_rng(3).normal(size=len(kernel))
    dense.set_weights([kernel, bias])
    arch = TextureArchitecture()
    explained = default_layers(model)
    assert len(explained) == arch.nets + arch.half_scale_nets
    assert {name.split("_")[0] for name in explained} == {f"n{i}" for i in range(arch.nets)} | {
        f"h{i}" for i in range(arch.half_scale_nets)}
    image = np.zeros((32, 32), dtype=np.float32)
    image[8:20, 4:14] = np.random.default_rng(4).random((12, 10))  # texture on the left only
    heat = grad_cam(model, image)
    assert heat.shape == (32, 32) and heat.max() == pytest.approx(1.0)
    # The features average an image with its mirror, so the map of the mirrored image is the mirrored map.
    np.testing.assert_allclose(grad_cam(model, image[:, ::-1]), heat[:, ::-1], atol=1e-4)


def test_an_image_too_small_for_the_pooled_stages_is_refused_with_the_smallest_size():
    from ctviewer.core.errors import ModelError
    from ctviewer.core.model.texture import TextureArchitecture, build_texture

    arch = TextureArchitecture()
    assert arch.smallest_input == 16  # four full-resolution stages, or three at half resolution
    with pytest.raises(ModelError, match="at least 16"):
        build_texture(8, arch=arch)
    assert build_texture(16, arch=arch).output_shape == (None, 2)
