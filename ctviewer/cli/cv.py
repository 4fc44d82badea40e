"""``ctviewer cv DATA --folds K --out DIR``: patient-grouped k-fold cross-validation.

Writes ``DIR/predictions.csv`` (one out-of-fold row per image, with its fold),
``DIR/metrics.json`` (pooled metrics with intervals, per-fold thresholds and metrics) and
``DIR/folds.json`` (which image was tested in which fold). ``--keep-models`` also writes
each fold's bundle under ``DIR/models/`` and their averaging ensemble as ``DIR/ensemble``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ctviewer.cli._progress import InterruptToStop, ProgressBars, add_progress_flag, quiet_tensorflow_logs
from ctviewer.cli.train import add_data_arguments, add_recipe_arguments, config_from_args, load_dataset, metrics_line
from ctviewer.core.errors import CTViewerError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cv",
        help="cross-validate a recipe with patient-grouped folds",
        description="Patient-grouped, stratified K-fold cross-validation: every image is predicted by a "
                    "model that never saw its patient. Writes DIR/predictions.csv and DIR/metrics.json.",
    )
    add_data_arguments(parser)
    parser.add_argument("--folds", type=int, default=5, metavar="K", help="number of folds (default 5)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_recipe_arguments(parser)
    parser.add_argument("--keep-models", action="store_true",
                        help="save each fold's model and their ensemble (DIR/models/, DIR/ensemble)")
    add_progress_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctviewer.core.metrics.report import write_metrics_json, write_predictions_csv, write_text_atomic
    from ctviewer.core.training.cv import cross_validate

    if args.folds < 2:
        raise CTViewerError(f"--folds must be at least 2 (got {args.folds})")
    quiet_tensorflow_logs()
    config = config_from_args(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CTViewerError(f"{out}: exists and is not a folder")
    with ProgressBars(disable=args.quiet, epochs=config.epochs) as bars, InterruptToStop(bars) as stop:
        dataset, cache = load_dataset(args, bars)
        result = cross_validate(dataset, config, folds=args.folds, on_event=bars, should_stop=stop, cache=cache,
                                keep_models=args.keep_models)
    out.mkdir(parents=True, exist_ok=True)
    write_predictions_csv(result.predictions, out / "predictions.csv")
    write_metrics_json(result.metrics, out / "metrics.json", extra=result.to_json_extra())
    write_text_atomic(out / "folds.json", json.dumps(result.folds.to_json_dict(), indent=1) + "\n")
    if args.keep_models:
        from ctviewer.core.model.bundle import save_bundle

        for k, member in enumerate(result.models):
            save_bundle(member, out / "models" / f"fold_{k + 1}")
        save_bundle(result.ensemble, out / "ensemble", metrics=result.metrics,
                    extra={"cross_validation": result.to_json_extra()})
    print(format_cv_summary(result))
    print(f"  wrote {out / 'predictions.csv'}, {out / 'metrics.json'}, {out / 'folds.json'}"
          + (f", {out / 'ensemble'}" if args.keep_models else ""))
    return 0


def format_cv_summary(result: Any) -> str:
    """Pooled metrics, per-fold table and warnings as plain text."""
    m = result.metrics
    ds = result.dataset
    lines = [
        (f"{result.folds.k}-fold patient-grouped cross-validation of {result.config.model} on {ds.source}: "
         f"{ds.n_images} images, {ds.n_patients} patients, positive class {ds.positive}"),
        f"  pooled out-of-fold: {metrics_line(m)}",
        f"  confusion at threshold {m.threshold:.4f}: TP {m.tp}  FN {m.fn}  FP {m.fp}  TN {m.tn}",
        "",
        f"  {'fold':>4} {'images':>7} {'threshold':>10} {'AUC':>6} {'accuracy':>9} {'sens':>6} {'spec':>6}",
    ]
    for k, fm in enumerate(result.fold_metrics):
        n = len(result.folds.test_indices(k))
        if fm is None:
            lines.append(f"  {k + 1:>4} {n:>7} {result.fold_thresholds[k]:>10.4f}   (one class only: no metrics)")
            continue
        lines.append(f"  {k + 1:>4} {n:>7} {result.fold_thresholds[k]:>10.4f} {fm.auc:>6.3f} {fm.accuracy:>9.3f} "
                     f"{fm.sensitivity:>6.3f} {fm.specificity:>6.3f}")
    for warning in m.warnings:
        lines.append(f"  warning: {warning}")
    lines.append(f"  time: {result.seconds:.0f} s")
    return "\n".join(lines)
