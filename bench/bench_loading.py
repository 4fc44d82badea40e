"""Data loading: slices/s of ctviewer's loader, cold and cached, against a plain pydicom loop.

Reuses the lead's `bench/loading.py` (its plain pydicom loop and its ctviewer cold/cached
load through `dataset.discover` + `dataset.load_stack` with a fresh `Cache`). Adds, per
input size, a plain loop that does the same work as ctviewer's cold path (read, rescale,
wide window, Pillow bilinear resize) without any cache, so the cold/cached ratios have a
like-for-like reference at 512 and at 1024 (upsampled) input.

Run alone: ``python bench/run_all.py --only loading [--quick]``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import bench_common as bc
import loading  # bench/loading.py (the lead's)
import numpy as np

SIZES = (512, 1024)


def plain_pydicom_resized(paths: list[Path], size: int) -> float:
    """slices/s of read + rescale + wide window + Pillow bilinear resize, no cache."""
    import pydicom
    from PIL import Image as PILImage

    start = time.perf_counter()
    for p in paths:
        ds = pydicom.dcmread(p)
        hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        x = np.clip((hu + 1000.0) / 2000.0, 0.0, 1.0).astype(np.float32)
        if x.shape != (size, size):
            x = np.asarray(PILImage.fromarray(x, mode="F").resize((size, size), PILImage.Resampling.BILINEAR))
    return len(paths) / (time.perf_counter() - start)


def run(quick: bool = False, data: Path | None = None) -> None:
    """Print the loading table (quick: one cached repeat instead of three)."""
    from ctviewer.core.data.cache import RACY_NS, Cache

    folder = Path(data or bc.DEFAULT_DATA)
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() == ".dcm")
    if not paths:
        raise FileNotFoundError(f"no DICOM files under {folder}")
    repeats = 1 if quick else 3

    def rate(fn, *args) -> float:
        wall, _cpu, n = loading._timed(fn, *args)
        return n / wall

    plain = max(rate(loading.plain_pydicom, paths) for _ in range(2))
    rows = [["plain pydicom: + wide window, stacked", "native", f"{plain:.1f}", "-"]]
    for size in SIZES:
        reference = max(plain_pydicom_resized(paths, size) for _ in range(2))
        with tempfile.TemporaryDirectory(prefix="ctviewer-bench-cache-") as tmp:
            cache = Cache(tmp)
            cold = rate(loading.ctviewer_load, folder, size, cache)
            # A second load comes later than this: arrays read within RACY_NS of being written are hashed
            # again (a same-tick change would keep their mtime), which is the "verify always" row of loading.py.
            time.sleep(RACY_NS / 1e9 + 0.2)
            cached = max(rate(loading.ctviewer_load, folder, size, cache) for _ in range(repeats))
            cache.close()
        rows += [
            ["plain pydicom: + window + resize", size, f"{reference:.1f}", "1.00"],
            ["ctviewer cold (empty cache)", size, f"{cold:.1f}", f"{cold / reference:.2f}"],
            ["ctviewer cached (2nd load)", size, f"{cached:.1f}", f"{cached / reference:.2f}"],
        ]
    bc.print_table(
        f"Data loading, {len(paths)} SIIM DICOM slices (512x512 stored)",
        ["loader", "input", "slices/s", "x plain (same size)"], rows,
        notes=[
            "ctviewer = dataset.discover (header + content hash per file) + load_stack, via bench/loading.py",
            ("cold = a fresh ctviewer cache folder (decode, window, resize, write .npy); the DICOM files "
            "themselves are in the OS page cache after the first plain pass (no drop_caches on a shared machine)"),
            (f"cached = best of {repeats} repeat load(s) from the same cache (index lookup + one read per .npy), "
             "from RACY_NS after the cold load wrote it (arrays hashed again only when changed)"),
            "plain rows: best of 2 passes",
        ],
    )
