"""Data-loading speed: ctviewer's loader cold and cached against a plain pydicom loop doing the same work.

Usage: python bench/loading.py [FOLDER] [--sizes 512 1024] [--repeats 2]

For each size, in one run and on the same files:
  plain     pydicom read + pixel_array + rescale to HU + wide window + Pillow bilinear resize to
            the size (no resize where the slice already has it) into one (N, size, size) stack, as
            `load_stack` returns it; no cache: ctviewer's cold path without its hashing, checks and
            cache writes;
  cold      ctviewer `discover` + `load_stack` into a fresh, empty cache folder (header, hashes,
            one decode, window, resize, write .npy and index), worker processes included;
  cached    the same load again through a new `Cache` on that folder, RACY_NS after the cold load
            wrote it (arrays written less than that before a read are hashed again; see cache.py);
  cached/always  the same with ``verify_arrays="always"`` (every array hashed on every read).
Prints slices/s (wall), CPU ms per slice (this process plus ctviewer's worker processes and
their fork server) and the ratios to plain. Wall time is distorted when other jobs share the
CPUs: read the CPU column and `uptime` next to it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctviewer.core.data import parallel
from ctviewer.core.data.cache import RACY_NS, Cache
from ctviewer.core.data.dataset import discover, load_stack
from ctviewer.core.data.imaging import Preprocessing

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "siim-ct-contrast"


def _cpu_s() -> float:
    """CPU seconds of this process and of the loader's worker processes (Linux /proc; else this process)."""
    total = time.process_time()
    pids = list(getattr(parallel._pool, "_processes", None) or {})
    try:
        from multiprocessing import forkserver

        pids.append(forkserver._forkserver._forkserver_pid)
    except (ImportError, AttributeError):
        pass
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError, TypeError):
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return total


def _timed(fn, *args) -> tuple[float, float, int]:
    """(wall s, CPU s, n) of ``fn(*args)``, which returns how many slices it loaded."""
    wall, cpu = time.perf_counter(), _cpu_s()
    n = fn(*args)
    return time.perf_counter() - wall, _cpu_s() - cpu, n


def plain_pydicom(paths: list[Path], size: int = 512) -> int:
    """The same work as ctviewer's cold path, in a plain loop: read, rescale, wide window, resize, and keep
    the images in one (N, size, size) stack, as `load_stack` returns them."""
    import pydicom
    from PIL import Image as PILImage

    out = np.empty((len(paths), size, size), dtype=np.float32)
    for i, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        x = np.clip((hu - np.float32(-1000.0)) / np.float32(2000.0), 0.0, 1.0)  # "wide": centre 0, width 2000
        if x.shape != (size, size):
            x = np.asarray(PILImage.fromarray(x, mode="F").resize((size, size), PILImage.Resampling.BILINEAR))
        out[i] = x
    return len(paths)


def ctviewer_load(folder: Path, size: int, cache: Cache) -> int:
    ds = discover(folder, cache=cache)
    load_stack(ds, Preprocessing(window="wide", size=size), cache=cache)
    return len(ds)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", nargs="?", default=str(DEFAULT))
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--repeats", type=int, default=2, help="cold and plain passes per size (best is shown)")
    args = parser.parse_args()
    folder = Path(args.folder)
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() == ".dcm")
    if not paths:
        print(f"no DICOM files under {folder}")
        return 1
    print(f"{len(paths)} slices from {folder}; {parallel.worker_count()} worker process(es) besides this one "
          f"from {parallel.MIN_FILES} files; load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    header = f"{'loader':<26}{'size':>6}{'slices/s':>10}{'x plain':>9}{'CPU ms/slice':>14}{'x plain CPU':>13}"
    print(header)
    for size in args.sizes:
        plain, cold, first = [], [], None
        for _ in range(max(args.repeats, 1)):
            plain.append(_timed(plain_pydicom, paths, size))
            with tempfile.TemporaryDirectory(prefix="ctviewer-bench-cache-") as tmp:
                cache = Cache(tmp)
                cold.append(_timed(ctviewer_load, folder, size, cache))
                cache.close()
                first = first or cold[-1]
        with tempfile.TemporaryDirectory(prefix="ctviewer-bench-cache-") as tmp:
            cache = Cache(tmp)
            ctviewer_load(folder, size, cache)
            cache.close()
            time.sleep(RACY_NS / 1e9 + 0.2)
            cached = [_timed(ctviewer_load, folder, size, Cache(tmp)) for _ in range(3)]
            always = [_timed(ctviewer_load, folder, size, Cache(tmp, verify_arrays="always")) for _ in range(2)]
        best_plain = min(plain)
        rows = [("plain pydicom loop", best_plain), ("ctviewer cold, 1st", first), ("ctviewer cold, best", min(cold)),
                ("ctviewer cached", min(cached)), ("ctviewer cached, always", min(always))]
        for name, (wall, cpu, n) in rows:
            print(f"{name:<26}{size:>6}{n / wall:>10.1f}{best_plain[0] / wall:>9.2f}"
                  f"{1000 * cpu / n:>14.2f}{best_plain[1] / cpu if cpu else float('nan'):>13.2f}")
    print(f"load after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (2-core machine shared with other jobs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
