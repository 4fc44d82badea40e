"""``ctviewer export BUNDLE --format savedmodel|onnx|tflite --out DIR``: a model for use outside ctviewer."""

from __future__ import annotations

import argparse
from typing import Any

from ctviewer.cli._progress import ProgressBars, add_progress_flag, quiet_tensorflow_logs

FORMATS = ("savedmodel", "onnx", "tflite")  # ctviewer.core.model.export.FORMATS, without importing it at start-up


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a model bundle as a SavedModel, ONNX or TFLite model with its preprocessing contract",
        description="Write DIR with the model as one graph (input 'image': float32 N x size x size x 1 in the "
                    "window's [0, 1]; output 'probability': N, the positive class; an ensemble averages its "
                    "members, the recipe's test-time augmentation is inside), preprocessing.json (how a file "
                    "becomes the input), the model card and predict_example.py (numpy, pydicom/Pillow and the "
                    "runtime only). The artifact is checked with its own runtime against ctviewer's "
                    "probabilities before anything is written. ONNX needs: pip install \"ctviewer-cnn[export]\".",
    )
    parser.add_argument("bundle", metavar="BUNDLE", help="model bundle folder (from ctviewer train or cv)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="savedmodel, onnx or tflite")
    parser.add_argument("--out", required=True, metavar="DIR", help="export folder (new or empty)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier ctviewer export in DIR (any other content is always refused)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="put test-time augmentation in the graph (default: as the model's recipe)")
    add_progress_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctviewer.cli._outputs import check_output_folder
    from ctviewer.core.model.bundle import load_bundle
    from ctviewer.core.model.export import check_export_target, export_bundle

    # Before loading and converting (a minute for ONNX): an export that cannot be written is lost work.
    out = check_output_folder(args.out, "--out")
    check_export_target(out, overwrite=args.overwrite)
    quiet_tensorflow_logs()
    bundle = load_bundle(args.bundle)
    with ProgressBars(disable=args.quiet) as bars:
        result = export_bundle(bundle, args.format, out, tta=args.tta, on_event=bars)
    print(f"exported {bundle.folder} (id {bundle.model_id}) as {result.format} to {result.folder}: "
          f"{result.artifact.name} {result.size_bytes / 1e6:.2f} MB, test-time augmentation "
          f"{'in the graph' if result.tta else 'off'}; matches ctviewer within {result.max_abs_difference:.1e} "
          f"on {result.check_images} check images")
    print(f"  try it: python {result.folder / 'predict_example.py'} IMAGE")
    return 0
