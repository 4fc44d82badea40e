"""`ctviewer demo [FOLDER]`: write the synthetic CT phantom dataset (real DICOM)."""

from __future__ import annotations

import argparse

from ctviewer.core.data.demo import demo_dataset_dir, make_demo_dataset


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="write the synthetic CT demo dataset (DICOM phantoms, two classes)")
    p.add_argument("folder", nargs="?", help="where to write it (default: the user cache, reused)")
    p.add_argument("--patients", type=int, default=8, help="patients per class (default 8)")
    p.add_argument("--slices", type=int, default=3, help="slices per patient (default 3)")
    p.add_argument("--size", type=int, default=256, help="image size in pixels (default 256)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.folder is None:
        folder = demo_dataset_dir()
    else:
        folder = make_demo_dataset(args.folder, args.patients, args.slices, args.size, args.seed)
    print(folder)
    return 0
