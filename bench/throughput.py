"""Training throughput (images/s) of the default and seed models at input 256 and 512.

Feeds synthetic preprocessed images through ctviewer's own tf.data pipeline
(`ctviewer.core.training.pipeline.make_tf_dataset`, in-memory or ``--stream`` from .npy files) into
``model.fit`` with each recipe's batch size, optimiser and class weights. One warm-up
epoch (graph tracing) is excluded; the timed epochs are steady state.

    .venv/bin/python bench/throughput.py                 # default + seed at 256 and 512
    .venv/bin/python bench/throughput.py --sizes 128 --models default --images 64
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(model_name: str, size: int, n_images: int, epochs: int, stream: bool) -> tuple[float, float, int, float]:
    """(images per wall-clock second, images per CPU second, batch size, seconds of the warm-up epoch).

    CPU seconds are this process's, all threads: on a shared machine the wall-clock rate
    drops with other people's load, the per-CPU-second rate much less.
    """
    import keras

    from ctviewer.core.model.recipes import build_model, compile_model, default_config
    from ctviewer.core.training.pipeline import PreprocessedImages, class_weights, make_tf_dataset

    config = default_config(model_name).with_overrides(input_size=size)
    rng = np.random.default_rng(0)
    pixels = rng.random((n_images, size, size), dtype=np.float32)
    y = np.arange(n_images) % 2
    if stream:
        folder = Path(tempfile.mkdtemp(prefix="ctviewer-throughput-"))
        files = []
        for i, image in enumerate(pixels):
            files.append(str(folder / f"{i}.npy"))
            np.save(files[-1], image)
        images = PreprocessedImages(files=files, stacked=None, size=size)
    else:
        images = PreprocessedImages(files=[], stacked=pixels, size=size)
    indices = np.arange(n_images)
    weights = class_weights(y) if config.class_weight else None
    dataset = make_tf_dataset(images, indices, y, config.batch_size, shuffle=True, seed=0, weights=weights)
    keras.utils.set_random_seed(0)
    model = build_model(config)
    compile_model(model, config, steps_per_epoch=-(-n_images // config.batch_size))
    start = time.perf_counter()
    model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    warmup = time.perf_counter() - start
    start, cpu_start = time.perf_counter(), time.process_time()
    model.fit(dataset, epochs=epochs, verbose=0, shuffle=False)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    keras.backend.clear_session()
    return n_images * epochs / seconds, n_images * epochs / cpu_seconds, config.batch_size, warmup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["default", "seed"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--images", type=int, default=60, help="synthetic images per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after the warm-up")
    parser.add_argument("--stream", action="store_true", help="read images from .npy files (the large-set path)")
    args = parser.parse_args()

    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, devices: "
          f"{', '.join(d.device_type for d in tf.config.list_physical_devices())}, "
          f"{'streamed' if args.stream else 'in-memory'} tf.data, {args.images} images x {args.epochs} timed epochs")
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print(f"{'model':<10} {'input':>6} {'batch':>6} {'images/s':>9} {'img/CPU-s':>10} {'warm-up s':>10}")
    for name in args.models:
        for size in args.sizes:
            rate, cpu_rate, batch, warmup = measure(name, size, args.images, args.epochs, args.stream)
            print(f"{name:<10} {size:>6} {batch:>6} {rate:>9.1f} {cpu_rate:>10.2f} {warmup:>10.1f}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
