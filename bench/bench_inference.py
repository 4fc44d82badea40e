"""Inference: milliseconds per image at batch 1 and batch 32, with and without test-time augmentation.

Times `ctviewer.core.model.inference.predict` on preprocessed arrays (the path every prediction
takes after the cache: fixed-shape padded batches, ``predict_on_batch``, BatchNorm in
inference mode), for the default recipe and the ``seed`` network at their recipe input
sizes, plus one row over the SIIM files through the cache. Weights are freshly initialised:
the arithmetic, hence the time, does not depend on their values. Each configuration is
called once untimed first (graph tracing), then timed.

Run alone: ``python bench/run_all.py --only inference [--quick]``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import bench_common as bc
import numpy as np

BATCHES = (1, 32)


REPEATS = 3


def _time_predict(model: Any, x: np.ndarray, batch_size: int, tta: bool, repeats: int) -> float:
    """Best ms per image of ``repeats`` predict(model, x) calls, after one untimed warm-up call.

    Best, not mean: on a shared machine other processes only ever add time.
    """
    from ctviewer.core.model.inference import predict

    predict(model, x[:batch_size], tta=tta, batch_size=batch_size)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        predict(model, x, tta=tta, batch_size=batch_size)
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best / len(x)


def run(quick: bool = False, data: Path | None = None) -> None:
    from ctviewer.core.model.recipes import build_model, config_for

    n = {1: 8, 32: 32} if quick else {1: 48, 32: 96}
    repeats = 1 if quick else REPEATS
    rows = []
    rng = np.random.default_rng(0)
    for name in ("default", "seed"):
        config = config_for(name)
        model = build_model(config)
        size = config.input_size
        x = rng.uniform(0.0, 1.0, size=(max(n.values()), size, size)).astype(np.float32)
        for batch in BATCHES:
            plain = _time_predict(model, x[: n[batch]], batch, False, repeats)
            tta = _time_predict(model, x[: n[batch]], batch, True, repeats)
            rows.append([name, size, batch, n[batch], f"{plain:.2f}", f"{tta:.2f}", f"{tta / plain:.2f}"])
            print(f"  measured {name} batch {batch}", flush=True)

    folder = Path(data or bc.DEFAULT_DATA)
    notes = [
        f"ms/image = best of {repeats} predict() call(s) over N images / N, after an untimed warm-up call",
        "TTA = the image and its left-right mirror, averaged (inference.tta_views): two forward passes",
        "same model, same images: batch 32 is one padded predict_on_batch per 32 images, batch 1 one per image",
    ]
    if folder.is_dir():
        from ctviewer.core.data.cache import Cache
        from ctviewer.core.data.dataset import discover
        from ctviewer.core.model.inference import predict

        config = config_for("default")
        model = build_model(config)
        cache = Cache()
        dataset = discover(folder, positive=bc.POSITIVE, cache=cache)
        predict(model, dataset, batch_size=32, cache=cache)  # warm-up, also fills the cache
        timings = []
        for tta in (False, True):
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                predict(model, dataset, batch_size=32, cache=cache, tta=tta)
                best = min(best, time.perf_counter() - start)
            timings.append(1000.0 * best / len(dataset))
        plain, tta_ms = timings
        rows.append(["default, SIIM files via cache", config.input_size, 32, len(dataset), f"{plain:.2f}",
                     f"{tta_ms:.2f}", f"{tta_ms / plain:.2f}"])
        notes.append("last row: predict() on the SIIM dataset, images read from the warm preprocessing cache "
                     f"(the default recipe predicts with TTA: tta={config.tta})")
    bc.print_table(
        "Inference, ms per image (CPU, float32)",
        ["model", "input", "batch", "images", "ms/img", "ms/img TTA", "TTA / plain"], rows, notes=notes,
    )
