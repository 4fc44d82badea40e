"""Preprocessing cache: same arrays as a fresh decode, memory-mapped, keyed by content + parameters."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from ctviewer.core.data import imaging
from ctviewer.core.data.cache import Cache, NoCache
from ctviewer.core.data.dataset import discover, load_stack
from ctviewer.core.data.demo import make_demo_dataset
from ctviewer.core.errors import Cancelled


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    return make_demo_dataset(tmp_path / "demo", n_patients=2, slices_per_patient=2, size=64)


def test_cached_array_equals_fresh_preprocessing_and_is_memmapped(demo: Path, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    path = next(demo.rglob("*.dcm"))
    prep = imaging.Preprocessing(window="soft_tissue", size=32)
    first = cache.array(path, prep)
    again = cache.array(path, prep)
    assert isinstance(again, np.memmap)
    expected = imaging.preprocess(imaging.load(path), prep)
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(again, expected)


def test_parameters_are_part_of_the_key(demo: Path, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    path = next(demo.rglob("*.dcm"))
    a = cache.array(path, imaging.Preprocessing(window="soft_tissue", size=32))
    b = cache.array(path, imaging.Preprocessing(window="lung", size=32))
    c = cache.array(path, imaging.Preprocessing(window="soft_tissue", size=16))
    assert not np.array_equal(a, b) and c.shape == (16, 16)


def test_content_key_survives_a_copy(demo: Path, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    path = next(demo.rglob("*.dcm"))
    prep = imaging.Preprocessing(size=32)
    cache.array(path, prep)
    copy = tmp_path / "elsewhere.dcm"
    shutil.copy(path, copy)
    assert cache.array_path(cache.inspect(copy).content_hash, prep).exists()


def test_damaged_cache_entry_is_rebuilt(demo: Path, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    path = next(demo.rglob("*.dcm"))
    prep = imaging.Preprocessing(size=32)
    good = np.array(cache.array(path, prep))
    cache.array_path(cache.inspect(path).content_hash, prep).write_bytes(b"garbage")
    np.testing.assert_array_equal(cache.array(path, prep), good)


def _cached_once(demo: Path, tmp_path: Path) -> tuple[Cache, Path, imaging.Preprocessing, np.ndarray, Path]:
    """A cache holding one file's array: (cache, the file, its preprocessing, the array, the array's file)."""
    cache = Cache(tmp_path / "c")
    path = next(demo.rglob("*.dcm"))
    prep = imaging.Preprocessing(size=32)
    good = np.array(cache.array(path, prep))
    return cache, path, prep, good, cache.array_path(cache.inspect(path).content_hash, prep)


def test_a_cached_array_changed_on_disk_is_rejected_by_its_hash(demo: Path, tmp_path: Path) -> None:
    """Valid shape, type and [0, 1] values, other content: the index's hash catches it; made again."""
    cache, path, prep, good, target = _cached_once(demo, tmp_path)
    altered = np.ascontiguousarray(good[::-1], dtype=np.float32)  # still a perfectly plausible model input
    assert not np.array_equal(altered, good) and 0.0 <= altered.min() and altered.max() <= 1.0
    np.save(target, altered)
    again = cache.array(path, prep)
    np.testing.assert_array_equal(again, good)
    assert any("does not match its index entry" in note and str(path) in note for note in cache.notes), cache.notes
    np.testing.assert_array_equal(np.load(target), good)  # the file itself was made again
    assert len(cache.notes) == 1
    np.testing.assert_array_equal(cache.array(path, prep), good)  # and is trusted from then on
    assert len(cache.notes) == 1


def test_a_cached_array_with_another_valid_npy_header_is_read_not_made_again(demo: Path, tmp_path: Path) -> None:
    """Arrays are read by matching the header this numpy writes as bytes; any other valid header is parsed."""
    cache, path, prep, good, target = _cached_once(demo, tmp_path)
    with open(target, "wb") as fh:  # same values, a version 2.0 header (as another writer may leave)
        np.lib.format.write_array(fh, good, version=(2, 0))
    row = np.full((32, 32), np.nan, dtype=np.float32)
    np.testing.assert_array_equal(cache.array(path, prep, into=row), good)
    with open(target, "rb") as fh:
        assert not cache.notes and np.lib.format.read_magic(fh) == (2, 0)  # kept, not made again
    with open(target, "wb") as fh:  # a valid header of another shape: made again
        np.lib.format.write_array(fh, good[:16], version=(1, 0))
    np.testing.assert_array_equal(cache.array(path, prep, into=row), good)
    assert np.load(target).shape == (32, 32)


def test_second_load_is_much_faster(tmp_path: Path) -> None:
    folder = make_demo_dataset(tmp_path / "d", n_patients=4, slices_per_patient=3, size=256)
    cache = Cache(tmp_path / "c")
    prep = imaging.Preprocessing(size=128)

    def load_all() -> float:
        start = time.perf_counter()
        load_stack(discover(folder, cache=cache), prep, cache=cache)
        return time.perf_counter() - start

    cold = load_all()
    warm = min(load_all() for _ in range(3))
    # The bar is 10x on real CT (see bench/loading.py); small phantoms on a shared
    # CI core leave less to save, so the test asserts a margin that cannot pass by accident.
    assert warm * 4 < cold, (cold, warm)


def test_no_cache_gives_same_arrays(demo: Path, tmp_path: Path) -> None:
    ds = discover(demo, cache=NoCache())
    prep = imaging.Preprocessing(size=32)
    np.testing.assert_array_equal(
        load_stack(ds, prep, cache=NoCache()), load_stack(ds, prep, cache=Cache(tmp_path / "c"))
    )


def test_load_stack_can_be_cancelled(demo: Path) -> None:
    ds = discover(demo)
    with pytest.raises(Cancelled):
        load_stack(ds, imaging.Preprocessing(size=32), should_stop=lambda: True)
