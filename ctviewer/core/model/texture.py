"""The texture recipe: frozen random convolutional features read out by a logistic regression.

For questions whose signal is a pattern (ground glass, consolidation) rather than a shift of the
HU distribution. With a few hundred images a CNN trained from scratch over-fits; the same deep,
wide CNN left at its seeded random initialisation already extracts rich multi-scale texture
statistics (docs/RECIPE.md, issue 19: on covid-ct-dev a linear read-out of them beat the trained
default). Only the read-out is learnt: an L2 logistic regression (scikit-learn), its strength
chosen by patient-grouped inner cross-validation, written into the model's last Dense layer.
The saved ``model.keras`` is therefore the whole recipe, and predicting is one forward pass.

Imports keras at import time: import lazily.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from keras import layers

from ctviewer.core.errors import ModelError
from ctviewer.core.model import layers as ct_layers
from ctviewer.core.model.members import SHARED_FEATURES  # the extractor's name inside a fold ensemble

FEATURES_LAYER = "texture_features"
READOUT_LAYER = "probabilities"
_EXTRACTORS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
# Inverse L2 strengths tried by the inner cross-validation (scikit-learn's C, on standardised
# features); on covid-ct-dev's log statistics 0.03-1 were level, the grid brackets them.
READOUT_STRENGTHS: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3)


@dataclass(frozen=True)
class TextureArchitecture:
    """Knobs of the texture recipe (the field defaults ARE the recipe; docs/RECIPE.md has the ablations)."""

    # Independent random networks at full resolution; their features are concatenated. Which
    # networks are drawn moved the covid-ct-dev AUC by +-0.02; twice as many added +0.01.
    nets: int = 10
    filters: tuple[int, ...] = (32, 64, 128, 256)  # channels per stage
    convs_per_stage: int = 2  # 3x3 conv + ReLU, repeated, then a 2x2 max pool
    pooled_stages: tuple[int, ...] = (1, 2, 3)  # 0-based stages whose pooled statistics are features
    # More networks on the image at half resolution (2x2 means): the same filters then see coarser
    # structure, which more full-resolution networks did not add (8 nets: no gain; this: +0.01).
    half_scale_nets: int = 6
    half_scale_stages: tuple[int, ...] = (0, 1, 2)
    statistics: tuple[str, ...] = ("mean", "std", "max")  # per channel, over the image
    log_offset: float | None = 1e-3  # features are log(statistic + offset); None: raw statistics
    mirror: bool = True  # average each image's features with its mirror's

    @property
    def smallest_input(self) -> int:
        """The smallest image every pooled stage still sees at 1 x 1 or more (each stage halves it)."""
        full = 2 ** (max(self.pooled_stages) + 1)
        half = 2 * 2 ** (max(self.half_scale_stages) + 1) if self.half_scale_nets else 0
        return max(full, half)


def build_texture(size: int, seed: int | None = 0, arch: TextureArchitecture = TextureArchitecture()) -> keras.Model:
    """The texture model: input (size, size, 1) in [0, 1] -> (N, 2) softmax.

    The convolutions are frozen at their seeded Glorot-uniform initialisation; the read-out
    Dense layer starts at zero (p = 0.5) until `fit_readout` writes the fitted regression.
    """
    if size < arch.smallest_input:
        raise ModelError(f"input_size {size} is too small for the texture network; use at least {arch.smallest_input}")
    inputs = keras.Input((size, size, 1), name="image")
    x = layers.Rescaling(2.0, offset=-1.0, name="centred")(inputs)
    if arch.mirror:
        x = ct_layers.MirrorBatch(name="with_mirror")(x)
    pooled = []
    for net in range(arch.nets):
        pooled += _random_net(x, f"n{net}", _net_seed(seed, net), arch, arch.pooled_stages)
    if arch.half_scale_nets:
        half = layers.AveragePooling2D(2, name="half_scale")(x)
        for net in range(arch.half_scale_nets):
            pooled += _random_net(half, f"h{net}", _net_seed(seed, arch.nets + net), arch, arch.half_scale_stages)
    features = layers.Concatenate(name="concatenated")(pooled) if len(pooled) > 1 else pooled[0]
    if arch.mirror:
        features = ct_layers.MirrorAverage(name="mirror_average")(features)
    if arch.log_offset is not None:
        features = ct_layers.LogCompress(arch.log_offset, name=FEATURES_LAYER)(features)
    else:
        features = layers.Identity(name=FEATURES_LAYER)(features)
    outputs = layers.Dense(2, activation="softmax", kernel_initializer="zeros", name=READOUT_LAYER)(features)
    return keras.Model(inputs, outputs, name="ctviewer_texture")


def _net_seed(seed: int | None, net: int) -> int | None:
    return None if seed is None else seed * 100 + net


def _random_net(x: Any, name: str, seed: int | None, arch: TextureArchitecture, stages: tuple[int, ...]) -> list[Any]:
    """One frozen random CNN on x: the pooled statistics of the given stages."""
    pooled = []
    h = x
    for stage, filters in enumerate(arch.filters[: max(stages) + 1]):
        for conv in range(arch.convs_per_stage):
            layer_seed = None if seed is None else (seed * 10 + stage) * 10 + conv
            h = layers.Conv2D(filters, 3, padding="same", use_bias=False, trainable=False,
                              kernel_initializer=keras.initializers.GlorotUniform(seed=layer_seed),
                              name=f"{name}_conv{stage}_{conv}")(h)
            h = layers.ReLU(name=f"{name}_relu{stage}_{conv}")(h)
        h = layers.MaxPooling2D(2, name=f"{name}_pool{stage}")(h)
        if stage in stages:
            pooled.append(ct_layers.ChannelStatistics(arch.statistics, name=f"{name}_stats{stage}")(h))
    return pooled


def feature_extractor(model: keras.Model) -> keras.Model:
    """The frozen part of a texture model: image -> features (built once per model)."""
    try:
        return _EXTRACTORS[model]
    except (KeyError, TypeError):
        pass
    extractor = keras.Model(model.input, model.get_layer(FEATURES_LAYER).output, name=SHARED_FEATURES)
    try:
        _EXTRACTORS[model] = extractor
    except TypeError:
        pass
    return extractor


def extract_features(model: keras.Model, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """The frozen features (N, D) of images (N, size, size[, 1]) in [0, 1].

    Rows this model's networks already computed for the same pixels come from
    `ctviewer.core.model.feature_memo` (the same numbers: the networks are frozen).
    """
    from ctviewer.core.model import feature_memo

    extractor = feature_extractor(model)
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if not len(x):
        return np.zeros((0, 0))
    trunk = feature_memo.trunk_key(extractor)
    keys = [feature_memo.image_key(image) for image in x]
    rows = feature_memo.recall(trunk, keys)
    missing = [i for i, row in enumerate(rows) if row is None]
    if missing:
        todo = x[missing]
        computed = np.concatenate([_padded_batch(extractor, todo[i : i + batch_size], batch_size)
                                   for i in range(0, len(todo), batch_size)])
        feature_memo.remember(trunk, [keys[i] for i in missing], computed)
        for i, row in zip(missing, computed):
            rows[i] = row
    return np.stack(rows).astype(np.float64)


def _padded_batch(extractor: keras.Model, batch: np.ndarray, batch_size: int) -> np.ndarray:
    # One input shape, so one compiled function (20 % faster than eager calls, measured).
    padded = np.zeros((batch_size,) + batch.shape[1:], dtype=np.float32)
    padded[: len(batch)] = batch
    return np.asarray(extractor.predict_on_batch(padded))[: len(batch)]


def shared_trunk(models: list[keras.Model]) -> keras.Model | None:
    """The one feature extractor of texture models whose frozen networks are identical, else None."""
    from ctviewer.core.model import feature_memo

    if not models or not all(_is_texture(m) for m in models):
        return None
    extractors = [feature_extractor(m) for m in models]
    keys = {feature_memo.trunk_key(e) for e in extractors}
    return extractors[0] if len(keys) == 1 else None


def _is_texture(model: keras.Model) -> bool:
    names = {layer.name for layer in model.layers}
    return FEATURES_LAYER in names and READOUT_LAYER in names


@dataclass
class Readout:
    """A fitted logistic read-out and how its strength was chosen."""

    strength: float
    inner_auc: dict[float, float] = field(default_factory=dict)  # C -> pooled inner out-of-fold AUC
    best_inner_auc: float | None = None
    inner_folds: int = 0
    inner_probabilities: np.ndarray | None = None  # out-of-fold P(positive) of the training rows at ``strength``


def inner_cv_auc(features: np.ndarray, y: np.ndarray, groups: np.ndarray, strengths: tuple[float, ...],
                 balanced: bool, seed: int) -> tuple[dict[float, float], dict[float, np.ndarray], int]:
    """Pooled out-of-fold AUC (and probabilities) of the logistic read-out per strength, patient-grouped (k <= 5).

    Each inner fold standardises on its own training rows, as `fit_readout` does on all of them.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    k = min(5, *(len(set(groups[y == c].tolist())) for c in (0, 1)))
    if k < 2:
        return {}, {}, 0
    splits = list(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(features, y, groups))
    oof = {strength: np.full(len(y), np.nan) for strength in strengths}
    for train, test in splits:
        if len(set(y[train].tolist())) < 2:
            continue
        mean, scale = _standardisation(features[train])
        space = _RowSpace((features[train] - mean) / scale)  # once per fold, for every strength
        for strength in strengths:
            w, b = space.fit(y[train], strength, balanced)
            oof[strength][test] = _sigmoid((features[test] - mean) / scale @ w + b)
    result, probabilities = {}, {}
    for strength, p in oof.items():
        done = np.isfinite(p)
        if len(set(y[done].tolist())) == 2:
            result[strength] = float(roc_auc_score(y[done], p[done]))
            probabilities[strength] = p
    return result, probabilities, k


