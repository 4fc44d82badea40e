"""``ctviewer evaluate PREDICTIONS.csv``: recompute every metric and interval from a prediction report."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from ctviewer.core.errors import CTViewerError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="recompute metrics with 95%% intervals from a prediction CSV",
        description=(
            "Recompute sensitivity, specificity, PPV, NPV, accuracy, balanced accuracy, F1 and AUC, "
            "each with a 95%% interval, from a per-image prediction CSV (columns path, prob, label, "
            "pred, threshold...), and say which numbers rest on too few images."
        ),
    )
    parser.add_argument("predictions", metavar="PREDICTIONS.csv", help="prediction report to evaluate")
    parser.add_argument("--threshold", type=float, default=None,
                        help="call an image positive when prob >= T (default: the report's threshold)")
    parser.add_argument("--positive", default=None, metavar="NAME",
                        help="name of the positive class (default: read from the pred column)")
    parser.add_argument("--json", action="store_true", help="print the metrics JSON instead of a table")
    parser.add_argument("--level", choices=("image", "series", "patient"), default=None,
                        help="count images, series or patients (default: the report's own level); a per-image "
                             "report is aggregated by --rule")
    parser.add_argument("--rule", default="mean", metavar="RULE",
                        help="aggregation of a per-image report: mean (default), max, top<k>")
    parser.add_argument("--threshold-rule", choices=("youden", "sensitivity", "specificity"), default="youden",
                        help="series/patient threshold of an out-of-fold report, chosen per fold on the other "
                             "folds' units (default youden)")
    parser.add_argument("--target", type=float, metavar="T", help="target for --threshold-rule sensitivity/specificity")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctviewer.core.metrics.evaluation import metrics_from_predictions
    from ctviewer.core.metrics.report import read_predictions_csv

    if args.threshold is not None and not (math.isfinite(args.threshold) and 0.0 <= args.threshold <= 1.0):
        raise CTViewerError(f"--threshold is a probability between 0 and 1, got {args.threshold}")
    pred = read_predictions_csv(args.predictions, positive=args.positive, threshold=args.threshold)
    file_level = _report_level(args.predictions)
    level = args.level or file_level
    try:
        if level == file_level:
            metrics = metrics_from_predictions(pred, args.threshold, unit=level)
        elif file_level != "image":
            raise CTViewerError(f"{args.predictions}: a {file_level}-level report cannot be evaluated at {level} "
                                "level; evaluate the per-image report (predictions.csv) instead")
        else:
            from ctviewer.core.metrics.aggregate import aggregate
            from ctviewer.core.metrics.unit_report import level_metrics

            units = aggregate(pred, level, args.rule, threshold=args.threshold,
                              threshold_rule=args.threshold_rule, target=args.target)
            metrics = level_metrics(units)
    except ValueError as exc:
        raise CTViewerError(f"{args.predictions}: {exc}") from None
    if args.json:
        payload = metrics.to_json_dict()
        payload["source"] = str(args.predictions)
        print(json.dumps(payload, indent=2, allow_nan=False, ensure_ascii=False))
    else:
        print(format_table(metrics, str(args.predictions)))
    return 0


def _report_level(path: str) -> str:
    """``image`` for a per-image report, else the ``level`` column of a series/patient report."""
    import csv

    with open(path, encoding="utf-8-sig", newline="") as handle:
        row = next(csv.DictReader(handle), None) or {}
    level = (row.get("level") or "").strip()
    return level if "unit" in row and level in ("series", "patient") else "image"


def format_table(metrics: Any, source: str) -> str:
    """The metrics as a plain-text table: metric, value, 95% CI, method; then the warnings."""
    from ctviewer.core.metrics.evaluation import metric_rows

    negative, positive = metrics.classes or ("negative", "positive")
    units = "series" if metrics.unit == "series" else f"{metrics.unit}s"
    lines = [
        f"{source}: {metrics.n} labelled {units}, {metrics.n_positive} {positive} (positive), "
        f"{metrics.n_negative} {negative} (negative); threshold {metrics.threshold:.4g}",
        f"confusion: TP {metrics.tp}  FN {metrics.fn}  FP {metrics.fp}  TN {metrics.tn}",
        "",
        f"{'metric':<18} {'value':>6}  {f'{metrics.confidence:.0%} CI':<12} method",
    ]
    for row in metric_rows(metrics):
        value = "n/a" if math.isnan(row.value) else f"{row.value:.3f}"
        ci = "" if row.ci is None else ("n/a" if row.ci.is_nan else f"{row.ci.low:.3f}-{row.ci.high:.3f}")
        lines.append(f"{row.label:<18} {value:>6}  {ci:<12} {row.method}")
    if metrics.patient_ci:
        lines += ["", f"{metrics.confidence:.0%} CI resampling the {metrics.n_patients} patients (class-stratified "
                      "bootstrap; slices of one patient are not independent):"]
        for name, ci in metrics.patient_ci.items():
            shown = "n/a" if ci.is_nan else f"{ci.low:.3f}-{ci.high:.3f}"
            lines.append(f"{name.replace('_', ' '):<18} {'':>6}  {shown}")
    if metrics.warnings:
        lines += ["", "warnings:"] + [f"  - {text}" for text in metrics.warnings]
    return "\n".join(lines)
