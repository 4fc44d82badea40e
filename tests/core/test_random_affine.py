"""RandomAffine: the recipe's flip, rotation, shift and zoom in one resampling, training only."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from ctviewer.core.model.layers import RandomAffine  # noqa: E402


def _images(n: int = 8, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = np.zeros((n, size, size, 1), np.float32)
    x[:, 8:24, 4:12, 0] = rng.uniform(0.5, 1.0, (n, 16, 8))  # an off-centre block: flips and shifts show
    return x


def test_inference_passes_the_image_through_unchanged() -> None:
    x = _images()
    layer = RandomAffine(True, 0.1, 0.1, 0.2, seed=1)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)


def test_no_ranges_and_no_flip_is_the_identity_in_training() -> None:
    x = _images()
    out = np.asarray(RandomAffine(False, 0.0, 0.0, 0.0, seed=1)(x, training=True))
    np.testing.assert_allclose(out, x, atol=1e-6)


def test_flip_only_gives_each_image_or_its_mirror_and_both_occur() -> None:
    x = _images(n=32)
    out = np.asarray(RandomAffine(True, 0.0, 0.0, 0.0, seed=3)(x, training=True))
    mirrored = x[:, :, ::-1, :]
    same = [np.allclose(o, a, atol=1e-5) for o, a in zip(out, x)]
    flipped = [np.allclose(o, m, atol=1e-5) for o, m in zip(out, mirrored)]
    assert all(s or f for s, f in zip(same, flipped))
    assert any(same) and any(flipped)


def test_rotation_keeps_the_centre_and_fills_outside_with_the_fill_value() -> None:
    size = 33
    x = np.ones((4, size, size, 1), np.float32)
    x[:, size // 2, size // 2, 0] = 5.0
    out = np.asarray(RandomAffine(False, 0.125, 0.0, 0.0, fill_value=0.0, seed=0)(x, training=True))
    # A rotation about the centre keeps the centre pixel; corners rotate out of the image (up to 45 degrees).
    np.testing.assert_allclose(out[:, size // 2, size // 2, 0], 5.0, atol=1e-4)
    assert out.min() >= 0.0 and out.max() <= 5.0 + 1e-5
    assert (out[:, 0, 0, 0] < 1.0).any(), "a rotated corner reads the fill value"


def test_same_seed_same_draws_other_seed_other_draws() -> None:
    x = _images()
    a = np.asarray(RandomAffine(True, 0.05, 0.1, 0.1, seed=7)(x, training=True))
    b = np.asarray(RandomAffine(True, 0.05, 0.1, 0.1, seed=7)(x, training=True))
    c = np.asarray(RandomAffine(True, 0.05, 0.1, 0.1, seed=8)(x, training=True))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_shift_moves_the_block_by_at_most_the_range() -> None:
    size = 40
    x = np.zeros((16, size, size, 1), np.float32)
    x[:, 18:22, 18:22, 0] = 1.0
    out = np.asarray(RandomAffine(False, 0.0, 0.1, 0.0, seed=2)(x, training=True))
    for image in out[..., 0]:
        rows, cols = np.nonzero(image > 0.5)
        assert abs(rows.mean() - 19.5) <= 0.1 * size + 1 and abs(cols.mean() - 19.5) <= 0.1 * size + 1
    centres = [np.argwhere(im > 0.5).mean(axis=0) for im in out[..., 0]]
    assert np.ptp(np.array(centres), axis=0).max() > 1.0, "the shifts vary between images"


def test_round_trips_through_keras_config() -> None:
    layer = RandomAffine(True, 0.03, 0.05, 0.1, fill_value=0.0, seed=4, name="aug")
    again = RandomAffine.from_config(layer.get_config())
    assert (again.flip, again.rotation, again.shift, again.zoom, again.seed) == (True, 0.03, 0.05, 0.1, 4)