def fit_readout(model: keras.Model, features: np.ndarray, y: np.ndarray, groups: np.ndarray, balanced: bool = True,
                seed: int = 0, strengths: tuple[float, ...] = READOUT_STRENGTHS) -> Readout:
    """Fit the L2 logistic read-out on (standardised) features and write it into the model.

    The strength is the one with the best patient-grouped inner out-of-fold AUC (the middle of
    the grid when the data are too small for inner folds). Standardisation is folded into the
    Dense weights: logit = sum(w * (f - mean) / std) + b.
    """
    y = np.asarray(y, dtype=np.int64)
    if len(set(y.tolist())) < 2:
        raise ModelError("the texture read-out needs images of both classes")
    aucs, oof, k = inner_cv_auc(features, y, np.asarray(groups), strengths, balanced, seed)
    strength = max(aucs, key=lambda c: (aucs[c], -c)) if aucs else strengths[len(strengths) // 2]
    mean, std = _standardisation(features)
    coef, intercept = _RowSpace((features - mean) / std).fit(y, strength, balanced)
    w = coef / std
    b = float(intercept - np.sum(coef * mean / std))
    dense = model.get_layer(READOUT_LAYER)
    kernel = np.zeros((len(w), 2), dtype=np.float32)
    kernel[:, 1] = w
    dense.set_weights([kernel, np.array([0.0, b], dtype=np.float32)])
    return Readout(strength=strength, inner_auc=aucs, best_inner_auc=aucs.get(strength), inner_folds=k,
                   inner_probabilities=oof.get(strength))


def _standardisation(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations (1 where a column is constant), as StandardScaler's."""
    std = features.std(axis=0)
    return features.mean(axis=0), np.where(std > 1e-12, std, 1.0)


def _sigmoid(logit: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logit, -500, 500)))


