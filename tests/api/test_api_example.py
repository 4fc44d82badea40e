"""The notebook-style example in docs/ runs end to end (tiny arrays) and tells the story it promises."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("keras")

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "question_in_a_notebook.py"


def test_the_question_example_runs_end_to_end_in_under_a_minute(tmp_path):
    env = {**os.environ, "CTVIEWER_CACHE_DIR": str(tmp_path / "cache"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    # The callback spoke after epoch 1, then the doctor named the question's three mistakes.
    assert out.index("ctviewer doctor after epoch 1") < out.index("val_accuracy per epoch")
    codes = out.split("codes: ", 1)[1].splitlines()[0].split(", ")
    assert {"tail-split-one-class", "small-class", "batchnorm-mode-mismatch"} <= set(codes)
    assert "gone after the fix: patient-leak, tail-split-one-class" in out
    assert "per patient:" in out and "95% CI" in out
    # CPU seconds, not wall time: the CI machine is shared, the example's own cost is what must stay small.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 60, f"the example used {cpu:.0f} s of CPU ({wall:.0f} s wall)"
