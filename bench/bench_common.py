"""Shared helpers of the benchmark sections: machine header, tables, memory, FLOPs, child processes.

Nothing here imports TensorFlow at import time: `machine_header` reads versions from the
installed package metadata, so printing the header costs no TensorFlow start-up.
"""

from __future__ import annotations

import datetime as _dt
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_DATA = REPO.parent / "shared" / "data" / "siim-ct-contrast"
POSITIVE = "contrast"
SPLIT_SEED = 0  # every model of the accuracy table is cross-validated on the folds of this seed
FOLDS = 5


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def machine_header() -> str:
    """The lines printed at the top of every run: date, CPU, cores, RAM, library versions, load."""
    now = _dt.datetime.now().astimezone()
    lines = [
        f"date      {now:%Y-%m-%d %H:%M %Z}",
        (f"machine   {_cpu_model()}, {os.cpu_count()} logical cores, {_ram_gib():.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}"),
        (f"software  Python {platform.python_version()}, TensorFlow {_version('tensorflow')}, "
        f"Keras {_version('keras')}, numpy {_version('numpy')}, pydicom {_version('pydicom')}, "
        f"PySide6 {_version('PySide6-Essentials')}, pyqtgraph {_version('pyqtgraph')}"),
        f"load avg  {load_average()} (1/5/15 min at start; above {os.cpu_count()} means other work shared the cores)",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- tables


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]],
                notes: Sequence[str] = ()) -> None:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        return "  ".join(parts).rstrip()

    print()
    print(title)
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))
    for note in notes:
        print(f"  * {note}")
    sys.stdout.flush()


def fmt_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


# --------------------------------------------------------------------------- memory


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def _isolated_entry(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    import traceback

    try:
        conn.send((True, fn(*args)))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        conn.send((False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def run_isolated(fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
    """Run ``fn(*args)`` in a fresh (spawned) Python process and return its result.

    Used wherever a number depends on the process being fresh: peak RSS (ru_maxrss never
    goes down), TensorFlow's first-call compilation, cold caches. ``fn`` must be a
    module-level function of an importable module. Not a Pool: pool workers are daemonic
    and may not start processes of their own (the GUI's workers do).

    Raises
    ------
    RuntimeError
        The child raised (its traceback is in the message) or died without an answer.
    """
    ctx = mp.get_context("spawn")
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_isolated_entry, args=(child_end, fn, args), daemon=False)
    proc.start()
    child_end.close()
    try:
        if not parent_end.poll(timeout):
            raise RuntimeError(f"{fn.__name__}: no answer within {timeout} s")
        ok, value = parent_end.recv()
    except EOFError:
        proc.join()
        raise RuntimeError(f"{fn.__name__}: child process died (exit code {proc.exitcode}; out of memory?)") from None
    finally:
        if proc.is_alive():
            proc.join(30)
        if proc.is_alive():
            proc.terminate()
    if not ok:
        raise RuntimeError(f"{fn.__name__} failed in its child process: {value}")
    return value


# --------------------------------------------------------------------------- FLOPs


@dataclass(frozen=True)
class FlopCount:
    forward_per_image: float  # multiply-adds x 2 of Conv2D / DepthwiseConv2D / Dense layers
    layers_counted: int

    @property
    def train_per_image(self) -> float:
        # Backward = gradients w.r.t. inputs and w.r.t. weights, each about one forward.
        return 3.0 * self.forward_per_image


def count_flops(model: Any) -> FlopCount:
    """Forward FLOPs per image from the layer shapes (2 x multiply-adds of conv and dense layers).

    Elementwise layers (BatchNorm, ReLU, pooling, the histogram, augmentation) are left out:
    they are memory-bound and a few percent of the total, and the matmul peak they are
    compared with only counts multiply-adds too.
    """
    import keras

    total = 0.0
    counted = 0

    def walk(layer: Any) -> None:
        nonlocal total, counted
        if isinstance(layer, keras.Model) and layer is not model:
            for inner in layer.layers:
                walk(inner)
            return
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            total += 2.0 * h * w * c * kh * kw
            counted += 1
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1]
            total += 2.0 * h * w * c_out * kh * kw * c_in / max(1, getattr(layer, "groups", 1))
            counted += 1
        elif isinstance(layer, keras.layers.Dense):
            total += 2.0 * layer.input.shape[-1] * layer.units
            counted += 1

    for layer in model.layers:
        walk(layer)
    return FlopCount(forward_per_image=total, layers_counted=counted)


def matmul_peak_gflops(n: int = 2048, seconds: float = 2.0) -> float:
    """Best float32 matrix-multiply rate TensorFlow reaches on this machine (GFLOP/s).

    ``n x n`` by ``n x n`` products, each 2 n^3 FLOPs, timed one at a time for about
    ``seconds``; the best single product is the peak (other processes only ever slow it).
    """
    import tensorflow as tf

    a = tf.random.uniform((n, n), dtype=tf.float32)
    b = tf.random.uniform((n, n), dtype=tf.float32)
    tf.matmul(a, b).numpy()  # warm-up: thread pool, kernels
    best = 0.0
    deadline = time.perf_counter() + seconds
    runs = 0
    while time.perf_counter() < deadline or runs < 3:
        start = time.perf_counter()
        tf.matmul(a, b).numpy()
        elapsed = time.perf_counter() - start
        best = max(best, 2.0 * n**3 / elapsed / 1e9)
        runs += 1
    return best