class _RowSpace:
    """An L2 logistic regression on standardised rows x (n, d), fitted in the span of those rows.

    With an L2 penalty the best weights are a combination of the training rows (the representer
    theorem), so the regression on the rows' n coordinates in that span, from the n x n Gram
    matrix, is the same regression. With 17k features and a few hundred images it is 4-5x faster
    (measured on this machine), and the decomposition is shared by every strength tried.
    """

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        values, vectors = np.linalg.eigh(x @ x.T)
        keep = values > max(float(values.max()), 0.0) * 1e-10
        self.vectors, self.lengths = vectors[:, keep], np.sqrt(values[keep])

    def fit(self, y: np.ndarray, strength: float, balanced: bool) -> tuple[np.ndarray, float]:
        """(weights (d,), intercept) of the regression on standardised features."""
        if not len(self.lengths):  # every row the same: only the intercept can be learnt
            coordinates = np.zeros((len(y), 1))
            regression = _regression(strength, balanced).fit(coordinates, y)
            return np.zeros(self.x.shape[1]), float(regression.intercept_[0])
        regression = _regression(strength, balanced).fit(self.vectors * self.lengths, y)
        basis = (self.vectors / self.lengths).T @ self.x  # orthonormal rows spanning the training rows
        return regression.coef_[0] @ basis, float(regression.intercept_[0])


def _regression(strength: float, balanced: bool) -> Any:
    from sklearn.linear_model import LogisticRegression

    # tol: the row-space problem is small, so a tight tolerance costs little.
    return LogisticRegression(C=strength, max_iter=5000, tol=1e-6, class_weight="balanced" if balanced else None)
