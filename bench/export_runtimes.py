"""Exported models beside ``ctviewer predict``: artifact size, load time and ms/image per runtime.

Usage: python bench/export_runtimes.py [--recipes default:128 seed:256] [--repeats 30] [--out DIR]

For each recipe (name:input size) trains a 1-epoch model on the demo dataset (speed does not
depend on the weights), exports it in every format, then in a fresh process per runtime measures
the runtime's import, the model's load, and ms/image at batch 1 and batch 32 (median of repeats).
``ctviewer`` is the bundle run by ctviewer itself (import ctviewer + TensorFlow, load_bundle,
predict_arrays with the recipe's TTA).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_MEASURE = r"""
import json, sys, time
t0 = time.perf_counter()
fmt, path, size, repeats, tta = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
import numpy as np
if fmt == "ctviewer":
    from ctviewer.core.model.bundle import load_bundle
    from ctviewer.core.model.inference import predict_arrays
    import tensorflow
elif fmt == "savedmodel":
    import tensorflow as tf
elif fmt == "onnx":
    import onnxruntime
else:
    from ai_edge_litert.interpreter import Interpreter
t1 = time.perf_counter()
if fmt == "ctviewer":
    bundle = load_bundle(path)
    run = lambda x: predict_arrays(bundle.model, x, batch_size=len(x), tta=tta)
elif fmt == "savedmodel":
    serve = tf.saved_model.load(path).signatures["serving_default"]
    run = lambda x: serve(image=tf.constant(x))["probability"].numpy()
elif fmt == "onnx":
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    run = lambda x: session.run(["probability"], {"image": x})[0]
else:
    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    run = lambda x: runner(image=x)["probability"]
t2 = time.perf_counter()
rng = np.random.default_rng(0)
out = {"import_s": t1 - t0, "load_s": t2 - t1}
for batch in (1, 32):
    x = rng.random((batch, size, size, 1), dtype=np.float32)
    run(x)  # warm-up: first call compiles/allocates
    times = []
    for _ in range(max(3, repeats if batch == 1 else repeats // 6)):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    out[f"ms_per_image_b{batch}"] = 1000 * sorted(times)[len(times) // 2] / batch
print(json.dumps(out))
"""


def _measure(fmt: str, path: Path, size: int, repeats: int, tta: bool) -> dict[str, float]:
    result = subprocess.run([sys.executable, "-c", _MEASURE, fmt, str(path), str(size), str(repeats),
                             "1" if tta else "0"], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["default:128", "seed:256"])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", help="keep the bundles and exports here (default: a temporary folder)")
    args = parser.parse_args()

    from ctviewer.core.data.cache import Cache
    from ctviewer.core.data.dataset import discover
    from ctviewer.core.data.demo import make_demo_dataset
    from ctviewer.core.model.bundle import save_bundle
    from ctviewer.core.model.export import ARTIFACT_NAMES, FORMATS, export_bundle
    from ctviewer.core.model.recipes import config_for
    from ctviewer.core.training.fit import fit

    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="ctviewer-export-bench-"))
    make_demo_dataset(root / "data", n_patients=4, slices_per_patient=2, size=256)
    cache = Cache(root / "cache")
    dataset = discover(root / "data", positive="contrast", cache=cache)
    print(f"{'model':<14} {'runtime':<11} {'size MB':>8} {'export s':>9} {'import s':>9} {'load s':>7} "
          f"{'ms/img b1':>10} {'ms/img b32':>11}")
    for spec in args.recipes:
        name, size = spec.split(":")
        config = config_for(name, input_size=int(size), epochs=1, batch_size=4)
        bundle_dir = save_bundle(fit(dataset, config, cache=cache), root / f"{name}{size}")
        size_mb = (bundle_dir / "model.keras").stat().st_size / 1e6
        rows = [("ctviewer", size_mb, 0.0, _measure("ctviewer", bundle_dir, int(size), args.repeats, config.tta))]
        for fmt in FORMATS:
            result = export_bundle(bundle_dir, fmt, root / f"{name}{size}_{fmt}")
            rows.append((fmt, result.size_bytes / 1e6, result.seconds,
                         _measure(fmt, result.folder / ARTIFACT_NAMES[fmt], int(size), args.repeats, False)))
        for runtime, mb, export_s, m in rows:
            print(f"{name + '@' + size:<14} {runtime:<11} {mb:>8.2f} {export_s:>9.1f} {m['import_s']:>9.2f} "
                  f"{m['load_s']:>7.2f} {m['ms_per_image_b1']:>10.2f} {m['ms_per_image_b32']:>11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
