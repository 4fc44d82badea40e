"""Where a training step of the default recipe spends its time (issue 15), variant by variant.

Each variant runs in a fresh process (op determinism is global):
the default recipe at 128 px, batch 16, fed by ctviewer's own in-memory tf.data pipeline;
the first epoch (tracing) is timed apart from the steady-state steps.

Run: ``python bench/profile_step.py [--steps 60] [--variants baseline xla ...]``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from typing import Any

import bench_common as bc
import numpy as np

SIZE = 128
BATCH = 16
N_IMAGES = 96  # 6 steps per epoch, as a 5-fold member on ~100 images sees


@dataclass(frozen=True)
class Variant:
    name: str
    jit: bool = False
    conv_precision: str = "float32"  # "bfloat16": the conv blocks per layer in mixed_bfloat16 (TrainConfig.precision)
    deterministic: bool = True
    members: int = 3
    augment: bool = True
    cnn: bool = True
    histogram: bool = True
    attention: bool = True
    predict_only: bool = False
    spatial: str = "one_pass"
    batch_norm: str = "fused"


VARIANTS = {
    v.name: v
    for v in (
        Variant("baseline"),
        Variant("keras_batchnorm", batch_norm="keras"),
        Variant("before_issue_15", spatial="keras_layers", batch_norm="keras"),
        Variant("keras_layers_aug", spatial="keras_layers"),
        Variant("xla", jit=True),
        Variant("bf16", conv_precision="bfloat16"),
        Variant("xla_bf16", jit=True, conv_precision="bfloat16"),
        Variant("nondeterministic", deterministic=False),
        Variant("one_member", members=1),
        Variant("no_augmentation", augment=False),
        Variant("no_attention", attention=False),
        Variant("hist_only", cnn=False),
        Variant("predict", predict_only=True),
        Variant("predict_xla", jit=True, predict_only=True),
        Variant("predict_bf16", conv_precision="bfloat16", predict_only=True),
        Variant("predict_keras_batchnorm", batch_norm="keras", predict_only=True),
    )
}


def _measure(variant: Variant, steps: int) -> dict[str, Any]:
    from ctviewer.core.model.config import default_config
    from ctviewer.core.model.recipes import _WITHOUT_AUGMENTATION, DefaultArchitecture, build_default, compile_model
    from ctviewer.core.training.fit import seed_everything
    from ctviewer.core.training.pipeline import PreprocessedImages, make_tf_dataset

    seed_everything(0, variant.deterministic)
    arch = DefaultArchitecture() if variant.augment else _WITHOUT_AUGMENTATION
    arch = replace(arch, members=variant.members, cnn=variant.cnn, histogram=variant.histogram,
                   spatial_augmentation=variant.spatial, batch_norm=variant.batch_norm,
                   conv_precision=variant.conv_precision,
                   attention_masks=arch.attention_masks if variant.attention else 0)
    if not variant.attention and variant.cnn:
        arch = replace(arch, cnn_pooling="avg")
    rng = np.random.default_rng(0)
    stacked = rng.uniform(0.2, 0.8, (N_IMAGES, SIZE, SIZE)).astype(np.float32)
    y = (np.arange(N_IMAGES) % 2).astype(np.int32)
    images = PreprocessedImages(files=[], stacked=stacked, size=SIZE)
    ds = make_tf_dataset(images, np.arange(N_IMAGES), y, BATCH, shuffle=True, seed=0)
    config = default_config("default")
    model = build_default(SIZE, arch=arch)
    steps_per_epoch = N_IMAGES // BATCH
    compile_model(model, config, steps_per_epoch=steps_per_epoch)
    if variant.jit:
        model.jit_compile = True  # Keras 3: used by the next make_train_function/make_predict_function
    epochs = max(1, steps // steps_per_epoch)
    if variant.predict_only:
        x = stacked[:32, ..., None]
        t0 = time.perf_counter()
        model.predict(x, batch_size=32, verbose=0)
        first = time.perf_counter() - t0
        calls = max(3, steps // 4)
        cpu0, t0 = time.process_time(), time.perf_counter()
        for _ in range(calls):
            model.predict(x, batch_size=32, verbose=0)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        per_image_ms = 1000 * wall / (calls * 32)
        return {"variant": variant.name, "first_s": first, "ms_per_image": per_image_ms, "images_per_s": 1000 / per_image_ms,
                "cpu_per_wall": cpu / wall, "cpu_ms_per_image": 1000 * cpu / (calls * 32)}
    t0 = time.perf_counter()
    model.fit(ds, epochs=1, verbose=0)
    first = time.perf_counter() - t0
    cpu0, t0 = time.process_time(), time.perf_counter()
    model.fit(ds, epochs=epochs, verbose=0)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    n = epochs * steps_per_epoch * BATCH
    return {"variant": variant.name, "first_s": first, "ms_per_image": 1000 * wall / n, "images_per_s": n / wall,
            "cpu_per_wall": cpu / wall, "cpu_ms_per_image": 1000 * cpu / n, "loss": float(model.evaluate(ds, verbose=0)[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = parser.parse_args()
    print(bc.machine_header())
    rows = []
    for name in args.variants:
        result = bc.run_isolated(_measure, VARIANTS[name], args.steps)
        rows.append(result)
        print(result, flush=True)
    base = next((r for r in rows if r["variant"] == "baseline"), None)
    predict_base = next((r for r in rows if r["variant"] == "predict"), None)
    table = []
    for r in rows:
        ref = base if "loss" in r else predict_base  # a training step against baseline, predict against predict
        speedup = f"{ref['cpu_ms_per_image'] / r['cpu_ms_per_image']:.2f}x" if ref else ""
        table.append([r["variant"], f"{r['first_s']:.1f}", f"{r['ms_per_image']:.2f}", f"{r['images_per_s']:.0f}",
                      f"{r.get('cpu_ms_per_image', float('nan')):.2f}", f"{r.get('cpu_per_wall', float('nan')):.2f}",
                      speedup])
    bc.print_table(f"default recipe, {SIZE} px, batch {BATCH}: one training step (or predict at batch 32)",
                   ["variant", "first epoch s", "ms/image", "images/s", "CPU ms/image", "CPU/wall",
                    "CPU vs baseline / predict"], table)


if __name__ == "__main__":
    main()
