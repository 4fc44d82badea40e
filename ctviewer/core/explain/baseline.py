"""The brightness baseline: logistic regression on intensity histograms, cross-validated by patient.

Why it exists: a CNN that scores no better than a linear model on "how many pixels are how
bright" has learnt nothing a histogram does not already say. The doctor compares a model's
AUC with this baseline (``baseline-beats-model``) and the benchmarks report it beside every
recipe.

Features (:func:`histogram_features`): each image in the "wide" window (HU -1000..1000 mapped
linearly to [0, 1], the model input of every ctviewer recipe) is reduced to the distribution
of its *body* pixels (above -500 HU: no air, little lung) over HU -200..600 in 32 bins, as
``log(density + 1e-3)`` so rare bright pixels (contrast in vessels and kidneys) count. The
density is divided by the body pixel count, so patient size and field of view drop out.

Evaluation (:func:`cross_validate_baseline`): patient-grouped stratified k-fold (the splits
of `ctviewer.core.data.splits`, so no patient is on both sides), standardised features and an
L2-regularised logistic regression fitted on each training part; out-of-fold probabilities
for every image, pooled AUC with a DeLong interval.

scikit-learn is imported inside the functions; the module itself imports only numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ctviewer.core.data.imaging import Preprocessing
from ctviewer.core.errors import DatasetError
from ctviewer.core.metrics.evaluation import Interval, delong_auc

# HU <-> "wide" window value: x = (hu + 1000) / 2000.
_WIDE_LOW_HU, _WIDE_WIDTH_HU = -1000.0, 2000.0


@dataclass(frozen=True)
class HistogramSpec:
    """Which intensities the baseline counts (in HU of the "wide" window)."""

    low_hu: float = -200.0
    high_hu: float = 600.0
    bins: int = 32
    body_threshold_hu: float = -500.0
    eps: float = 1e-3
    size: int = 128  # images are reduced to this side first: a histogram needs no detail

    def to_unit(self, hu: float) -> float:
        return (hu - _WIDE_LOW_HU) / _WIDE_WIDTH_HU

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(window="wide", size=self.size, resize="pad")


@dataclass(frozen=True)
class BaselineResult:
    """Out-of-fold result of the histogram baseline on one labelled set of images."""

    probs: np.ndarray  # out-of-fold probability of the positive class, (N,)
    y: np.ndarray  # 0/1 labels, (N,)
    fold_of: np.ndarray  # test fold of each image, (N,)
    k: int
    auc: float
    auc_ci: Interval
    accuracy: float  # at threshold 0.5
    c: float  # inverse regularisation strength of the logistic regression

    @property
    def n(self) -> int:
        return int(self.y.size)


def histogram_features(images: np.ndarray, spec: HistogramSpec = HistogramSpec()) -> np.ndarray:
    """Log-density histogram of the body pixels of each image.

    Parameters
    ----------
    images
        (N, H, W) or (N, H, W, 1) arrays in the "wide" window ([0, 1] = HU -1000..1000).
    spec
        Range, bins and body threshold in HU.

    Returns
    -------
    np.ndarray
        (N, bins) float64 features.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise ValueError(f"expected images shaped (N, H, W) or (N, H, W, 1), got {x.shape}")
    low, high = spec.to_unit(spec.low_hu), spec.to_unit(spec.high_hu)
    body_threshold = spec.to_unit(spec.body_threshold_hu)
    edges = np.linspace(low, high, spec.bins + 1)
    features = np.empty((x.shape[0], spec.bins), dtype=np.float64)
    for i, image in enumerate(x):
        body = image[image > body_threshold]
        counts, _ = np.histogram(body, bins=edges)
        density = counts / max(body.size, 1)
        features[i] = np.log(density + spec.eps)
    return features


def _fit_predict(features: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, c: float) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
    model.fit(features[train], y[train])
    return model.predict_proba(features[test])[:, 1]


