"""`ctviewer scan PATH`: what a folder holds, and what could not be read and why."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from ctviewer.core.data.dataset import Dataset, discover
from ctviewer.core.errors import DatasetError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan", help="list classes, patients, sizes, duplicates and skipped files of a dataset")
    p.add_argument("path", nargs="+", help="dataset folder, labels.csv, or image files/folders")
    p.add_argument("--positive", help="name of the positive class")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def summarise(ds: Dataset) -> dict:
    """The scan as a plain JSON-ready dict."""
    sizes = Counter(f"{it.shape[1]}x{it.shape[0]}" for it in ds.items)
    formats = Counter(it.format for it in ds.items)
    return {
        "source": ds.source,
        "images": len(ds.items),
        "classes": ds.class_counts(),
        "positive": ds.positive,
        "unlabelled": sum(1 for it in ds.items if it.label is None),
        "patients": len({it.patient for it in ds.items}),
        "patient_id_sources": dict(Counter(it.patient_source for it in ds.items)),
        "series": len({(it.patient, it.series) for it in ds.items}),
        "sizes": dict(sizes),
        "size_summary": size_summary(sizes),
        "formats": dict(formats),
        "hounsfield": sum(1 for it in ds.items if it.is_hu),
        "duplicates": ds.report.duplicates,
        "skipped": [{"path": s.path, "reason": s.reason} for s in ds.report.skipped],
        "notes": ds.report.notes,
    }


# Up to this many distinct sizes are listed one by one; more are summarised.
_SIZES_LISTED = 6


def size_summary(sizes: Counter) -> str:
    """Image sizes in one short line: each size when few, else the range and the most common ones."""
    if len(sizes) <= _SIZES_LISTED:
        return ", ".join(f"{k} ({v})" for k, v in sizes.most_common())

    def pixels(size: str) -> int:
        w, h = (int(v) for v in size.split("x"))
        return w * h

    ordered = sorted(sizes, key=pixels)
    common = ", ".join(f"{k} ({v})" for k, v in sizes.most_common(3))
    return f"{len(sizes)} different sizes, from {ordered[0]} to {ordered[-1]}; most common: {common}"


def run(args: argparse.Namespace) -> int:
    source = args.path[0] if len(args.path) == 1 else args.path
    ds = discover(source, positive=args.positive)
    summary = summarise(ds)
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        _print_table(summary)
    if not ds.items:
        raise DatasetError(f"{ds.source}: no readable images ({len(ds.report.skipped)} files skipped)")
    return 0


def _print_table(s: dict) -> None:
    print(f"{s['source']}: {s['images']} images, {s['patients']} patients, {s['series']} series")
    for name, n in s["classes"].items():
        flag = "  (positive)" if name == s["positive"] else ""
        print(f"  class {name:<20} {n:>6}{flag}")
    if s["unlabelled"]:
        print(f"  unlabelled{'':<16} {s['unlabelled']:>6}")
    print("  sizes:   " + s["size_summary"])
    print("  formats: " + ", ".join(f"{k} ({v})" for k, v in s["formats"].items()))
    print(f"  in Hounsfield units: {s['hounsfield']}")
    for group in s["duplicates"]:
        print("  identical images: " + " = ".join(group))
    for note in s["notes"]:
        print(f"  note: {note}")
    if s["skipped"]:
        print(f"  skipped {len(s['skipped'])} files:")
        for entry in s["skipped"]:
            print(f"    {entry['path']}: {entry['reason']}")
    else:
        print("  skipped: none")
