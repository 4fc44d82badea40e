"""``ctviewer gradcam BUNDLE DATA --out DIR``: where the model looked, one PNG per image."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ctviewer.cli._data import add_cache_argument
from ctviewer.cli._progress import ProgressBars, add_progress_flag
from ctviewer.core.errors import CTViewerError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gradcam",
        help="write Grad-CAM heat maps of a saved model over images as PNG files",
        description="For every image of DATA, write DIR/<name>_gradcam.png: the image as the model saw it "
                    "(its window, size and padding) with the Grad-CAM heat map of the positive class on top, "
                    "and print the image's P(positive). The same maps as the desktop app's overlay.",
    )
    parser.add_argument("bundle", metavar="BUNDLE", help="model bundle folder (from ctviewer train)")
    parser.add_argument("data", metavar="DATA", nargs="+", help="dataset folder, labels.csv, or image files")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG files (created)")
    parser.add_argument("--opacity", type=float, default=0.6, metavar="A",
                        help="weight of the heat colours at the hottest point, 0-1 (default 0.6)")
    add_cache_argument(parser)
    parser.add_argument("--level", choices=("image", "series", "patient"), default="image",
                        help="series/patient: one map per unit, on the slice that drove its call (its most "
                             "positive slice; every frame of a multi-frame file is a slice)")
    parser.add_argument("--rule", default="mean", metavar="RULE", help="series/patient aggregation (default mean)")
    parser.add_argument("--max-slices", type=int, metavar="N", help="series/patient: sample N slices per series")
    add_progress_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image as PILImage

    from ctviewer.cli._data import cache_from_args, scan_images
    from ctviewer.core.events import Progress
    from ctviewer.core.explain.gradcam import grad_cam, overlay_rgb
    from ctviewer.core.model.bundle import load_bundle
    from ctviewer.core.model.inference import predict

    if not 0.0 <= args.opacity <= 1.0:
        raise CTViewerError(f"--opacity must be between 0 and 1 (got {args.opacity})")
    from ctviewer.cli._outputs import check_output_folder

    out = check_output_folder(args.out, "--out")
    bundle = load_bundle(args.bundle)  # fail fast on a bad bundle, before scanning
    cache = cache_from_args(args)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CTViewerError(f"--out {out}: cannot be created ({exc.strerror or exc})") from None
    written: list[tuple[str, float, Path, bool]] = []
    if args.level != "image":
        return _run_units(args, bundle, cache, out)
    with ProgressBars(disable=args.quiet) as bars:
        dataset = scan_images(args.data, cache, bars)
        pred = predict(bundle, dataset, cache=cache, on_event=bars)
        names: set[str] = set()
        for done, (path, prob) in enumerate(zip(pred.paths, pred.probs, strict=True), start=1):
            seen = np.asarray(cache.array(path, bundle.preprocessing), dtype=np.float32)
            heat = grad_cam(bundle, seen)
            target = out / _unique_name(Path(path).stem, names)
            PILImage.fromarray(overlay_rgb(seen, heat, args.opacity)).save(target)
            written.append((path, float(prob), target, bool(np.any(heat > 0))))
            bars(Progress(done, len(dataset), "Grad-CAM"))
    for path, prob, target, has_heat in written:
        note = "" if has_heat else "  (empty: no region raises the positive score)"
        print(f"{prob:.4f}  {path} -> {target}{note}")
    print(f"wrote {len(written)} Grad-CAM images ({bundle.card.positive} = positive class) to {out}")
    return 0


def _run_units(args: argparse.Namespace, bundle: Any, cache: Any, out: Path) -> int:
    """One Grad-CAM per series/patient, on the slice that drove its call."""
    import re

    import numpy as np
    from PIL import Image as PILImage

    from ctviewer.cli._data import scan_images
    from ctviewer.cli.predict import check_level_arguments
    from ctviewer.core.explain.gradcam import grad_cam, overlay_rgb
    from ctviewer.core.metrics.aggregate import aggregate
    from ctviewer.core.metrics.unit_report import image_ref
    from ctviewer.core.model.volumes import level_threshold, predict_slices

    check_level_arguments(args)
    with ProgressBars(disable=args.quiet) as bars:
        dataset = scan_images(args.data, cache, bars)
        pred = predict_slices(bundle, dataset, args.max_slices, cache=cache, on_event=bars)
    threshold, _ = level_threshold(bundle, args.level, args.rule)
    units = aggregate(pred, args.level, args.rule, threshold=pred.threshold if threshold is None else threshold)
    names: set[str] = set()
    calls = units.predictions.pred_names()
    for u, unit in enumerate(units.predictions.paths):
        row = int(units.driving[u])
        frame = None if pred.frames is None or pred.frames[row] < 0 else int(pred.frames[row])
        seen = np.asarray(cache.array(pred.paths[row], bundle.preprocessing, frame), dtype=np.float32)
        target = out / _unique_name(re.sub(r"[^A-Za-z0-9._-]+", "_", unit)[:80], names)
        PILImage.fromarray(overlay_rgb(seen, grad_cam(bundle, seen), args.opacity)).save(target)
        print(f"{units.predictions.probs[u]:.4f}  {args.level} {unit} ({units.members[u].size} slices, {calls[u]}; "
              f"drove the call: {image_ref(pred, row)} at {pred.probs[row]:.4f}) -> {target}")
    print(f"wrote {len(units)} Grad-CAM images, one per {args.level}, to {out}")
    return 0


def _unique_name(stem: str, taken: set[str]) -> str:
    """``<stem>_gradcam.png``, numbered when two images share a file name (IM_0001 in every series)."""
    name, n = f"{stem}_gradcam.png", 1
    while name in taken:
        n += 1
        name = f"{stem}_{n}_gradcam.png"
    taken.add(name)
    return name
