"""``ctviewer cv DATA --folds K --out DIR``: patient-grouped k-fold cross-validation.

Writes ``DIR/predictions.csv`` (one out-of-fold row per image, with its fold),
``DIR/patients.csv`` and ``DIR/series.csv`` (one row per patient / series: the images' out-of-fold
probabilities aggregated by ``--rule``, called at a threshold chosen on the other folds' units),
``DIR/metrics.json`` (pooled image metrics with intervals, the patient bootstrap beside them,
``levels.series`` and ``levels.patient``, per-fold thresholds and metrics) and
``DIR/folds.json`` (which image was tested in which fold). ``--keep-models`` also writes
each fold's bundle under ``DIR/models/`` and their averaging ensemble as ``DIR/ensemble``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ctviewer.cli._progress import InterruptToStop, ProgressBars, add_progress_flag, quiet_tensorflow_logs
from ctviewer.cli.train import (
    add_data_arguments,
    add_recipe_arguments,
    check_weights_available,
    config_from_args,
    load_dataset,
    metrics_line,
)
from ctviewer.core.errors import CTViewerError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cv",
        help="cross-validate a recipe with patient-grouped folds",
        description="Patient-grouped, stratified K-fold cross-validation: every image is predicted by a "
                    "model that never saw its patient. Writes DIR/predictions.csv and DIR/metrics.json.",
    )
    add_data_arguments(parser)
    parser.add_argument("--folds", type=int, metavar="K",
                        help="number of folds (default 5, fewer when a class has fewer patients)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_recipe_arguments(parser)
    parser.add_argument("--rule", default="mean", metavar="RULE",
                        help="series/patient aggregation of the image probabilities: mean (default), max, top<k>")
    parser.add_argument("--keep-models", action="store_true",
                        help="save each fold's model and their ensemble (DIR/models/, DIR/ensemble)")
    add_progress_flag(parser)
    parser.set_defaults(func=run)


# Everything cv writes in DIR: one set, replaced whole (other files a user put in DIR are kept).
CV_OUTPUTS = ("predictions.csv", "metrics.json", "folds.json", "models", "ensemble")


def run(args: argparse.Namespace) -> int:
    from ctviewer.cli._outputs import check_output_folder
    from ctviewer.cli.predict import check_level_arguments
    from ctviewer.core.folders import output_set
    from ctviewer.core.metrics.report import write_metrics_json, write_predictions_csv, write_text_atomic
    from ctviewer.core.metrics.unit_report import LEVEL_FILES, levels_json, write_units_csv
    from ctviewer.core.training.cv import cross_validate

    if args.folds is not None and args.folds < 2:
        raise CTViewerError(f"--folds must be at least 2 (got {args.folds})")
    check_level_arguments(args)
    quiet_tensorflow_logs()
    config = config_from_args(args)
    out = Path(args.out)
    check_output_folder(out, "--out")  # before the folds are trained, not after
    check_weights_available(config)
    with ProgressBars(disable=args.quiet, epochs=config.epochs) as bars, InterruptToStop(bars) as stop:
        dataset, cache = load_dataset(args, bars)
        result = cross_validate(dataset, config, folds=args.folds, on_event=bars, should_stop=stop, cache=cache,
                                keep_models=args.keep_models)
    with output_set(out, own=(*CV_OUTPUTS, *LEVEL_FILES.values())) as staged:
        write_predictions_csv(result.predictions, staged / "predictions.csv")
        levels, units = levels_json(result.predictions, args.rule, config.threshold_rule, config.threshold_target)
        for level, name in LEVEL_FILES.items():
            write_units_csv(units[level], staged / name)
        write_metrics_json(result.metrics, staged / "metrics.json",
                           extra={**result.to_json_extra(), "levels": levels})
        write_text_atomic(staged / "folds.json", json.dumps(result.folds.to_json_dict(), indent=1) + "\n")
        if args.keep_models:
            from ctviewer.core.metrics.aggregate import level_thresholds
            from ctviewer.core.model.bundle import save_bundle

            for k, member in enumerate(result.models):
                save_bundle(member, staged / "models" / f"fold_{k + 1}")
            oof_levels = level_thresholds(result.predictions, args.rule, config.threshold_rule,
                                          config.threshold_target,
                                          chosen_on=f"out-of-fold predictions of {result.folds.k}-fold cross-validation")
            save_bundle(result.ensemble, staged / "ensemble", metrics=result.metrics,
                        extra={"cross_validation": result.to_json_extra(), "levels": oof_levels})
    print(format_cv_summary(result))
    print(format_levels_summary(levels))
    print(f"  wrote {out / 'predictions.csv'}, {out / 'patients.csv'}, {out / 'series.csv'}, "
          f"{out / 'metrics.json'}, {out / 'folds.json'}"
          + (f", {out / 'ensemble'}" if args.keep_models else ""))
    return 0


def format_cv_summary(result: Any, title: str = "") -> str:
    """Expected performance (pooled out-of-fold), per-fold table, threshold-rule check, notes, as plain text."""
    m = result.metrics
    ds = result.dataset
    done = result.completed_folds
    head = title or f"{result.folds.k}-fold patient-grouped cross-validation of {result.config.model}"
    lines = [
        (f"{head} on {ds.source}: {ds.n_images} images, {ds.n_patients} patients, "
         f"positive class {ds.positive}"),
        (f"  folds:      {result.folds.k} patient-grouped, stratified (seed {result.folds.seed})"
         + (f"; cancelled: {done} of {result.folds.k} completed" if result.cancelled else "")),
        (f"  threshold:  {result.threshold:.4f} ({result.config.threshold_rule}, chosen on the pooled "
         f"out-of-fold predictions of {m.n} images)"),
        "  expected on new images from the same source (pooled out-of-fold, 95% intervals):",
        f"    {metrics_line(m, predictive_values=True)}",
        f"    pooled out-of-fold: TP {m.tp}  FN {m.fn}  FP {m.fp}  TN {m.tn} at threshold {m.threshold:.4f}",
        "",
        f"  {'fold':>4} {'images':>7} {'own thr':>8} {'AUC':>6} {'accuracy':>9} {'sens':>6} {'spec':>6}"
        "   (at the ensemble threshold)",
    ]
    for k, fm in enumerate(result.fold_metrics):
        n = len(result.folds.test_indices(k))
        if fm is None:
            lines.append(f"  {k + 1:>4} {n:>7} {result.fold_thresholds[k]:>8.4f}   (one class only: no metrics)")
            continue
        lines.append(f"  {k + 1:>4} {n:>7} {result.fold_thresholds[k]:>8.4f} {fm.auc:>6.3f} {fm.accuracy:>9.3f} "
                     f"{fm.sensitivity:>6.3f} {fm.specificity:>6.3f}")
    if result.rule_checks:
        lines.append("  threshold rules, each image called at a threshold chosen without its fold:")
        for c in result.rule_checks:
            lines.append(f"    {c.rule:<32} threshold {c.threshold:.4f}: accuracy {c.accuracy:.3f}, "
                         f"sensitivity {c.sensitivity:.3f}, specificity {c.specificity:.3f} (n={c.n})")
    for note in result.notes:
        lines.append(f"  note: {note}")
    for warning in m.warnings:
        lines.append(f"  warning: {warning}")
    lines.append(f"  time: {result.seconds:.0f} s")
    return "\n".join(lines)


def format_levels_summary(levels: dict[str, Any]) -> str:
    """One line per level: what it counts and its metrics with Wilson/DeLong intervals over units."""
    lines = []
    for level, payload in levels.items():
        if "error" in payload:
            lines.append(f"  {level} level: not available ({payload['error']})")
            continue

        lines.append(f"  {level} level ({payload['n']} {level} units, rule {payload['rule']}, threshold chosen on the "
                     f"other folds): " + ", ".join(_level_part(payload, n, lab) for n, lab in (
                         ("auc", "AUC"), ("accuracy", "accuracy"), ("sensitivity", "sensitivity"),
                         ("specificity", "specificity"))))
    return "\n".join(lines)


def _level_part(payload: dict[str, Any], name: str, label: str) -> str:
    value, ci = payload[name], payload[f"{name}_ci"]
    shown = "n/a" if value is None else f"{value:.3f}"
    return f"{label} {shown}" + ("" if ci[0] is None else f" [{ci[0]:.2f}-{ci[1]:.2f}]")
