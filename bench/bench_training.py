"""Training throughput: images/s, peak memory and achieved FLOP/s against the measured matmul peak.

Each measurement runs in a fresh process (so its peak RSS is its own) and feeds the model
through ctviewer's own tf.data pipeline (`ctviewer.core.training.pipeline.make_tf_dataset`): the
in-memory path for the size table, the streamed-from-``.npy`` path for the 2,000-slice run.
The first batch (graph tracing, thread pools) is timed apart from the steady-state batches.

Run alone: ``python bench/run_all.py --only training [--quick]``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench_common as bc
import numpy as np

SIZES = (256, 512, 1024)
MODELS = ("default", "seed")
STREAM_SLICES = 2000
STREAM_SIZE = 1024
# (model, input size) -> batch size, where the recipe's batch would not fit in this machine's
# memory next to other users' work (measured peak RSS per batch is in the tables).
BATCH_OVERRIDES: dict[tuple[str, int], int] = {("default", 1024): 4}  # 16 needs ~22 GiB: OOM here


@dataclass(frozen=True)
class Throughput:
    model: str
    size: int
    batch_size: int
    images_timed: int
    images_per_s: float
    first_batch_s: float  # tracing + first step
    forward_gflop: float  # per image
    rss_before_mib: float  # after TF import, model build and data, before the first step
    peak_rss_mib: float
    streamed: bool = False
    cpu_per_wall: float = float("nan")  # process CPU seconds per wall second while timed (2 = both cores)


MAX_STEPS = 400


def batch_size_for(model_name: str, size: int) -> int:
    """The recipe's batch size, or a smaller one where the recipe's would not fit in memory."""
    from ctviewer.core.model.recipes import config_for

    return BATCH_OVERRIDES.get((model_name, size), config_for(model_name).batch_size)


def _timed_fit(model_name: str, size: int, images: Any, indices: np.ndarray, y: np.ndarray,
               min_batches: int, min_seconds: float, streamed: bool) -> Throughput:
    """Compile ``model_name`` at ``size``; time training steps after the first one.

    Steps continue until at least ``min_batches`` timed batches *and* ``min_seconds`` have
    passed (cheap configurations get many batches, expensive ones at least ``min_batches``).
    """
    import keras

    from ctviewer.core.model.recipes import build_model, compile_model, config_for
    from ctviewer.core.training.pipeline import class_weights, make_tf_dataset

    config = config_for(model_name, input_size=size, batch_size=batch_size_for(model_name, size))
    bs = config.batch_size
    weights = class_weights(y[indices]) if config.class_weight else None
    ds = make_tf_dataset(images, indices, y, bs, shuffle=True, seed=0, weights=weights).repeat()
    model = build_model(config)
    compile_model(model, config, steps_per_epoch=MAX_STEPS)
    flops = bc.count_flops(model)
    stamps: list[float] = []
    cpu: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            float(np.asarray((logs or {}).get("loss", 0.0)))  # wait for the step to finish
            now = time.perf_counter()
            stamps.append(now)
            cpu.append(time.process_time())
            if len(stamps) > min_batches and now - stamps[0] >= min_seconds:
                self.model.stop_training = True

    rss_before = bc.current_rss_mib()
    start = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=MAX_STEPS, callbacks=[Clock()], verbose=0, shuffle=False)
    first = stamps[0] - start
    timed = stamps[-1] - stamps[0]
    n_timed = (len(stamps) - 1) * bs
    return Throughput(model=model_name, size=size, batch_size=bs, images_timed=n_timed,
                      images_per_s=n_timed / timed if timed > 0 else float("nan"), first_batch_s=first,
                      forward_gflop=flops.forward_per_image / 1e9, rss_before_mib=rss_before,
                      peak_rss_mib=bc.peak_rss_mib(), streamed=streamed,
                      cpu_per_wall=(cpu[-1] - cpu[0]) / timed if timed > 0 else float("nan"))


def in_memory_throughput(model_name: str, size: int, min_batches: int, min_seconds: float) -> Throughput:
    """Child process: synthetic images stacked in memory, the trainer's in-memory tf.data path."""
    from ctviewer.core.training.pipeline import PreprocessedImages

    bs = batch_size_for(model_name, size)
    n = bs * 4  # repeated: the pipeline cycles over 4 batches of distinct images
    rng = np.random.default_rng(0)
    stacked = rng.uniform(0.0, 1.0, size=(n, size, size)).astype(np.float32)
    y = np.arange(n, dtype=np.int32) % 2
    return _timed_fit(model_name, size, PreprocessedImages(files=[], stacked=stacked, size=size), np.arange(n), y,
                      min_batches, min_seconds, streamed=False)


