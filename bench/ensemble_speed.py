"""Prediction cost of a k-fold ensemble of the default recipe: ms per image, batch 32.

Weights do not change the cost, so the k members are freshly built (not trained). Both
paths are timed: the plain ensemble model (mean only) and the one-graph model that also
returns every member's probability (what `predict` runs for an ensemble, for the spread).

    python bench/ensemble_speed.py --members 5 --images 128          # as `predict` runs an ensemble
    python bench/ensemble_speed.py --members 5 --images 128 --tta    # with mirror TTA, as before issue 12
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tta", action="store_true", help="add the mirror TTA (a fold ensemble predicts without it)")
    args = parser.parse_args()

    import keras

    from ctviewer.core.model.inference import predict_arrays, predict_arrays_with_spread
    from ctviewer.core.model.members import spread_model
    from ctviewer.core.model.recipes import build_model, default_config

    config = default_config("default")
    size = config.input_size
    inputs = keras.Input((size, size, 1), name="image")
    members = []
    for i in range(args.members):
        keras.utils.set_random_seed(i)
        m = build_model(config)
        members.append(keras.Model(m.inputs[0], m.outputs[0], name=f"member{i}")(inputs))
    ensemble = keras.Model(inputs, keras.layers.Average(name="mean_probabilities")(members), name="ensemble")
    assert spread_model(ensemble) is not None
    x = np.random.default_rng(0).random((args.images, size, size, 1), dtype=np.float32)
    timings: dict[str, list[float]] = {"mean_only": [], "mean_and_members": []}
    # CPU time too: on a shared machine wall time mostly measures the other jobs; CPU time per
    # image divided by the cores used is what an idle machine would take.
    cpu: dict[str, list[float]] = {"mean_only": [], "mean_and_members": []}
    # Warm-up (tracing) first, then the timed repeats.
    predict_arrays(ensemble, x[: args.batch_size], args.batch_size, tta=args.tta)
    predict_arrays_with_spread(ensemble, x[: args.batch_size], args.batch_size, tta=args.tta)
    for _ in range(args.repeats):
        for name, run in (("mean_only", predict_arrays), ("mean_and_members", predict_arrays_with_spread)):
            t0, c0 = time.perf_counter(), time.process_time()
            run(ensemble, x, args.batch_size, tta=args.tta)
            timings[name].append((time.perf_counter() - t0) * 1000 / args.images)
            cpu[name].append((time.process_time() - c0) * 1000 / args.images)
    print(json.dumps({
        "members": args.members, "input_size": size, "batch_size": args.batch_size, "tta": args.tta,
        "images": args.images, "ms_per_image_best": {k: round(min(v), 2) for k, v in timings.items()},
        "ms_per_image_all": {k: [round(t, 2) for t in v] for k, v in timings.items()},
        "cpu_ms_per_image_best": {k: round(min(v), 2) for k, v in cpu.items()},
        "load_average": os.getloadavg(), "cpus": os.cpu_count(),
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
