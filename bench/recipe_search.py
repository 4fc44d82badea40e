"""Measure model recipes on the SIIM CT contrast set with patient-grouped 5-fold cross-validation.

Runs independently of ``ctviewer.core.training`` (so the recipe can be measured on its own):
loads the DICOMs with ``ctviewer.core.data.imaging`` (wide window, ``--size`` px), makes
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
    # COVID-CT dev (labels.csv with patient groups), the cheap proxy: 3 folds, 1 member, 20 epochs
    .venv/bin/python bench/recipe_search.py --data ../shared/data/covid-ct-dev --positive covid \
        --folds 3 --members 1 --epochs 20 --variant default texture
    # SIIM as 8-bit PNGs exported in a soft-tissue window (intensity signal without HU)
    .venv/bin/python bench/recipe_search.py --as-png soft_tissue --members 1 --variant default
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
# Round 1's first default: one network, CNN + global average pooling, no attention, BN momentum 0.99.
_R1 = {"members": 1, "dropout": 0.3, "attention_bins": 16, "hist_bins": 32, "attention_masks": 0,
       "cnn_pooling": "avg", "bn_momentum": 0.99}
_NO_TTA = {"tta": False}
# Display-grey input (a PNG, read as wide-window HU): the CNN sees the whole grey range, its dark
# half and its bright half instead of three HU windows; histograms over the whole grey range,
# every pixel but the black background counted; zoom/shift/rotation about twice the default's.
_GREY_WINDOWS = ((0.0, 2000.0), (-500.0, 1000.0), (500.0, 1000.0))
_GREY_HIST = {"hist_low_hu": -1000.0, "hist_high_hu": 1000.0, "body_threshold_hu": -990.0, "hist_bins": 32,
              "attention_bins": 16}
_AUG_STRONG = {"rotation": 0.06, "shift": 0.1, "zoom": 0.25}
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {},
    # --- round 1
    "r1_first": {"arch": _R1, "config": _NO_TTA},
    "r1_hist_only": {"arch": {**_R1, "cnn": False}, "config": _NO_TTA},
    "r1_cnn_only": {"arch": {**_R1, "histogram": False}, "config": _NO_TTA},
    "r1_avgmax": {"arch": {**_R1, "cnn_pooling": "avgmax"}, "config": _NO_TTA},
    "r1_down2": {"arch": {**_R1, "cnn_downsample": 2, "filters": (16, 32, 64)}, "config": _NO_TTA},
    "r1_down2_avgmax": {"arch": {**_R1, "cnn_pooling": "avgmax", "cnn_downsample": 2, "filters": (16, 32, 64)},
                        "config": _NO_TTA},
    "r1_last_epoch": {"arch": _R1, "config": {**_NO_TTA, "restore_best": False}},
    "r1_bn0.9": {"arch": {**_R1, "bn_momentum": 0.9}, "config": _NO_TTA},
    # --- round 2: attention-masked histograms, BN momentum 0.9 (one network; dropout 0.3, 16/32 bins)
    "r2_attn4": {"arch": {"members": 1, "dropout": 0.3, "attention_bins": 16, "hist_bins": 32}, "config": {"tta": False}},
    "r2_attn8": {"arch": {"members": 1, "dropout": 0.3, "attention_bins": 16, "hist_bins": 32, "attention_masks": 8},
                 "config": {"tta": False}},
    "r2_ls0.1": {"arch": {"members": 1, "dropout": 0.3, "attention_bins": 16, "hist_bins": 32},
                 "config": {"tta": False}, "loss": {"label_smoothing": 0.1}},
    "r2_epochs100": {"arch": {"members": 1, "dropout": 0.3, "attention_bins": 16, "hist_bins": 32},
                     "config": {"tta": False, "epochs": 100}},
    "r2_head_average": {"arch": {"members": 1, "dropout": 0.3, "attention_bins": 16, "hist_bins": 32, "head": "average"},
                        "config": {"tta": False}},
    "r2_reg": {"arch": {"members": 1}, "config": {"tta": False}},
    "r2_tta": {"arch": {"members": 1, "dropout": 0.3, "attention_bins": 16, "hist_bins": 32}},
    "r2_reg_tta": {"arch": {"members": 1}},
    # --- round 3: the default (reg + tta + 3 members); ablations of it
    "one_member": {"arch": {"members": 1}},
    "two_members": {"arch": {"members": 2}},
    "no_tta": {"config": {"tta": False}},
    "hist_only": {"arch": {"cnn": False}},
    "no_global_hist": {"arch": {"histogram": False}},
    "no_aug": {"arch": {"flip": False, "rotation": 0.0, "shift": 0.0, "zoom": 0.0, "jitter_hu": 0.0, "jitter_gain": 0.0}},
    "size96": {"config": {"input_size": 96}},
    "epochs40": {"config": {"epochs": 40}},
    # --- issue 19: texture (COVID-CT, display-grey PNGs, no HU)
    "pool_avg": {"arch": {"cnn_pooling": "avg"}},
    "pool_avgmax": {"arch": {"cnn_pooling": "avgmax"}},
    "grey_windows": {"arch": {"windows": _GREY_WINDOWS}},
    "grey_hist": {"arch": _GREY_HIST},
    "aug_strong": {"arch": _AUG_STRONG},
    "texture": {"arch": {"cnn_pooling": "avg", "windows": _GREY_WINDOWS, **_AUG_STRONG}},
    "texture_grey": {"arch": {"cnn_pooling": "avg", "windows": _GREY_WINDOWS, **_AUG_STRONG, **_GREY_HIST}},
    "pool_aug": {"arch": {"cnn_pooling": "avg", **_AUG_STRONG}},  # texture's HU-path part (HU windows, HU histograms)
    "before_19": {"arch": {"cnn_pooling": "none"}},  # the default until issue 19: no pooled CNN features
}
# Every variant above but "default" was measured against the recipe of before issue 19 (no pooled
# CNN features in the head); those that do not name their pooling keep that.
for _name, _spec in VARIANTS.items():
    if _name != "default":
        _spec["arch"] = {"cnn_pooling": "none", **_spec.get("arch", {})}


@dataclass
class Data:
    images: np.ndarray  # (N, S, S, 1) float32, wide window
    labels: np.ndarray  # (N,) int, 1 = contrast
    patients: np.ndarray  # (N,) str
    hu_full: list[np.ndarray]  # full-resolution HU (for the histogram baseline)


def load_data(root: Path, size: int, positive: str = POSITIVE, as_png: str | None = None) -> Data:
    """SIIM's ``contrast/`` + ``no_contrast/`` DICOMs, or any folder with a ``labels.csv``
    (path,label,patient; ``positive`` names the positive label, every other label is negative).

    ``as_png``: a window spec; each HU image is first shown in that window and rounded to 8 bits,
    then read as a PNG would be (no HU): a stand-in for exported slices whose signal is intensity.
    """
    from ctviewer.core.data import imaging

    prep = imaging.Preprocessing(window="wide", size=size, resize="pad")
    if (root / "labels.csv").is_file():
        entries = _labels_csv_entries(root, positive)
    else:
        entries = [(path, label, None) for label, cls in ((1, positive), (0, "no_contrast"))
                   for path in sorted((root / cls).glob("*.dcm"))]
    images, labels, patients, hu = [], [], [], []
    for path, label, patient in entries:
        image = imaging.load(path)
        if as_png is not None and image.meta.is_hu:
            image = _exported_as_png(image, as_png)
        images.append(imaging.preprocess(image, prep))
        labels.append(label)
        patients.append(patient or image.meta.patient_id)
        # Not HU (a PNG): the baseline reads the windowed image as the model does (wide window).
        hu.append(image.pixels if image.meta.is_hu else imaging.preprocess(
            image, imaging.Preprocessing(window="wide", size=max(image.pixels.shape), resize="pad")) * 2000.0 - 1000.0)
    return Data(np.stack(images)[..., None].astype(np.float32), np.array(labels), np.array(patients), hu)


def _exported_as_png(image: Any, window: str) -> Any:
    from dataclasses import replace as replace_fields

    from ctviewer.core.data import imaging

    center, width = imaging.resolve_window(imaging.parse_window(window), image)
    grey = np.round(imaging.apply_window(image.pixels, center, width) * 255.0).astype(np.float32)
    return imaging.Image(grey, replace_fields(image.meta, is_hu=False, format="png"))


def _labels_csv_entries(root: Path, positive: str) -> list[tuple[Path, int, str | None]]:
    import csv

    with open(root / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not any(row["label"] == positive for row in rows):
        raise SystemExit(f"no image of the positive label {positive!r} in {root / 'labels.csv'}; pass --positive")
    return [(root / row["path"], int(row["label"] == positive), row.get("patient") or None) for row in rows]


def outer_folds(data: Data, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(data.labels)), data.labels, data.patients))


def inner_split(labels: np.ndarray, groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A patient-grouped, stratified ~20 % validation split of the training part."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    return next(splitter.split(np.zeros(len(labels)), labels, groups))


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Youden's J as ``training.fit`` chooses it (middle of the widest best run), 0.5 if one class."""
    from ctviewer.core.metrics.thresholds import choose_threshold

    if len(np.unique(y)) < 2:
        return 0.5
    return choose_threshold(y, p, "youden")


