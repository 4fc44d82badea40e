"""Data-loading speed: ctviewer's loader cold and cached against a plain pydicom loop.

Usage: python bench/loading.py [FOLDER] [--sizes 512 1024]
Prints slices/s for: a plain pydicom read + rescale loop; ctviewer cold (empty cache:
decode, hash, window, resize, write cache); ctviewer cached (second load: index + memmap).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import discover, load_stack
from ctviewer.core.data.imaging import Preprocessing

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "siim-ct-contrast"


def plain_pydicom(paths: list[Path]) -> float:
    import pydicom

    start = time.perf_counter()
    for p in paths:
        ds = pydicom.dcmread(p)
        _ = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return len(paths) / (time.perf_counter() - start)


def ctviewer_load(folder: Path, size: int, cache: Cache) -> float:
    start = time.perf_counter()
    ds = discover(folder, cache=cache)
    load_stack(ds, Preprocessing(window="wide", size=size), cache=cache)
    return len(ds) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", nargs="?", default=str(DEFAULT))
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    args = parser.parse_args()
    folder = Path(args.folder)
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() == ".dcm")
    if not paths:
        print(f"no DICOM files under {folder}")
        return 1
    print(f"{len(paths)} slices from {folder}")
    print(f"{'loader':<34}{'size':>6}{'slices/s':>12}{'x pydicom':>11}")
    base = plain_pydicom(paths)
    print(f"{'plain pydicom read + rescale':<34}{'-':>6}{base:>12.1f}{1.0:>11.2f}")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            cache = Cache(tmp)
            cold = ctviewer_load(folder, size, cache)
            warm = max(ctviewer_load(folder, size, cache) for _ in range(3))
            cache.close()
        print(f"{'ctviewer cold (decode+resize+cache)':<34}{size:>6}{cold:>12.1f}{cold / base:>11.2f}")
        print(f"{'ctviewer cached (memmap)':<34}{size:>6}{warm:>12.1f}{warm / base:>11.2f}")
        print(f"{'  cached / cold':<34}{size:>6}{warm / cold:>12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