def cross_validate_baseline(
    features: np.ndarray,
    y: Sequence[int] | np.ndarray,
    groups: Sequence[Any] | np.ndarray,
    k: int = 5,
    seed: int = 0,
    c: float = 0.1,
) -> BaselineResult:
    """Patient-grouped stratified k-fold logistic regression: out-of-fold probabilities and AUC.

    Parameters
    ----------
    features
        (N, F) features, e.g. from :func:`histogram_features`.
    y
        0/1 labels (1 = positive class).
    groups
        Patient of each image; a patient's images are always in the same fold.
    k
        Folds; reduced to the number of patients of the smaller class when that is lower.
    seed
        Fold assignment seed (the same seed gives the same folds).
    c
        Inverse L2 strength. 0.1 is strong on purpose: ~100 images, 32 correlated features.

    Raises
    ------
    DatasetError
        Fewer than 2 patients in a class (no grouped cross-validation is possible).
    """
    from ctviewer.core.data.splits import kfold_assignment

    features = np.asarray(features, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    groups = np.asarray(groups)
    if features.shape[0] != y.size or groups.size != y.size:
        raise ValueError(f"features ({features.shape[0]}), labels ({y.size}) and groups ({groups.size}) differ")
    patients_per_class = [len(set(groups[y == cls].tolist())) for cls in (0, 1)]
    k = int(min(k, *patients_per_class))
    if k < 2:
        raise DatasetError(
            f"the histogram baseline needs at least 2 patients per class for grouped cross-validation "
            f"(have {patients_per_class[1]} positive, {patients_per_class[0]} negative)"
        )
    fold_of = kfold_assignment(y, groups, k, seed)
    probs = np.empty(y.size, dtype=np.float64)
    for fold in range(k):
        test = np.flatnonzero(fold_of == fold)
        train = np.flatnonzero(fold_of != fold)
        probs[test] = _fit_predict(features, y, train, test, c)
    estimate = delong_auc(y, probs)
    accuracy = float(np.mean((probs >= 0.5).astype(np.int64) == y))
    return BaselineResult(probs=probs, y=y, fold_of=fold_of, k=k, auc=estimate.auc, auc_ci=estimate.ci,
                          accuracy=accuracy, c=c)


def baseline_for_dataset(dataset: Any, k: int = 5, seed: int = 0, spec: HistogramSpec = HistogramSpec(),
                         cache: Any = None) -> BaselineResult:
    """:func:`cross_validate_baseline` on the histogram features of a labelled two-class dataset.

    Images are read through the preprocessing cache in the "wide" window at ``spec.size``.

    Raises
    ------
    DatasetError
        Unlabelled images, one class only, or too few patients per class.
    """
    from ctviewer.core.data.cache import Cache
    from ctviewer.core.data.dataset import load_stack

    dataset.require_binary()
    images = load_stack(dataset, spec.preprocessing, cache if cache is not None else Cache())
    return cross_validate_baseline(histogram_features(images, spec), dataset.y, dataset.patients, k, seed)


def array_histogram_features(images: np.ndarray, bins: int = 32, eps: float = 1e-3) -> np.ndarray:
    """Log-density histograms of arrays in an unknown intensity scale (a user's own ``x``).

    Nothing says where the body or the contrast lies in such arrays, so the bins span the
    0.5-99.5 percentile range of all the images together (a range computed without labels).
    """
    x = np.asarray(images, dtype=np.float32).reshape(len(images), -1)
    low, high = (float(v) for v in np.percentile(x, [0.5, 99.5]))
    edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    features = np.empty((x.shape[0], bins), dtype=np.float64)
    for i, row in enumerate(x):
        counts, _ = np.histogram(np.clip(row, edges[0], edges[-1]), bins=edges)
        features[i] = np.log(counts / max(row.size, 1) + eps)
    return features


def baseline_for_arrays(images: np.ndarray, y: Sequence[int] | np.ndarray, groups: Sequence[Any] | np.ndarray,
                        k: int = 5, seed: int = 0) -> BaselineResult:
    """:func:`cross_validate_baseline` on :func:`array_histogram_features` of arrays (N, H, W[, C]).

    Raises
    ------
    DatasetError
        Fewer than 2 patients (groups) in a class.
    """
    return cross_validate_baseline(array_histogram_features(images), y, groups, k, seed)


__all__ = ["BaselineResult", "HistogramSpec", "array_histogram_features", "baseline_for_arrays",
           "baseline_for_dataset", "cross_validate_baseline", "histogram_features"]
