"""Issue 15: a cold load reads each file once per pass, decodes an uncompressed DICOM once (not at
discovery), gives the same results serially and in worker processes, can be cancelled, and keeps
working next to an index of another schema version."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from _badfiles import ct_dataset

from ctviewer.core.data import cache as cache_module
from ctviewer.core.data import imaging, parallel
from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import discover, load_stack
from ctviewer.core.errors import Cancelled

PREP = imaging.Preprocessing(window="soft_tissue", size=24)


def _folder(root: Path, n: int = 6, bad: bool = False) -> Path:
    """``n`` small uncompressed CT slices in two class folders (plus a truncated and a non-DICOM file)."""
    for i in range(n):
        label = "a" if i % 2 else "b"
        (root / label).mkdir(parents=True, exist_ok=True)
        ct_dataset(seed=i).save_as(root / label / f"ct{i:02d}.dcm")
    if bad:
        data = (root / "a" / "ct01.dcm").read_bytes()
        (root / "a" / "truncated.dcm").write_bytes(data[: len(data) - 1200])  # inside the pixel data
        (root / "b" / "noise.dcm").write_bytes(bytes(range(256)) * 4)
    return root


def _expected(folder: Path) -> dict[str, np.ndarray]:
    return {str(p): imaging.preprocess(imaging.load(p), PREP) for p in sorted(folder.rglob("ct*.dcm"))}


def test_discovery_parses_headers_and_the_array_pass_decodes_once_without_pydicom(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _folder(tmp_path / "d")
    expected = _expected(folder)
    monkeypatch.setattr(pydicom.Dataset, "pixel_array", property(lambda self: pytest.fail("pydicom decoded pixels")))
    decoded: list[str] = []
    real_decode = imaging.decode_raw
    monkeypatch.setattr(cache_module, "decode_raw", lambda p, *a: decoded.append(str(p)) or real_decode(p, *a))
    cache = Cache(tmp_path / "c")
    ds = discover(folder, cache=cache)
    assert len(ds) == 6 and not decoded  # discovery: headers and hashes only
    assert all(cache.inspect(p).raw is not None for p in ds.paths)
    stack = load_stack(ds, PREP, cache=cache)
    assert sorted(decoded) == sorted(ds.paths)  # each file decoded once, by numpy
    for i, path in enumerate(ds.paths):
        np.testing.assert_array_equal(stack[i], expected[path])  # bit for bit what load + preprocess give


def test_a_cold_load_opens_each_file_once_per_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _folder(tmp_path / "d")
    opened: Counter[str] = Counter()
    real_open = open

    def counting_open(file, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        opened[str(file)] += 1
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(imaging, "open", counting_open, raising=False)
    cache = Cache(tmp_path / "c")
    ds = discover(folder, cache=cache)
    assert opened == Counter({p: 1 for p in ds.paths})  # read once: sniffed, parsed and hashed from one read
    load_stack(ds, PREP, cache=cache)
    assert opened == Counter({p: 2 for p in ds.paths})  # and once more, for its pixel bytes only
    load_stack(discover(folder, cache=cache), PREP, cache=cache)
    assert opened == Counter({p: 2 for p in ds.paths})  # cached: never again


@pytest.fixture
def pool_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes for any number of files, doing every chunk (the main process does not help)."""
    monkeypatch.setattr(parallel, "MIN_FILES", 1)
    monkeypatch.setattr(parallel, "CHUNK", 2)
    monkeypatch.setattr(parallel, "MAIN_HELPS", False)
    monkeypatch.setattr(parallel, "worker_count", lambda: 1)


def _load(folder: Path, cache_dir: Path) -> tuple[object, np.ndarray]:
    cache = Cache(cache_dir)
    ds = discover(folder, cache=cache)
    return ds, load_stack(ds, PREP, cache=cache)


