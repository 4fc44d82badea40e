"""``ctviewer predict BUNDLE DATA --csv OUT.csv [--level image|series|patient]``: one row per unit.

At image level a row per file (the middle frame of a multi-frame file). At series or patient
level every slice is predicted (every frame of a multi-frame file; ``--max-slices`` samples a
series evenly) and aggregated into one row per series or patient (core.metrics.aggregate).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ctviewer.cli._data import add_cache_argument
from ctviewer.cli._progress import ProgressBars, add_progress_flag
from ctviewer.core.errors import CTViewerError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict images with a saved model bundle and write a CSV",
        description="Predict every image of DATA (class subfolders, labels.csv, an unlabelled folder or files) "
                    "with the model bundle BUNDLE, using its preprocessing and threshold. If the images are "
                    "labelled, the metrics are printed too.",
    )
    parser.add_argument("bundle", metavar="BUNDLE", help="model bundle folder (from ctviewer train)")
    parser.add_argument("data", metavar="DATA", nargs="+", help="dataset folder, labels.csv, or image files")
    parser.add_argument("--csv", required=True, metavar="OUT.csv", help="prediction CSV to write")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="test-time augmentation: average image and mirror (default: as the model's recipe)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="B", help="images per forward pass")
    parser.add_argument("--pseudonymise", metavar="SALT",
                        help="replace patient/study/series ids in the CSV by salted pseudonyms")
    add_cache_argument(parser)
    add_level_arguments(parser)
    parser.add_argument("--max-slices", type=int, metavar="N",
                        help="series/patient level: predict at most N evenly spaced slices per series "
                             "(default: every slice)")
    add_progress_flag(parser)
    parser.set_defaults(func=run)


def add_level_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--level", choices=("image", "series", "patient"), default="image",
                        help="one row per image (default), per series or per patient")
    parser.add_argument("--rule", default="mean", metavar="RULE",
                        help="how a series/patient probability is made from its images: mean (default), max, "
                             "or top<k> (mean of the k highest, e.g. top3)")


def check_level_arguments(args: argparse.Namespace) -> None:
    from ctviewer.core.metrics.aggregate import parse_rule

    try:
        parse_rule(args.rule)
    except ValueError as exc:
        raise CTViewerError(f"--rule: {exc}") from None
    if getattr(args, "max_slices", None) is not None and args.max_slices < 1:
        raise CTViewerError(f"--max-slices must be a positive number (got {args.max_slices})")


def run(args: argparse.Namespace) -> int:
    from ctviewer.cli._data import cache_from_args, scan_images
    from ctviewer.cli._outputs import check_output_file
    from ctviewer.core.metrics.report import write_predictions_csv
    from ctviewer.core.model.bundle import load_bundle
    from ctviewer.core.model.inference import predict

    if args.batch_size < 1:
        raise CTViewerError(f"--batch-size must be a positive number (got {args.batch_size})")
    check_level_arguments(args)
    check_output_file(args.csv, "--csv")  # before any work: a result that cannot be written is lost
    bundle = load_bundle(args.bundle)  # fail fast on a bad bundle, before scanning
    cache = cache_from_args(args)
    with ProgressBars(disable=args.quiet) as bars:
        dataset = scan_images(args.data, cache, bars)
        if args.level == "image":
            pred = predict(bundle, dataset, tta=args.tta, batch_size=args.batch_size, cache=cache, on_event=bars)
        else:
            from ctviewer.core.model.volumes import predict_slices

            pred = predict_slices(bundle, dataset, args.max_slices, tta=args.tta, batch_size=args.batch_size,
                                  cache=cache, on_event=bars)
    if args.level == "image":
        write_predictions_csv(pred, args.csv, pseudonymise_salt=args.pseudonymise)
        print(format_prediction_summary(pred, bundle, Path(args.csv)))
        return 0
    print(_write_units(pred, bundle, args))
    return 0


def _write_units(pred: Any, bundle: Any, args: argparse.Namespace) -> str:
    """Aggregate slice predictions to the requested level, write the unit CSV, return the summary."""
    from ctviewer.core.metrics.aggregate import aggregate
    from ctviewer.core.metrics.unit_report import level_metrics, write_units_csv
    from ctviewer.core.model.volumes import level_threshold

    threshold, source = level_threshold(bundle, args.level, args.rule)
    units = aggregate(pred, args.level, args.rule, threshold=threshold if threshold is not None else pred.threshold)
    if threshold is None:
        units.notes.insert(0, f"{source}: {args.level}s are called at the image threshold {pred.threshold:.4f}")
    else:
        units.notes.insert(0, f"{args.level} threshold {threshold:.4f} {source}")
    write_units_csv(units, args.csv, pseudonymise_salt=args.pseudonymise)
    up = units.predictions
    called = int(up.y_pred().sum())
    from ctviewer.core.metrics.evaluation import plural

    lines = [f"predicted {len(units)} {plural(args.level)} from {len(pred)} slices with {bundle.folder} "
             f"(rule {args.rule}): {called} {up.positive}, {len(units) - called} {up.negative}"]
    lines += [f"  note: {note}" for note in units.notes]
    if up.is_labelled.any():
        lines += _metrics_lines(lambda: level_metrics(units), lambda m: f"{m.n} labelled {plural(args.level)}",
                                said=units.notes)
    lines.append(f"  wrote {args.csv}")
    return "\n".join(lines)


def format_prediction_summary(pred: Any, bundle: Any, csv_path: Path) -> str:
    called = int(pred.y_pred().sum())
    lines = [
        (f"predicted {len(pred)} images with {bundle.folder} ({bundle.card.model_name or 'model'}, "
         f"id {bundle.model_id}): {called} {pred.positive}, {len(pred) - called} {pred.negative} "
         f"at threshold {pred.threshold:.4f}"),
    ]
    labelled = int(pred.is_labelled.sum())
    if labelled:
        from ctviewer.core.metrics.evaluation import metrics_from_predictions

        lines += _metrics_lines(lambda: metrics_from_predictions(pred), lambda _m: f"{labelled} labelled images")
    lines += _provenance_lines(pred, bundle)
    lines.append(f"  wrote {csv_path}")
    return "\n".join(lines)


def _metrics_lines(compute: Callable[[], Any], counted: Callable[[Any], str], said: Sequence[str] = ()) -> list[str]:
    """The metrics line (``counted(metrics)``: what they are on) and their warnings not ``said`` already;
    one line saying why when ``compute()`` cannot make them (one class only...)."""
    from ctviewer.cli.train import metrics_line

    try:
        metrics = compute()
    except ValueError as exc:
        return [f"  metrics: not available ({exc})"]
    return [f"  {counted(metrics)}: {metrics_line(metrics)}", *(f"  warning: {w}" for w in metrics.warnings
                                                              if w not in said)]


def _provenance_lines(pred: Any, bundle: Any) -> list[str]:
    """Training images marked, the card's expected performance, and where ensemble members disagree."""
    lines = []
    seen = pred.n_in_training
    if seen:
        lines.append(f"  note: {seen} of {len(pred)} images are this model's own training images (training_image=1 "
                     "in the CSV): their probabilities, and metrics on them, are optimistic")
    from ctviewer.core.training.oof import expected_line

    expected = expected_line(bundle.card.raw)
    if expected:
        lines.append(f"  expected on new images from the same source: {expected}")
    if pred.uncertainty is not None and len(pred):
        worst = int(max(range(len(pred)), key=lambda i: pred.uncertainty[i]))
        lines.append(f"  uncertainty (spread of the ensemble members): median {float(_median(pred.uncertainty)):.3f}, "
                     f"largest {pred.uncertainty[worst]:.3f} ({pred.paths[worst]})")
    return lines


def _median(values: Any) -> float:
    import numpy as np

    return float(np.median(values))