def streamed_throughput(model_name: str, files: list[str], min_batches: int, min_seconds: float) -> Throughput:
    """Child process: the same, but every batch read from memory-mapped ``.npy`` files on disk."""
    from ctviewer.core.training.pipeline import PreprocessedImages

    y = np.arange(len(files), dtype=np.int32) % 2
    images = PreprocessedImages(files=list(files), stacked=None, size=STREAM_SIZE)
    return _timed_fit(model_name, STREAM_SIZE, images, np.arange(len(files)), y, min_batches, min_seconds,
                      streamed=True)


@dataclass(frozen=True)
class PipelinePass:
    slices: int
    seconds: float
    peak_rss_mib: float
    rss_before_mib: float


def streamed_pipeline_pass(files: list[str], batch_size: int) -> PipelinePass:
    """Child process: one full pass of the streamed tf.data pipeline over every file (no model)."""
    import tensorflow as tf  # noqa: F401 - imported before the RSS baseline is read

    from ctviewer.core.training.pipeline import PreprocessedImages, make_tf_dataset

    y = np.arange(len(files), dtype=np.int32) % 2
    ds = make_tf_dataset(PreprocessedImages(files=list(files), stacked=None, size=STREAM_SIZE), np.arange(len(files)), y,
                         batch_size, shuffle=True, seed=0)
    rss_before = bc.current_rss_mib()
    start = time.perf_counter()
    seen = 0
    for x, _ in ds:
        seen += int(x.shape[0])
    return PipelinePass(slices=seen, seconds=time.perf_counter() - start, peak_rss_mib=bc.peak_rss_mib(),
                        rss_before_mib=rss_before)


MATMUL_SIZES = (1024, 2048, 4096)


def matmul_peak() -> tuple[float, int]:
    """Child process: TensorFlow's best float32 matmul rate (GFLOP/s) over a few square sizes."""
    return max((bc.matmul_peak_gflops(n), n) for n in MATMUL_SIZES)


# --------------------------------------------------------------------------- synthetic slices