def test_the_pool_gives_the_serial_results_in_the_same_order_and_reports_bad_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _folder(tmp_path / "d", n=9, bad=True)
    monkeypatch.setenv("CTVIEWER_DECODE_WORKERS", "0")
    serial, serial_stack = _load(folder, tmp_path / "serial")
    monkeypatch.undo()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in (("MIN_FILES", 1), ("CHUNK", 2), ("MAIN_HELPS", False), ("worker_count", lambda: 1)):
            mp.setattr(parallel, name, value)
        pooled, pooled_stack = _load(folder, tmp_path / "pooled")
        assert parallel._pool is not None and parallel._pool._processes  # the work went to a worker process
    assert pooled.items == serial.items  # same paths, order, metadata and hashes
    np.testing.assert_array_equal(pooled_stack, serial_stack)
    reasons = {Path(s.path).name: s.reason for s in pooled.report.skipped}
    assert reasons == {Path(s.path).name: s.reason for s in serial.report.skipped}
    assert "truncated" in reasons["truncated.dcm"], reasons
    assert "not a DICOM file" in reasons["noise.dcm"]


def test_a_pooled_load_can_be_cancelled_and_the_next_one_works(tmp_path: Path, pool_only: None) -> None:
    folder = _folder(tmp_path / "d", n=8)
    calls = iter(range(100))
    with pytest.raises(Cancelled):
        discover(folder, cache=Cache(tmp_path / "c"), should_stop=lambda: next(calls) >= 3)
    ds = discover(folder, cache=Cache(tmp_path / "c"))
    calls = iter(range(100))
    with pytest.raises(Cancelled):
        load_stack(ds, PREP, cache=Cache(tmp_path / "c"), should_stop=lambda: next(calls) >= 3)
    assert load_stack(ds, PREP, cache=Cache(tmp_path / "c")).shape == (8, 24, 24)