def save_result(result: Result, labels: np.ndarray, folder: Path | None) -> None:
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
    median = float(np.median(np.unique(result.thresholds)))
    choices = (("0.5", np.full_like(result.probs, 0.5)), ("val-Youden", result.thresholds),
               (f"median {median:.2f}", np.full_like(result.probs, median)))
    for title, thr in choices:
        pred = (result.probs >= thr).astype(int)
        tp = int(((pred == 1) & (labels == 1)).sum())
        tn = int(((pred == 0) & (labels == 0)).sum())
        sens = tp / max(1, int((labels == 1).sum()))
        spec = tn / max(1, int((labels == 0).sum()))
        lines.append(
            f"   threshold {title:>12}: accuracy {np.mean(pred == labels):.3f}  sensitivity {sens:.3f}  "
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


def predict_positive(net: Any, x: np.ndarray, tta: bool) -> np.ndarray:
    """P(positive); with ``tta`` the mean over the image and its left-right mirror (as inference.py)."""
    probs = net.predict(x, verbose=0)[:, 1]
    if tta:
        probs = (probs + net.predict(x[:, :, ::-1], verbose=0)[:, 1]) / 2.0
    return probs


def run_keras(
    data: Data, folds: list[tuple[np.ndarray, np.ndarray]], name: str, model: str, variant: dict[str, dict[str, Any]],
    overrides: dict[str, Any], verbose: int, members: int | None = None,
) -> Result:
    import keras
    from sklearn.metrics import roc_auc_score

    from ctviewer.core.model import recipes as models

    config = models.default_config(model).with_overrides(**variant.get("config", {})).with_overrides(**overrides)
    arch = replace(models.DefaultArchitecture(), **variant.get("arch", {}))
    if members is not None:
        arch = replace(arch, members=members)
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
        models.compile_model(net, config, steps, label_smoothing=variant.get("loss", {}).get("label_smoothing"))
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
        val_probs = predict_positive(net, data.images[val_idx], config.tta)
        probs[test] = predict_positive(net, data.images[test], config.tta)
        thresholds[test] = youden_threshold(data.labels[val_idx], val_probs)
        aucs.append(roc_auc_score(data.labels[test], probs[test]))
        print(
            f"   fold {fold}: test AUC {aucs[-1]:.3f}  best epoch {stopper.best_epoch + 1}  "
            f"val AUC {roc_auc_score(data.labels[val_idx], val_probs):.3f}  {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    label = f"{model}:{name} {config.input_size}px seed{config.seed} {config.epochs}ep {arch.members}m {len(folds)}f"
    return Result(label, probs, thresholds, time.perf_counter() - start, aucs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="default", help="model name (variants apply to 'default' only)")
    parser.add_argument("--variant", nargs="+", default=["default"], choices=sorted(VARIANTS))
    parser.add_argument("--size", type=int, default=None, help="input size (default: the model's)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None, help="training seed (default: the recipe's)")
    parser.add_argument("--fold-seed", type=int, default=0, help="random_state of the outer StratifiedGroupKFold")
    parser.add_argument("--folds", type=int, default=5, help="outer folds (3 for a cheap proxy)")
    parser.add_argument("--members", type=int, default=None, help="ensemble members (default: the variant's)")
    parser.add_argument("--positive", default=POSITIVE, help="positive label (labels.csv data)")
    parser.add_argument("--as-png", default=None, metavar="WINDOW",
                        help="read HU images as 8-bit PNGs exported in this window (e.g. soft_tissue)")
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
    from ctviewer.core.model import recipes as models

    size = args.size or VARIANTS[args.variant[0]].get("config", {}).get("input_size") or models.default_config(args.model).input_size
    t0 = time.perf_counter()
    data = load_data(args.data, size, args.positive, args.as_png)
    folds = outer_folds(data, k=args.folds, seed=args.fold_seed)
    print(f"loaded {len(data.labels)} images ({int(data.labels.sum())} {args.positive}), "
          f"{len(set(data.patients))} patients, {size} px in {time.perf_counter() - t0:.0f} s", flush=True)
    if not args.no_baseline:
        baseline = run_histogram_lr(data, folds)
        save_result(baseline, data.labels, args.save)
        print(summarise(baseline, data.labels), flush=True)
    overrides = {"input_size": size, "epochs": args.epochs, "seed": args.seed}
    for name in args.variant:
        cpu = time.process_time()
        result = run_keras(data, folds, name, args.model, VARIANTS[name], overrides, args.verbose, args.members)
        print(f"   CPU time {time.process_time() - cpu:.0f} s", flush=True)
        save_result(result, data.labels, args.save)
        print(summarise(result, data.labels), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
