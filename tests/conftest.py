"""Shared fixtures: a private cache per test session, the optional SIIM folder, tiny datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Tests on a 2-core CI machine: keep TensorFlow from oversubscribing the cores.
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

SIIM_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "siim-ct-contrast"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache folder, so nothing leaks between tests or into ~/.cache."""
    cache_dir = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("CTVIEWER_CACHE_DIR", str(cache_dir))
    return cache_dir


@pytest.fixture(scope="session")
def siim_dir() -> Path:
    """The real SIIM CT folder from ../shared; tests using it skip when it is absent (a user's clone)."""
    if not (SIIM_DIR / "contrast").is_dir():
        pytest.skip("../shared/data/siim-ct-contrast not present")
    return SIIM_DIR
