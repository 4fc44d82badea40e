"""The histogram logistic-regression baseline: features, grouped cross-validation, dataset entry point."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ctviewer.core.errors import DatasetError
from ctviewer.core.explain.baseline import (
    HistogramSpec,
    baseline_for_dataset,
    cross_validate_baseline,
    histogram_features,
)


def hu_to_unit(hu: float) -> float:
    return (hu + 1000.0) / 2000.0


def test_histogram_counts_body_pixels_only_in_the_right_bins():
    spec = HistogramSpec()
    img = np.full((8, 8), hu_to_unit(-1000.0), dtype=np.float32)  # air: not body
    img[:2, :] = hu_to_unit(40.0)  # 16 soft-tissue pixels
    img[2:4, :] = hu_to_unit(310.0)  # 16 enhanced pixels (310 HU: not on a bin edge)
    feats = histogram_features(img[None], spec)
    assert feats.shape == (1, spec.bins)
    edges = np.linspace(hu_to_unit(spec.low_hu), hu_to_unit(spec.high_hu), spec.bins + 1)
    b40 = int(np.searchsorted(edges, hu_to_unit(40.0), side="right") - 1)
    b310 = int(np.searchsorted(edges, hu_to_unit(310.0), side="right") - 1)
    density = np.exp(feats[0]) - spec.eps
    # Air is excluded from the denominator: each of the two values holds half of the body.
    assert density[b40] == pytest.approx(0.5, abs=1e-6) and density[b310] == pytest.approx(0.5, abs=1e-6)
    others = np.delete(density, [b40, b310])
    assert np.allclose(others, 0.0, atol=1e-9)
    # (N, H, W, 1) gives the same features; a wrong shape is refused.
    assert np.allclose(histogram_features(img[None, ..., None], spec), feats)
    with pytest.raises(ValueError):
        histogram_features(np.zeros((2, 3)), spec)


def _synthetic(n_patients: int, slices: int, effect: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images whose bright-pixel share depends on the class by ``effect`` (0 = no signal)."""
    rng = np.random.default_rng(seed)
    images, y, groups = [], [], []
    for cls in (0, 1):
        for p in range(n_patients):
            for _ in range(slices):
                img = np.full((24, 24), hu_to_unit(45.0)) + rng.normal(0, 0.004, (24, 24))
                share = 0.05 + effect * cls + rng.uniform(0, 0.05)
                mask = rng.random((24, 24)) < share
                img[mask] = hu_to_unit(250.0)
                images.append(img.astype(np.float32))
                y.append(cls)
                groups.append(f"{cls}-{p}")
    return np.stack(images), np.array(y), np.array(groups)


def test_cross_validation_finds_a_brightness_signal_and_keeps_patients_together():
    x, y, groups = _synthetic(8, 3, effect=0.15, seed=0)
    result = cross_validate_baseline(histogram_features(x), y, groups, k=4, seed=1)
    assert result.k == 4 and result.n == len(y)
    assert result.auc > 0.9 and result.accuracy > 0.8
    assert result.auc_ci.low <= result.auc <= result.auc_ci.high
    for g in np.unique(groups):
        assert len(set(result.fold_of[groups == g].tolist())) == 1
    again = cross_validate_baseline(histogram_features(x), y, groups, k=4, seed=1)
    assert np.array_equal(again.probs, result.probs)


def test_cross_validation_without_signal_is_near_chance():
    x, y, groups = _synthetic(10, 2, effect=0.0, seed=3)
    result = cross_validate_baseline(histogram_features(x), y, groups, k=5, seed=0)
    assert 0.2 < result.auc < 0.8


def test_too_few_patients_is_a_clear_error_and_k_shrinks_to_what_is_possible():
    x, y, groups = _synthetic(3, 2, effect=0.2, seed=0)
    assert cross_validate_baseline(histogram_features(x), y, groups, k=5).k == 3
    x1, y1, g1 = _synthetic(1, 4, effect=0.2, seed=0)
    with pytest.raises(DatasetError, match="2 patients per class"):
        cross_validate_baseline(histogram_features(x1), y1, g1)


def test_baseline_for_a_demo_dataset_uses_every_image(tmp_path):
    from ctviewer.core.data.dataset import discover
    from ctviewer.core.data.demo import make_demo_dataset

    ds = discover(make_demo_dataset(tmp_path / "demo", n_patients=5, slices_per_patient=2, size=48))
    result = baseline_for_dataset(ds, k=5, seed=0, spec=HistogramSpec(size=48))
    assert result.n == len(ds) == 20
    assert np.array_equal(result.y, ds.y)
    # The demo's contrast class has enhanced blood: brightness alone separates it well.
    assert not math.isnan(result.auc) and result.auc > 0.8


@pytest.mark.siim
def test_baseline_on_the_siim_set_matches_the_issue(siim_dir):
    """The issue quotes AUC 0.96 for this baseline under patient-grouped 5-fold CV."""
    from ctviewer.core.data.dataset import discover

    ds = discover(siim_dir, positive="contrast")
    result = baseline_for_dataset(ds, k=5, seed=0)
    assert result.n == 100 and result.k == 5
    assert 0.9 <= result.auc <= 1.0
