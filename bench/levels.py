"""Compare the series/patient aggregation rules on an out-of-fold prediction report.

    python bench/levels.py DIR/predictions.csv [DIR2/predictions.csv ...]

For each report (from ``ctviewer cv``): image-level metrics with Wilson/DeLong and patient-bootstrap
intervals, then for each level and rule (mean, max, top3) the AUC and accuracy with intervals over
units, each unit called at a threshold chosen on the other folds' units.
"""

from __future__ import annotations

import sys

from ctviewer.core.metrics.aggregate import aggregate
from ctviewer.core.metrics.evaluation import metrics_from_predictions
from ctviewer.core.metrics.report import read_predictions_csv
from ctviewer.core.metrics.unit_report import level_metrics


def _fmt(value: float, ci) -> str:
    return f"{value:.3f} [{ci.low:.2f}-{ci.high:.2f}]" if not ci.is_nan else f"{value:.3f} [n/a]"


def main(paths: list[str]) -> None:
    for path in paths:
        pred = read_predictions_csv(path)
        m = metrics_from_predictions(pred)
        print(f"{path}: {m.n} images, {m.n_patients} patients")
        for name in ("auc", "accuracy", "sensitivity", "specificity"):
            boot = m.patient_ci.get(name)
            print(f"  image   {name:<12} {_fmt(getattr(m, name), getattr(m, f'{name}_ci'))}"
                  f"  patient bootstrap {'n/a' if boot is None or boot.is_nan else f'{boot.low:.2f}-{boot.high:.2f}'}")
        for level in ("series", "patient"):
            for rule in ("mean", "max", "top3"):
                units = aggregate(pred, level, rule)
                lm = level_metrics(units)
                print(f"  {level:<7} {rule:<5} n={lm.n:<3} AUC {_fmt(lm.auc, lm.auc_ci)}  accuracy "
                      f"{_fmt(lm.accuracy, lm.accuracy_ci)}  sens {_fmt(lm.sensitivity, lm.sensitivity_ci)}  "
                      f"spec {_fmt(lm.specificity, lm.specificity_ci)}  left out {len(units.mixed)} mixed")


if __name__ == "__main__":
    main(sys.argv[1:])