def test_an_index_of_another_schema_version_is_left_alone_or_rebuilt_and_caching_works(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "c"
    root.mkdir()
    # What ctviewer with schema 1 leaves: index.sqlite3, an 8-column files table.
    old = sqlite3.connect(root / "index.sqlite3")
    old.execute("CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, version INTEGER,"
                " content_hash TEXT, meta TEXT, pixel_hash TEXT, error TEXT)")
    old.execute("INSERT INTO files VALUES ('x', 1, 1, 1, 'h', '{}', 'p', NULL)")
    old.commit()
    old.close()
    # And a file under this version's name written by another schema (copied, or a future one).
    foreign = sqlite3.connect(root / cache_module._INDEX_FILE)
    foreign.execute("CREATE TABLE files (path TEXT PRIMARY KEY, whatever BLOB)")
    foreign.execute("PRAGMA user_version = 99")
    foreign.commit()
    foreign.close()

    folder = _folder(tmp_path / "d", n=2)
    cache = Cache(root)
    assert any("schema version 99" in note for note in cache.notes), cache.notes
    ds, stack = discover(folder, cache=cache), None
    stack = load_stack(ds, PREP, cache=cache)
    cache.close()
    monkeypatch.setattr(cache_module, "probe_file", lambda p: pytest.fail(f"{p} inspected again"))
    again = Cache(root)
    assert discover(folder, cache=again).items == ds.items  # served from the rebuilt index
    np.testing.assert_array_equal(load_stack(ds, PREP, cache=again), stack)
    kept = sqlite3.connect(root / "index.sqlite3")
    assert kept.execute("SELECT path, version FROM files").fetchall() == [("x", 1)]  # schema 1's index untouched
    kept.close()


def test_an_array_is_hashed_again_only_while_its_stat_could_hide_a_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _folder(tmp_path / "d", n=1)
    path = next(folder.rglob("*.dcm"))
    cache = Cache(tmp_path / "c")
    good = np.array(cache.array(path, PREP))
    hashed: list[int] = []
    real_digest = cache_module.array_digest
    monkeypatch.setattr(cache_module, "array_digest", lambda a: hashed.append(1) or real_digest(a))
    np.testing.assert_array_equal(cache.array(path, PREP), good)
    assert hashed == [1]  # written just now: within the racy window, so hashed
    monkeypatch.setattr(cache_module, "RACY_NS", 0)
    np.testing.assert_array_equal(cache.array(path, PREP), good)
    assert hashed == [1]  # recorded after its mtime, stat unchanged: trusted without hashing
    np.testing.assert_array_equal(Cache(tmp_path / "c", verify_arrays="always").array(path, PREP), good)
    assert hashed == [1, 1]  # "always" hashes on every read


def test_workers_never_run_the_main_script_again(tmp_path: Path) -> None:
    """A script without an ``if __name__ == "__main__":`` guard runs once, though its load uses workers."""
    folder = _folder(tmp_path / "d", n=4)
    marker = tmp_path / "runs.txt"
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        from pathlib import Path
        from ctviewer.core.data import parallel
        from ctviewer.core.data.cache import Cache
        from ctviewer.core.data.dataset import discover
        with open({str(marker)!r}, "a") as fh:
            fh.write("run\\n")
        parallel.MIN_FILES, parallel.CHUNK, parallel.MAIN_HELPS = 1, 1, False
        parallel.worker_count = lambda: 1
        ds = discover({str(folder)!r}, cache=Cache({str(tmp_path / "c")!r}))
        assert len(ds) == 4 and parallel._pool._processes
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "run\n"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="reads process states from /proc")
def test_the_decode_workers_and_their_fork_server_end_when_the_app_is_killed(tmp_path: Path) -> None:
    """An app killed by a signal runs no clean-up: its decode workers must not stay behind, idle, for ever."""
    import signal
    import time

    def alive(pid: int) -> bool:
        try:  # a zombie (ended, not yet reaped) counts as gone
            return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
        except FileNotFoundError:
            return False

    folder = _folder(tmp_path / "d", n=4)
    script = textwrap.dedent(f"""
        import multiprocessing.forkserver, time
        from ctviewer.core.data import parallel
        from ctviewer.core.data.cache import Cache
        from ctviewer.core.data.dataset import discover
        parallel.MIN_FILES, parallel.CHUNK, parallel.MAIN_HELPS = 1, 1, False
        parallel.worker_count = lambda: 2
        assert len(discover({str(folder)!r}, cache=Cache({str(tmp_path / "c")!r}))) == 4
        pids = list(parallel._pool._processes)
        if parallel._pool._mp_context.get_start_method() == "forkserver":
            pids.append(multiprocessing.forkserver._forkserver._forkserver_pid)
        print(" ".join(map(str, pids)), flush=True)
        time.sleep(600)
    """)
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as app:
        try:
            pids = [int(pid) for pid in app.stdout.readline().split()]
            assert len(pids) >= 2 and all(alive(pid) for pid in pids)
        finally:
            app.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in pids if alive(pid)], "decode workers outlived the app that started them"


@pytest.mark.parametrize("pooled", [False, True])
def test_a_cached_load_reads_arrays_into_the_stack_and_remakes_a_damaged_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pooled: bool) -> None:
    folder = _folder(tmp_path / "d", n=6)
    if pooled:
        for name, value in (("MIN_FILES", 1), ("CHUNK", 2), ("MAIN_HELPS", False), ("worker_count", lambda: 1)):
            monkeypatch.setattr(parallel, name, value)
    else:
        monkeypatch.setenv("CTVIEWER_DECODE_WORKERS", "0")
    cache = Cache(tmp_path / "c")
    dataset = discover(folder, cache=cache)
    expected = np.stack([imaging.preprocess(imaging.load(p), PREP) for p in dataset.paths])
    np.testing.assert_array_equal(load_stack(dataset, PREP, cache=cache), expected)  # made, then written
    np.testing.assert_array_equal(load_stack(dataset, PREP, cache=cache), expected)  # read from the cache
    damaged = sorted(cache.arrays_dir.rglob("*.npy"))
    damaged[0].write_bytes(damaged[0].read_bytes()[:-100])  # truncated: shorter than its header says
    damaged[1].write_bytes(damaged[1].read_bytes() + b"\0" * 64)  # longer than its header says
    np.testing.assert_array_equal(load_stack(dataset, PREP, cache=cache), expected)
    assert all(p.stat().st_size == damaged[2].stat().st_size for p in damaged[:2])  # both made again
