"""Measure model recipes on the SIIM CT contrast set with patient-grouped 5-fold cross-validation.

Runs independently of ``ctviewer.core.training`` (so the recipe can be measured on its own):
loads the DICOMs with ``ctviewer.core.imaging`` (wide window, ``--size`` px), makes
``StratifiedGroupKFold(5, shuffle=True, random_state=0)`` folds grouped by PatientID, and per
fold trains on the training part with a patient-grouped inner validation split (early stopping /
best weights / threshold, never the test fold), then predicts the held-out fold.

Prints, per variant: pooled out-of-fold ROC AUC, accuracy at 0.5 and at the threshold chosen on
the inner validation data (Youden's J), sensitivity, specificity, classes predicted, wall time;
and the logistic-regression-on-HU-histogram baseline on the same folds.

Usage::

    .venv/bin/python bench/recipe_search.py                       # the default recipe
    .venv/bin/python bench/recipe_search.py --variant default hist_only cnn_only
    .venv/bin/python bench/recipe_search.py --model seed --size 256
    .venv/bin/python bench/recipe_search.py --list                # the variants
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "siim-ct-contrast"
POSITIVE = "contrast"

# Ablations / alternatives of the default recipe: DefaultArchitecture fields ("arch") and
# TrainConfig fields ("config"). "default" is the recipe itself (models.default_config).
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {},
    "hist_only": {"arch": {"cnn": False}},
    "cnn_only": {"arch": {"histogram": False}},
    "cnn_only_wide": {"arch": {"histogram": False, "windows": ((0.0, 2000.0),)}},
    "no_aug": {"arch": {"flip": False, "rotation": 0.0, "shift": 0.0, "zoom": 0.0, "jitter_hu": 0.0, "jitter_gain": 0.0}},
    "monitor_auc": {"config": {"monitor": "val_auc", "patience": 20}},
    "size96": {"config": {"input_size": 96}},
    "size192": {"config": {"input_size": 192}},
    "epochs40": {"config": {"epochs": 40}},
    "epochs100": {"config": {"epochs": 100}},
    "lr1e-3": {"config": {"learning_rate": 1e-3}},
    "no_class_weight": {"config": {"class_weight": False}},
    "hist64": {"arch": {"hist_bins": 64}},
    "hist_wide": {"arch": {"hist_low_hu": -1000.0, "hist_high_hu": 1000.0, "hist_bins": 48}},
    "dropout0.5": {"arch": {"dropout": 0.5}},
    "small_cnn": {"arch": {"filters": (8, 16, 32, 32)}},
    "avgmax": {"arch": {"cnn_pooling": "avgmax"}},
    "down2": {"arch": {"cnn_downsample": 2, "filters": (16, 32, 64)}},
    "down2_avgmax": {"arch": {"cnn_downsample": 2, "filters": (16, 32, 64), "cnn_pooling": "avgmax"}},
    "last_epoch": {"config": {"restore_best": False}},
    "bn0.9": {"arch": {"bn_momentum": 0.9}},
    "attn4_bn0.9": {"arch": {"attention_masks": 4, "cnn_pooling": "none", "bn_momentum": 0.9}},
    "attn4": {"arch": {"attention_masks": 4, "cnn_pooling": "none"}},
    "attn4_pool": {"arch": {"attention_masks": 4}},
    "attn4_down2": {"arch": {"attention_masks": 4, "cnn_pooling": "none", "cnn_downsample": 2, "filters": (16, 32, 64)}},
}


@dataclass
class Data:
    images: np.ndarray  # (N, S, S, 1) float32, wide window
    labels: np.ndarray  # (N,) int, 1 = contrast
    patients: np.ndarray  # (N,) str
    hu_full: list[np.ndarray]  # full-resolution HU (for the histogram baseline)


def load_data(root: Path, size: int) -> Data:
    from ctviewer.core import imaging

    prep = imaging.Preprocessing(window="wide", size=size, resize="pad")
    images, labels, patients, hu = [], [], [], []
    for label, cls in ((1, POSITIVE), (0, "no_contrast")):
        for path in sorted((root / cls).glob("*.dcm")):
            image = imaging.load(path)
            images.append(imaging.preprocess(image, prep))
            labels.append(label)
            patients.append(image.meta.patient_id)
            hu.append(image.pixels)
    return Data(np.stack(images)[..., None].astype(np.float32), np.array(labels), np.array(patients), hu)


def outer_folds(data: Data, k: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=0)
    return list(splitter.split(np.zeros(len(data.labels)), data.labels, data.patients))


def inner_split(labels: np.ndarray, groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A patient-grouped, stratified ~20 % validation split of the training part."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    return next(splitter.split(np.zeros(len(labels)), labels, groups))


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_curve

    if len(np.unique(y)) < 2:
        return 0.5
    fpr, tpr, thr = roc_curve(y, p)
    best = int(np.argmax(tpr - fpr))
    return float(min(max(thr[best], 1e-6), 1.0))


def save_result(result: "Result", labels: np.ndarray, folder: Path | None) -> None:
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in result.name)
        np.savez(folder / f"{safe}.npz", probs=result.probs, thresholds=result.thresholds, labels=labels)


@dataclass
class Result:
    name: str
    probs: np.ndarray
    thresholds: np.ndarray  # per image, the threshold chosen in its fold
    seconds: float
    fold_aucs: list[float]


def summarise(result: Result, labels: np.ndarray) -> str:
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(labels, result.probs)
    lines = [f"== {result.name}: pooled OOF AUC {auc:.3f}  (fold AUCs {', '.join(f'{a:.2f}' for a in result.fold_aucs)})"]
    for title, thr in (("0.5", np.full_like(result.probs, 0.5)), ("val-Youden", result.thresholds)):
        pred = (result.probs >= thr).astype(int)
        tp = int(((pred == 1) & (labels == 1)).sum())
        tn = int(((pred == 0) & (labels == 0)).sum())
        sens = tp / max(1, int((labels == 1).sum()))
        spec = tn / max(1, int((labels == 0).sum()))
        lines.append(
            f"   threshold {title:>10}: accuracy {np.mean(pred == labels):.3f}  sensitivity {sens:.3f}  "
            f"specificity {spec:.3f}  classes predicted {sorted(set(pred.tolist()))}"
        )
    lines.append(f"   wall time {result.seconds:.0f} s")
    return "\n".join(lines)


# --------------------------------------------------------------------------- baseline


def histogram_features(hu: np.ndarray) -> np.ndarray:
    """Body-normalised HU histogram (-1000..1000, 40 bins) of one full-resolution slice."""
    body = hu[hu > -500]
    counts, _ = np.histogram(body, bins=40, range=(-1000, 1000))
    return np.log(counts / max(1, body.size) + 1e-3)


def run_histogram_lr(data: Data, folds: list[tuple[np.ndarray, np.ndarray]]) -> Result:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    x = np.stack([histogram_features(h) for h in data.hu_full])
    probs, thresholds, aucs = np.zeros(len(x)), np.zeros(len(x)), []
    for fold, (train, test) in enumerate(folds):
        fit_idx, val_idx = (train[i] for i in inner_split(data.labels[train], data.patients[train], fold))
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        clf.fit(x[fit_idx], data.labels[fit_idx])
        thr = youden_threshold(data.labels[val_idx], clf.predict_proba(x[val_idx])[:, 1])
        clf.fit(x[train], data.labels[train])  # refit on all training data; keep the threshold
        probs[test] = clf.predict_proba(x[test])[:, 1]
        thresholds[test] = thr
        aucs.append(roc_auc_score(data.labels[test], probs[test]))
    return Result("histogram logistic regression", probs, thresholds, time.perf_counter() - start, aucs)


# --------------------------------------------------------------------------- CNN recipes


def run_keras(
    data: Data, folds: list[tuple[np.ndarray, np.ndarray]], name: str, model: str, variant: dict[str, dict[str, Any]],
    overrides: dict[str, Any], verbose: int,
) -> Result:
    import keras
    from sklearn.metrics import roc_auc_score

    from ctviewer.core import models

    config = models.default_config(model).with_overrides(**variant.get("config", {})).with_overrides(**overrides)
    arch = replace(models.DefaultArchitecture(), **variant.get("arch", {}))
    if config.input_size != data.images.shape[1]:
        raise SystemExit(f"variant {name} needs --size {config.input_size} data; run it on its own")
    start = time.perf_counter()
    probs, thresholds, aucs = np.zeros(len(data.labels)), np.zeros(len(data.labels)), []
    for fold, (train, test) in enumerate(folds):
        keras.utils.set_random_seed(config.seed + fold)
        fit_idx, val_idx = (train[i] for i in inner_split(data.labels[train], data.patients[train], config.seed + fold))
        if model == "default":
            net = models.build_default(config.input_size, config.window, config.seed + fold, arch)
        else:
            net = models.build_model(replace(config, seed=config.seed + fold))
        steps = int(np.ceil(len(fit_idx) / config.batch_size))
        models.compile_model(net, config, steps)
        y_fit = data.labels[fit_idx]
        class_weight = None
        if config.class_weight:
            counts = np.bincount(y_fit, minlength=2)
            class_weight = {c: len(y_fit) / (2.0 * max(1, counts[c])) for c in (0, 1)}
        mode = "min" if config.monitor.endswith("loss") else "max"
        stopper = keras.callbacks.EarlyStopping(
            monitor=config.monitor, mode=mode, patience=config.patience, restore_best_weights=config.restore_best
        )
        net.fit(
            data.images[fit_idx], y_fit, validation_data=(data.images[val_idx], data.labels[val_idx]),
            epochs=config.epochs, batch_size=config.batch_size, class_weight=class_weight,
            callbacks=[stopper], shuffle=True, verbose=verbose,
        )
        val_probs = net.predict(data.images[val_idx], verbose=0)[:, 1]
        probs[test] = net.predict(data.images[test], verbose=0)[:, 1]
        thresholds[test] = youden_threshold(data.labels[val_idx], val_probs)
        aucs.append(roc_auc_score(data.labels[test], probs[test]))
        print(
            f"   fold {fold}: test AUC {aucs[-1]:.3f}  best epoch {stopper.best_epoch + 1}  "
            f"val AUC {roc_auc_score(data.labels[val_idx], val_probs):.3f}  {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    return Result(f"{model}:{name} {config.input_size}px", probs, thresholds, time.perf_counter() - start, aucs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="default", help="model name (variants apply to 'default' only)")
    parser.add_argument("--variant", nargs="+", default=["default"], choices=sorted(VARIANTS))
    parser.add_argument("--size", type=int, default=None, help="input size (default: the model's)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--save", type=Path, default=None, help="folder for out-of-fold probabilities (.npz)")
    args = parser.parse_args(argv)
    if args.list:
        for name, spec in VARIANTS.items():
            print(f"{name:16} {spec}")
        return 0

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from ctviewer.core import models

    size = args.size or VARIANTS[args.variant[0]].get("config", {}).get("input_size") or models.default_config(args.model).input_size
    t0 = time.perf_counter()
    data = load_data(args.data, size)
    folds = outer_folds(data)
    print(f"loaded {len(data.labels)} images ({int(data.labels.sum())} {POSITIVE}), "
          f"{len(set(data.patients))} patients, {size} px in {time.perf_counter() - t0:.0f} s", flush=True)
    if not args.no_baseline:
        baseline = run_histogram_lr(data, folds)
        save_result(baseline, data.labels, args.save)
        print(summarise(baseline, data.labels), flush=True)
    overrides = {"input_size": size, "epochs": args.epochs, "seed": args.seed}
    for name in args.variant:
        result = run_keras(data, folds, name, args.model, VARIANTS[name], overrides, args.verbose)
        save_result(result, data.labels, args.save)
        print(summarise(result, data.labels), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
