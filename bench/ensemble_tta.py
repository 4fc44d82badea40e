"""Does mirror TTA still pay inside a fold ensemble? Out-of-fold AUC and accuracy with and without it.

Reads a trained ensemble bundle (``ctviewer train``) and its ``oof_predictions.csv``: each image
is scored by the one fold member that never saw its patient, once with the recipe's TTA
(image + mirror averaged) and once without, and the pooled out-of-fold numbers are compared.
The same comparison then times the whole ensemble (every member) with and without TTA.

    python bench/ensemble_tta.py /tmp/train.ctvmodel [--images-from DATA_FOLDER]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    args = parser.parse_args()

    from sklearn.metrics import roc_auc_score

    from ctviewer.core.data.cache import Cache
    from ctviewer.core.metrics.thresholds import choose_threshold
    from ctviewer.core.model.bundle import load_bundle
    from ctviewer.core.model.inference import predict_arrays
    from ctviewer.core.model.members import fold_members

    bundle = load_bundle(args.bundle)
    members = fold_members(bundle.model)
    rows = list(csv.DictReader(open(args.bundle / "oof_predictions.csv", encoding="utf-8")))
    cache = Cache()
    x = np.stack([np.asarray(cache.array(r["path"], bundle.preprocessing), np.float32) for r in rows])[..., None]
    y = np.array([1 if r["label"] == bundle.classes[1] else 0 for r in rows])
    folds = np.array([int(r["fold"]) for r in rows])
    saved = np.array([float(r["prob"]) for r in rows])
    scores: dict[str, np.ndarray] = {}
    for tta in (True, False):
        p = np.full(len(rows), np.nan)
        for k, member in enumerate(members):
            idx = np.flatnonzero(folds == k)
            if len(idx):
                p[idx] = predict_arrays(member, x[idx], batch_size=32, tta=tta)
        scores["with mirror TTA" if tta else "without TTA"] = p
    print(f"{args.bundle}: {len(members)} members, {len(rows)} out-of-fold images")
    print(f"  check: recomputed with TTA vs the bundle's oof file, max |diff| "
          f"{np.max(np.abs(scores['with mirror TTA'] - saved)):.2e}")
    for name, p in scores.items():
        youden = choose_threshold(y, p, "youden")
        acc = {t: float(np.mean((p >= t) == (y == 1))) for t in (0.5, youden)}
        print(f"  {name:16s} AUC {roc_auc_score(y, p):.4f}  accuracy at 0.5 {acc[0.5]:.3f}  "
              f"at pooled Youden ({youden:.3f}) {acc[youden]:.3f}")
    batch = x[:64]
    for tta in (True, False):
        predict_arrays(bundle.model, batch[:32], batch_size=32, tta=tta)  # trace
        t0, c0 = time.perf_counter(), time.process_time()
        predict_arrays(bundle.model, batch, batch_size=32, tta=tta)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"  whole ensemble {'with' if tta else 'without'} TTA: {1000 * wall / len(batch):.1f} ms/image wall, "
              f"{1000 * cpu / len(batch):.1f} CPU-ms/image (batch 32)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
