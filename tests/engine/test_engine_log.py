"""The app's log stays free of TensorFlow's start-up lines: the engine process (which the app's
stderr is inherited by) starts TensorFlow quietly, unless the app runs with --verbose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_TF_NOISE = ("oneDNN", "cuInit", "cuda drivers", "absl::InitializeLog")
# What the app does: an EngineClient starts the engine child on the first call. The call here
# fails in the engine after the engine has started TensorFlow (every call does that first).
_APP = (
    "import sys\n"
    "from ctviewer.engine.client import EngineClient, EngineError\n"
    "client = EngineClient(sys.argv[1])\n"
    "try:\n"
    "    client.load_bundle(sys.argv[2])\n"
    "except EngineError as exc:\n"
    "    print('answer:', exc)\n"
    "client.shutdown(60)\n"
)


def _run_app(tmp_path: Path, verbose: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    env.pop("CTVIEWER_VERBOSE", None)
    if verbose:
        env["CTVIEWER_VERBOSE"] = "1"  # what `ctviewer --verbose` sets for the engine (gui/app.py)
    return subprocess.run([sys.executable, "-c", _APP, str(tmp_path / "cache"), str(tmp_path / "no_bundle")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def test_the_engine_log_has_no_tensorflow_start_up_lines_unless_verbose(tmp_path: Path) -> None:
    quiet = _run_app(tmp_path, verbose=False)
    assert quiet.returncode == 0, quiet.stderr
    assert "no such model bundle folder" in quiet.stdout  # the call reached the engine and came back
    assert not any(noise in quiet.stderr for noise in _TF_NOISE), quiet.stderr

    # The guard: the same call with --verbose does show them, so the quiet run above proves the silencing.
    verbose = _run_app(tmp_path, verbose=True)
    assert verbose.returncode == 0, verbose.stderr
    assert any(noise in verbose.stderr for noise in _TF_NOISE), verbose.stderr
