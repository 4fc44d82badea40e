"""Print the size and the cold and warm start times of the built ctviewer app.

    python packaging/measure_startup.py [--app dist/ctviewer] [--runs 3]

"Cold" means the bundle's files were evicted from the page cache first (posix_fadvise
DONTNEED on each file: only this bundle's pages, so other programs on a shared machine are not
affected), which is what a user sees on the first start after a reboot. "Warm" is a second start.
Each command runs with QT_QPA_PLATFORM=offscreen and a private HOME, so nothing touches the
user's settings.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def executable(app: Path) -> Path:
    """The program inside a one-folder build (Linux/Windows) or a macOS .app."""
    if app.suffix == ".app":
        return app / "Contents" / "MacOS" / "ctviewer"
    exe = app / ("ctviewer.exe" if sys.platform.startswith("win") else "ctviewer")
    return exe


def bundle_bytes(app: Path) -> int:
    return sum(p.stat().st_size for p in app.rglob("*") if p.is_file() and not p.is_symlink())


def evict(app: Path) -> None:
    """Drop the bundle's pages from the page cache (Linux; a no-op where unsupported)."""
    if not hasattr(os, "posix_fadvise"):
        return
    for path in app.rglob("*"):
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def timed(command: list[str], env: dict[str, str], timeout: float) -> tuple[float, int, str, dict[str, float]]:
    """Run ``command``; return wall time, exit code, output tail and the app's startup marks.

    With CTVIEWER_STARTUP_TIMING=1 the GUI prints ``ctviewer-timing <event> <unix time>`` lines
    (window_shown, first_image); they are returned as seconds since launch.
    """
    launched = time.time()
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    elapsed = time.perf_counter() - start
    marks = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "ctviewer-timing":
            marks[parts[1]] = float(parts[2]) - launched
    return elapsed, result.returncode, (result.stdout + result.stderr)[-2000:], marks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", type=Path, default=REPO / "dist" / ("ctviewer.app" if sys.platform == "darwin" else "ctviewer"))
    parser.add_argument("--runs", type=int, default=3, help="warm runs per command (default 3)")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    exe = executable(args.app)
    if not exe.is_file():
        print(f"{exe}: no built app; run packaging/build.sh first", file=sys.stderr)
        return 1
    print(f"bundle {args.app}: {bundle_bytes(args.app) / 2**30:.2f} GiB")

    with tempfile.TemporaryDirectory() as home:
        shot = str(Path(home) / "shot.png")
        commands = {
            "--version (CLI path)": ["--version"],
            "about (imports pydicom)": ["about"],
            "--demo --screenshot (GUI, demo data)": ["--demo", "--screenshot", shot],
            "--self-test (GUI + TF train + predict)": ["--self-test"],
        }
        env = {
            **os.environ,
            "QT_QPA_PLATFORM": "offscreen",
            "HOME": home,
            "XDG_CONFIG_HOME": str(Path(home) / ".config"),
            "CTVIEWER_CACHE_DIR": str(Path(home) / "cache"),
            "CTVIEWER_STARTUP_TIMING": "1",
        }
        for label, extra in commands.items():
            evict(args.app)
            cold, rc, tail, marks = timed([str(exe), *extra], env, args.timeout)
            if rc != 0:
                print(f"{label}: FAILED (exit {rc})\n{tail}")
                return 1
            warm_runs = [timed([str(exe), *extra], env, args.timeout) for _ in range(args.runs)]
            warm = statistics.median(r[0] for r in warm_runs)
            print(f"{label:<40} cold {cold:6.2f} s   warm {warm:6.2f} s (median of {args.runs})")
            for event in ("window_shown", "first_image"):
                if event in marks:
                    warm_event = statistics.median(r[3].get(event, float("nan")) for r in warm_runs)
                    print(f"    {event:<36} cold {marks[event]:6.2f} s   warm {warm_event:6.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
