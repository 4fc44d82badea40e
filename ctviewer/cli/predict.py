"""``ctviewer predict BUNDLE DATA --csv OUT.csv``: one prediction row per image, labelled or not."""

from __future__ import annotations

import argparse
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
    add_progress_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctviewer.cli._data import cache_from_args, scan_images
    from ctviewer.core.metrics.report import write_predictions_csv
    from ctviewer.core.model.bundle import load_bundle
    from ctviewer.core.model.inference import predict

    if args.batch_size < 1:
        raise CTViewerError(f"--batch-size must be a positive number (got {args.batch_size})")
    bundle = load_bundle(args.bundle)  # fail fast on a bad bundle, before scanning
    cache = cache_from_args(args)
    with ProgressBars(disable=args.quiet) as bars:
        dataset = scan_images(args.data, cache, bars)
        pred = predict(bundle, dataset, tta=args.tta, batch_size=args.batch_size, cache=cache, on_event=bars)
    write_predictions_csv(pred, args.csv, pseudonymise_salt=args.pseudonymise)
    print(format_prediction_summary(pred, bundle, Path(args.csv)))
    return 0


def format_prediction_summary(pred: Any, bundle: Any, csv_path: Path) -> str:
    from ctviewer.cli.train import metrics_line

    called = int(pred.y_pred().sum())
    lines = [
        (f"predicted {len(pred)} images with {bundle.folder} ({bundle.card.model_name or 'model'}, "
         f"id {bundle.model_id}): {called} {pred.positive}, {len(pred) - called} {pred.negative} "
         f"at threshold {pred.threshold:.4f}"),
    ]
    labelled = int(pred.is_labelled.sum())
    if labelled:
        from ctviewer.core.metrics.evaluation import metrics_from_predictions

        try:
            metrics = metrics_from_predictions(pred)
        except ValueError as exc:
            lines.append(f"  metrics: not available ({exc})")
        else:
            lines.append(f"  {labelled} labelled images: {metrics_line(metrics)}")
            lines += [f"  warning: {w}" for w in metrics.warnings]
    lines.append(f"  wrote {csv_path}")
    return "\n".join(lines)
