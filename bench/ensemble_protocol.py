"""Train on part of the patients, predict the rest: what a user gets from `ctviewer train` on new images.

For each draw, about a third of the patients (grouped, stratified, seeded) is put aside as the
test part; ``ctviewer train`` (the default 5-fold ensemble) sees only the rest, ``ctviewer
predict`` then calls the test part at the bundle's threshold. Nothing is tuned on the test part.
The same test probabilities are also scored at the two other threshold rules the card records
(median of the fold models' own thresholds, and 0.5), to compare the rules on unseen patients.

    python bench/ensemble_protocol.py /work/shared/data/siim-ct-contrast --positive contrast \\
        --draws 0 1 2 --out /tmp/ensemble_runs/protocol
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _write_labels(path: Path, items: list) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "patient"])
        for it in items:
            writer.writerow([str(Path(it.path).resolve()), it.label, it.patient])


def _score(y: np.ndarray, p: np.ndarray, t: float) -> dict[str, float]:
    from ctviewer.core.metrics.evaluation import compute_metrics

    m = compute_metrics(y, p, t)
    return {"threshold": t, "accuracy": m.accuracy, "sensitivity": m.sensitivity, "specificity": m.specificity,
            "auc": m.auc}


def run_draw(data: str, positive: str, draw: int, out: Path, extra: list[str]) -> dict:
    from ctviewer.core.data.dataset import discover
    from ctviewer.core.data.splits import holdout_assignment

    dataset = discover(data, positive=positive)
    test_mask = holdout_assignment(dataset.y, dataset.patients, 1 / 3, seed=1000 + draw)
    folder = out / f"draw{draw}"
    folder.mkdir(parents=True, exist_ok=True)
    train_items = [it for it, t in zip(dataset.items, test_mask) if not t]
    test_items = [it for it, t in zip(dataset.items, test_mask) if t]
    # discover() reads a file named labels.csv (absolute paths are fine).
    for part, items in (("train", train_items), ("test", test_items)):
        (folder / part).mkdir(exist_ok=True)
        _write_labels(folder / part / "labels.csv", items)
    cli = [sys.executable, "-m", "ctviewer"]
    started = time.perf_counter()
    subprocess.run([*cli, "train", str(folder / "train" / "labels.csv"), "--positive", positive, "--out",
                    str(folder / "bundle"), "--seed", str(draw), "-q", *extra], check=True)
    train_seconds = time.perf_counter() - started
    subprocess.run([*cli, "predict", str(folder / "bundle"), str(folder / "test" / "labels.csv"), "--csv",
                    str(folder / "test_predictions.csv"), "-q"], check=True)
    with open(folder / "test_predictions.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    y = np.array([int(r["label"] == positive) for r in rows])
    p = np.array([float(r["prob"]) for r in rows])
    card = json.loads((folder / "bundle" / "model_card.json").read_text())
    member_thresholds = [m["threshold"] for m in card.get("members", [])]
    result = {
        "draw": draw, "train_images": len(train_items), "test_images": len(test_items),
        "train_patients": len({it.patient for it in train_items}),
        "test_patients": len({it.patient for it in test_items}),
        "train_seconds": round(train_seconds, 1),
        "bundle_threshold": _score(y, p, float(card["threshold"])),
        "fold_median_threshold": _score(y, p, float(np.median(member_thresholds))) if member_thresholds else None,
        "fixed_0.5": _score(y, p, 0.5),
        "expected_in_card": {k: card["expected_performance"]["metrics"][k] for k in ("auc", "accuracy")},
        "uncertainty_median": float(np.median([float(r["uncertainty"]) for r in rows if r["uncertainty"]] or [0])),
        "training_images_marked": sum(r["training_image"] == "1" for r in rows),
    }
    (folder / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result), flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--positive", required=True)
    parser.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, required=True)
    args, extra = parser.parse_known_args()
    results = [run_draw(args.data, args.positive, d, args.out, extra) for d in args.draws]
    for rule in ("bundle_threshold", "fold_median_threshold", "fixed_0.5"):
        scored = [r[rule] for r in results if r[rule]]
        print(f"{rule:>22}: mean accuracy {np.mean([s['accuracy'] for s in scored]):.3f}, "
              f"mean AUC {np.mean([s['auc'] for s in scored]):.3f} over {len(scored)} draws")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
