"""Intervals that count patients: a cluster (patient-level) bootstrap, stratified by class.

The slices of one patient are correlated: 40 slices of one patient do not tell 40 times what
one slice tells. Wilson and DeLong treat every image as independent, so when patients
contribute many slices their intervals are too narrow. This bootstrap resamples whole patients
(with all their images and the calls made on them), within each class stratum (patients whose
images are all positive, all negative, or mixed), so every replicate keeps the number of
patients of each kind. Duplicating every slice of every patient leaves its intervals where
they were; Wilson's shrink by the square root of the copies.

Percentile intervals, ``CLUSTER_REPLICATES`` replicates, fixed seed ``CLUSTER_SEED``: the same data
always give the same interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ctviewer.core.metrics.stats import CONFIDENCE, NAN_INTERVAL, Interval

CLUSTER_REPLICATES = 2000
CLUSTER_SEED = 20241
CLUSTER_METRICS: tuple[str, ...] = (
    "sensitivity", "specificity", "ppv", "npv", "accuracy", "balanced_accuracy", "f1", "auc",
)
# With fewer patients than this in a class, resampling them says little (one patient per class gives a
# zero-width interval): the intervals are then NaN and the metrics' warnings say why.
MIN_CLUSTERS_PER_CLASS = 5
# Replicates are computed in blocks so memory stays bounded by block x images.
_BLOCK = 250


def cluster_ids(patients: Sequence[str], paths: Sequence[str]) -> np.ndarray:
    """0-based cluster index per row: its patient, or the row itself when the patient is empty."""
    index: dict[str, int] = {}
    out = np.empty(len(patients), dtype=np.int64)
    for i, (patient, path) in enumerate(zip(patients, paths)):
        key = f"p:{patient}" if patient else f"row:{i}:{path}"
        out[i] = index.setdefault(key, len(index))
    return out


def _strata(y: np.ndarray, clusters: np.ndarray, n_clusters: int) -> list[np.ndarray]:
    """Cluster indices grouped by the class of their images: all positive, all negative, mixed."""
    pos = np.bincount(clusters, weights=(y == 1), minlength=n_clusters)
    size = np.bincount(clusters, minlength=n_clusters)
    kind = np.where(pos == size, 1, np.where(pos == 0, 0, 2))
    return [np.flatnonzero(kind == k) for k in (0, 1, 2) if (kind == k).any()]


def _pure_class_sizes(y: np.ndarray, clusters: np.ndarray, n_clusters: int) -> list[int]:
    """How many clusters hold only negatives and only positives (the classes present)."""
    pos = np.bincount(clusters, weights=(y == 1), minlength=n_clusters)
    size = np.bincount(clusters, minlength=n_clusters)
    sizes = [int((pos == 0).sum()), int((pos == size).sum())]
    return [k for k, present in zip(sizes, ((y == 0).any(), (y == 1).any())) if present] or [0]


def _draw_weights(rng: np.random.Generator, strata: list[np.ndarray], n_clusters: int, replicates: int) -> np.ndarray:
    """(replicates, n_clusters) counts: how often each cluster is drawn in each replicate."""
    weights = np.zeros((replicates, n_clusters), dtype=np.float64)
    rows = np.arange(replicates)[:, None]
    for members in strata:
        picks = members[rng.integers(0, members.size, size=(replicates, members.size))]
        np.add.at(weights, (rows, picks), 1.0)
    return weights


def _weighted_auc(weights: np.ndarray, y: np.ndarray, probs: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of each replicate, images weighted by their cluster's draw count (ties 1/2)."""
    order = np.argsort(probs, kind="mergesort")
    ps, ys, cs = probs[order], y[order], clusters[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ps)) + 1]
    w = weights[:, cs]
    pos = np.add.reduceat(w * (ys == 1), starts, axis=1)
    neg = np.add.reduceat(w * (ys == 0), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    with np.errstate(divide="ignore", invalid="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def cluster_bootstrap(y_true: np.ndarray, probs: np.ndarray, called: np.ndarray, clusters: np.ndarray,
                      confidence: float = CONFIDENCE, replicates: int = CLUSTER_REPLICATES,
                      seed: int = CLUSTER_SEED) -> dict[str, Interval]:
    """Percentile intervals of every metric under a class-stratified bootstrap of clusters (patients).

    Parameters
    ----------
    y_true, probs, called
        Per image: truth 0/1, probability of the positive class, call 0/1 (at whatever
        threshold(s) the point estimates used).
    clusters
        Per image, the 0-based index of its cluster (:func:`cluster_ids`).

    Returns
    -------
    dict
        One :class:`Interval` per name of ``CLUSTER_METRICS``; NaN where the metric is undefined
        in most replicates (e.g. AUC with one class), and all NaN when a class has fewer than
        ``MIN_CLUSTERS_PER_CLASS`` patients.
    """
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    c = np.asarray(called, dtype=np.int64).reshape(-1)
    g = np.asarray(clusters, dtype=np.int64).reshape(-1)
    if not (y.size == p.size == c.size == g.size) or y.size == 0:
        raise ValueError("y_true, probs, called and clusters need the same, non-zero length")
    _, g = np.unique(g, return_inverse=True)
    n_clusters = int(g.max()) + 1
    counts = {name: np.bincount(g, weights=mask, minlength=n_clusters) for name, mask in (
        ("tp", (y == 1) & (c == 1)), ("fn", (y == 1) & (c == 0)), ("fp", (y == 0) & (c == 1)),
        ("tn", (y == 0) & (c == 0)))}
    rng = np.random.default_rng(seed)
    strata = _strata(y, g, n_clusters)
    if min(_pure_class_sizes(y, g, n_clusters)) < MIN_CLUSTERS_PER_CLASS:
        return {name: NAN_INTERVAL for name in CLUSTER_METRICS}
    values: dict[str, list[np.ndarray]] = {name: [] for name in CLUSTER_METRICS}
    for start in range(0, replicates, _BLOCK):
        w = _draw_weights(rng, strata, n_clusters, min(_BLOCK, replicates - start))
        tp, fn, fp, tn = (w @ counts[k] for k in ("tp", "fn", "fp", "tn"))
        with np.errstate(divide="ignore", invalid="ignore"):
            sens, spec = tp / (tp + fn), tn / (tn + fp)
            block = {
                "sensitivity": sens, "specificity": spec, "ppv": tp / (tp + fp), "npv": tn / (tn + fn),
                "accuracy": (tp + tn) / (tp + tn + fp + fn), "balanced_accuracy": (sens + spec) / 2.0,
                "f1": 2 * tp / (2 * tp + fp + fn), "auc": _weighted_auc(w, y, p, g),
            }
        for name in CLUSTER_METRICS:
            values[name].append(block[name])
    alpha = (1.0 - confidence) / 2.0 * 100.0
    out: dict[str, Interval] = {}
    for name in CLUSTER_METRICS:
        v = np.concatenate(values[name])
        finite = v[np.isfinite(v)]
        if finite.size < replicates // 2:
            out[name] = NAN_INTERVAL
            continue
        low, high = np.percentile(finite, [alpha, 100.0 - alpha])
        out[name] = Interval(float(low), float(high))
    return out
