"""Every ctviewer benchmark in one run: accuracy, data loading, training, inference, GUI.

Usage::

    .venv/bin/python bench/run_all.py                    # everything (under 30 min on 2 cores)
    .venv/bin/python bench/run_all.py --quick            # minutes: few epochs, few images
    .venv/bin/python bench/run_all.py --only accuracy    # one section (several allowed)
    .venv/bin/python bench/run_all.py --only accuracy --seed-size 1024   # the question's input (hours)

Every number printed is measured in the run that prints it; the machine, the library
versions, the load average and the date come first. Without ``--only`` each section runs
in its own Python process, so TensorFlow state, caches and peak-memory counters of one
section never leak into the next, and a section that fails does not stop the others.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
from pathlib import Path

import bench_common as bc

SECTIONS = {
    "accuracy": "bench_accuracy",
    "loading": "bench_loading",
    "training": "bench_training",
    "inference": "bench_inference",
    "gui": "bench_gui",
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), metavar="SECTION",
                        help=f"run only these sections ({', '.join(SECTIONS)})")
    parser.add_argument("--quick", action="store_true", help="few epochs and images: a smoke run in minutes")
    parser.add_argument("--data", type=Path, default=bc.DEFAULT_DATA,
                        help=f"the labelled CT folder for accuracy/loading (default {bc.DEFAULT_DATA})")
    parser.add_argument("--seed-size", type=int, default=None,
                        help="input size of the seed row of the accuracy table (default 128; the question used "
                             "1024, which takes hours on 2 cores)")
    parser.add_argument("--no-header", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _run_in_process(names: list[str], quick: bool, data: Path, seed_size: int | None) -> int:
    failed = 0
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        start = time.perf_counter()
        module = importlib.import_module(SECTIONS[name])
        try:
            extra = {"seed_size": seed_size} if name == "accuracy" and seed_size else {}
            module.run(quick=quick, data=data, **extra)
        except Exception as exc:  # noqa: BLE001 - report and go on with the next section
            import traceback

            traceback.print_exc()
            print(f"section {name} FAILED: {type(exc).__name__}: {exc}", flush=True)
            failed += 1
        print(f"\n({name}: {bc.fmt_seconds(time.perf_counter() - start)})", flush=True)
    return failed


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    mode = "QUICK (smoke numbers, not for BENCHMARKS.md)" if args.quick else "full"
    if not args.no_header:
        print("ctviewer benchmarks:", mode)
        print(bc.machine_header(), flush=True)
    if args.only:
        return 1 if _run_in_process(args.only, args.quick, args.data, args.seed_size) else 0
    started = time.perf_counter()
    failed = []
    for name in SECTIONS:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--only", name, "--no-header", "--data", str(args.data)]
        if args.quick:
            cmd.append("--quick")
        if args.seed_size:
            cmd += ["--seed-size", str(args.seed_size)]
        if subprocess.call(cmd) != 0:
            failed.append(name)
    print(f"\ntotal wall time {bc.fmt_seconds(time.perf_counter() - started)}; load avg at the end {bc.load_average()}")
    if failed:
        print(f"FAILED sections: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