def write_synthetic_slices(folder: Path, n: int, size: int) -> list[str]:
    """``n`` float32 ``size`` x ``size`` phantom slices in the wide window, one ``.npy`` each.

    A few phantoms from `ctviewer.core.data.demo` are drawn, then each file gets its own shift
    and noise-free offset, so every file differs without drawing ``n`` phantoms.
    """
    from ctviewer.core.data.demo import phantom_slice

    rng = np.random.default_rng(0)
    bases = []
    for i in range(8):
        hu = phantom_slice(rng, size, contrast=bool(i % 2), z=0.3 + 0.1 * (i // 2))
        bases.append(np.clip((hu + 1000.0) / 2000.0, 0.0, 1.0).astype(np.float32))
    files = []
    for i in range(n):
        arr = np.roll(bases[i % len(bases)], shift=(i % 17, i % 13), axis=(0, 1))
        path = folder / f"slice_{i:05d}.npy"
        np.save(path, arr)
        files.append(str(path))
    return files


# --------------------------------------------------------------------------- section


def _row(t: Throughput, peak_gflops: float) -> list[str]:
    achieved = t.images_per_s * 3.0 * t.forward_gflop
    return [
        t.model + (" (streamed)" if t.streamed else ""), t.size, t.batch_size, f"{t.images_per_s:.2f}",
        t.images_timed, f"{t.first_batch_s:.1f} s", f"{t.cpu_per_wall:.2f}", f"{3 * t.forward_gflop:.2f}",
        f"{achieved:.1f}", f"{100 * achieved / peak_gflops:.1f}%", f"{t.rss_before_mib:.0f}", f"{t.peak_rss_mib:.0f}",
    ]


HEADERS = ["model", "input", "batch", "images/s", "timed imgs", "1st batch", "cores used", "GFLOP/img (train)",
           "GFLOP/s",
           "of peak", "RSS before MiB", "peak RSS MiB"]


# Issue 15's bar, at the recipe's own input size: the training path before issue 15 (Keras'
# BatchNorm and four augmentation layers, float32) against today's float32 and bfloat16 paths,
# each in a fresh process through bench/profile_step.py's measurement.
RECIPE_PATHS = ("before_issue_15", "baseline", "bf16")


def recipe_forward_gflop() -> float:
    """Float32-equivalent forward GFLOP per image of the default recipe at profile_step's input size."""
    import profile_step

    from ctviewer.core.model.recipes import build_default

    return bc.count_flops(build_default(profile_step.SIZE)).forward_per_image / 1e9


def recipe_size_paths(steps: int) -> list[dict[str, Any]]:
    """One training-step measurement per path in `RECIPE_PATHS` (default recipe, 128 px, batch 16)."""
    import profile_step

    forward = bc.run_isolated(recipe_forward_gflop)
    rows = []
    for name in RECIPE_PATHS:
        row = bc.run_isolated(profile_step._measure, profile_step.VARIANTS[name], steps)
        print(f"  measured default @ {profile_step.SIZE} ({name}): {row['images_per_s']:.1f} images/s, "
              f"{row['cpu_ms_per_image']:.1f} CPU-ms/image", flush=True)
        rows.append({**row, "train_gflop": 3 * forward})
    return rows


def _print_recipe_paths(rows: list[dict[str, Any]], peak_gflops: float) -> None:
    import profile_step

    before = rows[0]
    labels = {"before_issue_15": "before issue 15 (Keras BatchNorm, 4 augmentation layers)",
              "baseline": "today, float32 (the default)", "bf16": "today, bfloat16 conv blocks (--precision bfloat16)"}
    table = [[labels.get(r["variant"], r["variant"]), f"{r['images_per_s']:.1f}", f"{r['cpu_ms_per_image']:.1f}",
              f"{r['cpu_per_wall']:.2f}", f"{r['images_per_s'] / before['images_per_s']:.2f}x",
              f"{before['cpu_ms_per_image'] / r['cpu_ms_per_image']:.2f}x",
              f"{r['images_per_s'] * r['train_gflop']:.1f}",
              f"{100 * r['images_per_s'] * r['train_gflop'] / peak_gflops:.1f}%"] for r in rows]
    bc.print_table(
        f"Default recipe at its input size ({profile_step.SIZE} px, batch {profile_step.BATCH}), training paths side by side",
        ["path", "images/s", "CPU-ms/image", "cores used", "images/s vs before", "CPU vs before", "GFLOP/s",
         "of peak"], table,
        notes=["bench/profile_step.py's measurement, each path in a fresh process; synthetic images, "
               f"{profile_step.N_IMAGES} per epoch; issue 15 asks for 3x images/s over the path before it",
               f"GFLOP/s in float32-equivalent FLOPs ({rows[0]['train_gflop']:.2f} GFLOP per training image, as above), "
               f"of the {peak_gflops:.1f} GFLOP/s float32 matmul peak of this run (issue 15's other bar: 30 %)"],
    )


def run(quick: bool = False, data: Path | None = None) -> None:
    """Print the training-throughput tables (``data`` is unused: the images are synthetic)."""
    sizes = (256, 512) if quick else SIZES
    min_batches, min_seconds = (1, 2.0) if quick else (3, 15.0)
    n_stream = 120 if quick else STREAM_SLICES

    # The peak is measured before and after the model runs and the better one is used:
    # other processes on a shared machine can only lower a measurement.
    peak_before, n_before = bc.run_isolated(matmul_peak)
    print(f"\nfloat32 matmul peak with TensorFlow, before the model runs: {peak_before:.1f} GFLOP/s "
          f"(best single product of {' / '.join(map(str, MATMUL_SIZES))} squared matrices, ~2 s each; "
          f"best at {n_before})", flush=True)
    results: list[Throughput] = []
    in_memory: dict[tuple[str, int], Throughput] = {}
    for name in MODELS:
        for size in sizes:
            t = bc.run_isolated(in_memory_throughput, name, size, min_batches, min_seconds)
            in_memory[(name, size)] = t
            results.append(t)
            print(f"  measured {name} @ {size}: {t.images_per_s:.2f} images/s", flush=True)

    recipe_rows = recipe_size_paths(steps=12 if quick else 60)

    data_gib = n_stream * STREAM_SIZE * STREAM_SIZE * 4 / 1024**3
    tmp = Path(tempfile.mkdtemp(prefix="ctviewer-bench-stream-"))
    try:
        start = time.perf_counter()
        files = write_synthetic_slices(tmp, n_stream, STREAM_SIZE)
        written = time.perf_counter() - start
        print(f"wrote {n_stream} synthetic {STREAM_SIZE}x{STREAM_SIZE} float32 slices "
              f"({data_gib:.2f} GiB) to {tmp} in {written:.0f} s", flush=True)
        p = bc.run_isolated(streamed_pipeline_pass, files, 16)
        streamed = []
        for name in MODELS:
            t = bc.run_isolated(streamed_throughput, name, files, min_batches, min_seconds)
            streamed.append(t)
            print(f"  measured {name} streamed @ {STREAM_SIZE}: {t.images_per_s:.2f} images/s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    peak_after, n_after = bc.run_isolated(matmul_peak)
    peak = max(peak_before, peak_after)
    print(f"float32 matmul peak after the model runs: {peak_after:.1f} GFLOP/s (best at {n_after}); "
          f"used below: {peak:.1f} GFLOP/s")

    bc.print_table(
        f"Training throughput, in-memory tf.data (steady state: >= {min_batches} batches and >= "
        f"{min_seconds:.0f} s after the first batch)",
        HEADERS, [_row(t, peak) for t in results],
        notes=[
            "FLOPs = 2 x multiply-adds of the Conv2D/Dense layers from the layer shapes; training = 3 x forward",
            f"of peak = achieved GFLOP/s / {peak:.1f} GFLOP/s (TensorFlow float32 matmul, measured in this run)",
            "the 1st batch (graph tracing + first step) is shown apart and not in images/s",
            ("cores used = process CPU seconds / wall seconds while timed (2.00 = both cores to itself; "
            "less = waiting for memory, or other processes held the cores)"),
            ("peak RSS = ru_maxrss of a fresh process per row (TensorFlow itself included); "
            "'RSS before' = after model build and data, before the first step"),
            "each model at its recipe batch size (default 16, seed 10) except "
            + ", ".join(f"{m} at {sz} px: batch {b}" for (m, sz), b in BATCH_OVERRIDES.items())
            + " (the recipe's batch would not fit in this machine's RAM: peak RSS grows with the batch); "
            "synthetic uniform-noise images",
        ],
    )
    _print_recipe_paths(recipe_rows, peak)
    compare = []
    for t in streamed:
        ref = in_memory.get((t.model, STREAM_SIZE))
        if ref is not None:
            compare.append(f"{t.model}: streamed peak RSS {t.peak_rss_mib:.0f} MiB and {t.images_per_s:.2f} images/s; "
                           f"the same model with its 4 batches held in memory: {ref.peak_rss_mib:.0f} MiB, "
                           f"{ref.images_per_s:.2f} images/s")
    bc.print_table(
        f"Training throughput, tf.data streaming from {n_stream} .npy slices on disk "
        f"({STREAM_SIZE}x{STREAM_SIZE} float32, {data_gib:.2f} GiB)",
        HEADERS, [_row(t, peak) for t in streamed],
        notes=[
            (f"full pass of the streamed pipeline (no model) over all {p.slices} slices: "
            f"{p.slices / p.seconds:.0f} slices/s in {p.seconds:.0f} s, peak RSS {p.peak_rss_mib:.0f} MiB "
            f"(TensorFlow alone: {p.rss_before_mib:.0f} MiB) = {p.peak_rss_mib / 1024 / data_gib:.1%} of the data size"),
            (f"training rows: batches drawn (shuffled) from all {n_stream} files; their peak RSS is the model's "
            "working set for one batch at 1024 px (activations), not the data:"),
            *compare,
            f"the files were written {written:.0f} s before, so many reads come from the OS page cache, not the disk",
        ],
    )
