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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctviewer.core.metrics.evaluation import metrics_from_predictions
    from ctviewer.core.metrics.report import read_predictions_csv

    if args.threshold is not None and not math.isfinite(args.threshold):
        raise CTViewerError(f"--threshold must be a finite number, got {args.threshold}")
    pred = read_predictions_csv(args.predictions, positive=args.positive, threshold=args.threshold)
    try:
        metrics = metrics_from_predictions(pred, args.threshold)
    except ValueError as exc:
        raise CTViewerError(f"{args.predictions}: {exc}") from None
    if args.json:
        payload = metrics.to_json_dict()
        payload["source"] = str(args.predictions)
        print(json.dumps(payload, indent=2, allow_nan=False, ensure_ascii=False))
    else:
        print(format_table(metrics, str(args.predictions)))
    return 0


def format_table(metrics: Any, source: str) -> str:
    """The metrics as a plain-text table: metric, value, 95% CI, method; then the warnings."""
    from ctviewer.core.metrics.evaluation import metric_rows

    negative, positive = metrics.classes or ("negative", "positive")
    lines = [
        f"{source}: {metrics.n} labelled images, {metrics.n_positive} {positive} (positive), "
        f"{metrics.n_negative} {negative} (negative); threshold {metrics.threshold:.4g}",
        f"confusion: TP {metrics.tp}  FN {metrics.fn}  FP {metrics.fp}  TN {metrics.tn}",
        "",
        f"{'metric':<18} {'value':>6}  {f'{metrics.confidence:.0%} CI':<12} method",
    ]
    for row in metric_rows(metrics):
        value = "n/a" if math.isnan(row.value) else f"{row.value:.3f}"
        ci = "" if row.ci is None else ("n/a" if row.ci.is_nan else f"{row.ci.low:.3f}-{row.ci.high:.3f}")
        lines.append(f"{row.label:<18} {value:>6}  {ci:<12} {row.method}")
    if metrics.warnings:
        lines += ["", "warnings:"] + [f"  - {text}" for text in metrics.warnings]
    return "\n".join(lines)
