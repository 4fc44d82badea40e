"""``ctviewer doctor DATA [--model BUNDLE_OR_FILE]``: find the pitfalls before they waste a week."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ctviewer.core.errors import CTViewerError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check data, split, history and a model for common pitfalls",
        description=(
            "Check a dataset (and optionally a model: a ctviewer bundle folder or a plain Keras .keras/.h5 "
            "file) for pitfalls: class-sorted data and Keras' tail validation_split, one-class or tiny "
            "validation sets, patient and duplicate leaks, class imbalance, a model that predicts one class, "
            "BatchNorm/Dropout behaving differently in training and inference mode, unstable predictions, "
            "perfect validation from the first epochs, unnormalised input, and a histogram baseline that "
            "matches the model. Findings are not failures: the exit code is 0 whenever the checks ran."
        ),
    )
    parser.add_argument("data", metavar="DATA", help="dataset folder (class subfolders) or labels.csv")
    parser.add_argument("--model", metavar="BUNDLE_OR_FILE", default=None,
                        help="a ctviewer bundle folder, or a plain Keras model file (.keras, .h5)")
    parser.add_argument("--positive", metavar="CLS", default=None, help="name of the positive class")
    parser.add_argument("--history", metavar="HISTORY.json", default=None,
                        help="a Keras history (JSON dict of per-epoch lists, e.g. json.dump(h.history, f))")
    parser.add_argument("--split", metavar="SPLIT.json", default=None,
                        help="a ctviewer split record (split.json of a bundle) to check for leaks")
    parser.add_argument("--validation-split", type=float, default=None, metavar="F",
                        help="the model was trained with Keras' model.fit(validation_split=F) on DATA's images in "
                             "folder order (as in the original question): check that split")
    parser.add_argument("--predictions", metavar="PREDICTIONS.csv", default=None,
                        help="a per-image prediction report (ctviewer predict --csv / cv) to check for collapse "
                             "and against the histogram baseline")
    parser.add_argument("--input-scale", choices=("auto", "unit", "hu", "raw"), default="auto",
                        help="how to feed a plain model: auto (detect from its layers/BatchNorm statistics), "
                             "unit ([0,1] wide window), hu (raw Hounsfield units), raw (stored values, 0-4095)")
    parser.add_argument("--max-images", type=int, default=None, metavar="N",
                        help="images the model checks use (spread over the data; default 128)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the histogram baseline")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {code, severity, message, evidence, fix}")
    parser.set_defaults(func=run)


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CTViewerError(f"{path}: no such {what} file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CTViewerError(f"{path}: cannot be read as a {what} JSON file ({exc})") from None


def _load_history(path: str) -> dict[str, list[float]]:
    from ctviewer.core.doctor.data_checks import history_dict

    raw = _read_json(path, "history")
    raw = raw.get("history", raw) if isinstance(raw, dict) else raw
    try:
        return history_dict(raw)
    except TypeError:
        raise CTViewerError(f"{path}: not a Keras history (expected an object of per-epoch lists)") from None


def _load_split(path: str) -> Any:
    from ctviewer.core.data.splits import Folds, Split

    raw = _read_json(path, "split")
    try:
        is_folds = "fold" in raw["items"][0]
        return Folds.from_json_dict(raw) if is_folds else Split.from_json_dict(raw)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        raise CTViewerError(f"{path}: not a ctviewer split record (expected items with path, patient, role)") from None


def run(args: argparse.Namespace) -> int:
    from ctviewer.core.data.dataset import discover
    from ctviewer.core.doctor import findings_to_json, format_finding, run_checks
    from ctviewer.core.events import Message

    if args.max_images is not None and args.max_images < 2:
        raise CTViewerError(f"--max-images must be at least 2 (got {args.max_images})")
    if args.validation_split is not None:
        if args.split:
            raise CTViewerError("give --split or --validation-split, not both")
        if not 0.0 < args.validation_split < 1.0:
            raise CTViewerError(f"--validation-split must be between 0 and 1 (got {args.validation_split})")
    history = _load_history(args.history) if args.history else None
    split = _load_split(args.split) if args.split else None
    predictions = None
    if args.predictions:
        from ctviewer.core.metrics.report import read_predictions_csv

        predictions = read_predictions_csv(args.predictions, positive=args.positive)
    dataset = discover(args.data, positive=args.positive)
    if not len(dataset):
        raise CTViewerError(f"{args.data}: no readable images ({len(dataset.report.skipped)} skipped)")
    if args.validation_split is not None:
        from ctviewer.core.data.splits import keras_tail_split

        split = keras_tail_split(dataset, args.validation_split)

    def on_event(event: Any) -> None:
        if isinstance(event, Message) and not args.json:
            print(f"  ... {event.text}", file=sys.stderr, flush=True)

    options: dict[str, Any] = {"input_scale": args.input_scale, "baseline": not args.no_baseline}
    if args.max_images is not None:
        options["max_images"] = args.max_images
    findings = run_checks(dataset, split=split, history=history, model=args.model, predictions=predictions,
                          on_event=on_event, **options)
    if args.json:
        print(json.dumps(findings_to_json(findings), indent=2, ensure_ascii=False, allow_nan=False))
        return 0
    counts = {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "info")}
    subject = f"{args.data}" + (f" with model {args.model}" if args.model else "")
    summary = ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items() if n) or "no findings"
    print(f"ctviewer doctor: {len(dataset)} images, classes {', '.join(dataset.classes)} "
          f"(positive: {dataset.positive}); {subject}")
    print(f"{summary}\n")
    for finding in findings:
        print(format_finding(finding))
        print()
    if not findings:
        print("Nothing found. (The doctor checks common pitfalls; it cannot prove a model right.)")
    return 0
