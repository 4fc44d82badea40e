"""On-disk cache: file inspection results and preprocessed model inputs.

Two levels, so a second load of a folder costs a ``stat`` and a memory map per file:

* an index (SQLite) from (path, size, mtime) to the file's content hash, its metadata
  and pixel hash, or the reason it could not be read;
* preprocessed arrays as ``.npy`` files named by content hash + preprocessing key,
  opened memory-mapped, so a dataset larger than RAM streams from disk.

Keys are content hashes, so a moved or copied file reuses its arrays, and an edited
file (new size or mtime) is read again.

A cold load reads each file once per pass: inspection hashes the bytes it read and parses
the header; an uncompressed monochrome DICOM is not decoded there (its pixel bytes' place is
kept in the index), and the array pass decodes it once, windows, resizes and writes it.
Folders of `parallel.MIN_FILES` files or more are worked in worker processes (``CTVIEWER_DECODE_WORKERS=0``: serial).

The index file is named by its schema version (``index.v2.sqlite3``; version 1 was
``index.sqlite3``), so ctviewer versions that share a cache folder each keep their own
index and share the arrays (the same preprocessing writes the same bytes).

The cache can always be rebuilt, so it never stops a run: a damaged index is rebuilt, a
folder that cannot be written is replaced by a temporary cache for the run (both said in
`Cache.notes` and logged as a warning), and a cached array that is not what its entry
promises is made again from its file: the shape, the type, values in [0, 1], and its
content, by the hash of its bytes that the index keeps (``arrays`` table) from when it was
written. An array without such an entry (older caches, a lost index) is made again too.
The hash is computed again only when the file's size or mtime differs from what the
index recorded, or when that mtime is within `RACY_NS` of when it was recorded (a change
in the same clock tick would keep the mtime): the rule the index applies to image files,
and git to its work tree. An array changed in place with its size and mtime kept (disk
damage, or an edit that sets the mtime back) is therefore not caught; pass
``verify_arrays="always"`` to hash on every read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ctviewer.core.data import parallel
from ctviewer.core.data.hashing import digest
from ctviewer.core.data.imaging import (
    Image,
    ImageMeta,
    Preprocessing,
    RawPixels,
    decode_raw,
    load,
    preprocess,
    probe,
    stored_pixel_hash,
)
from ctviewer.core.errors import ImageReadError
from ctviewer.core.events import StopCheck

# 2: pixel hashes of monochrome DICOMs over stored values, pixel places (``raw``), arrays' stat.
# 3: pixel and array digests in BLAKE3 (`hashing`).
_SCHEMA_VERSION = 3
_INDEX_FILE = f"index.v{_SCHEMA_VERSION}.sqlite3"
_log = logging.getLogger("ctviewer.cache")
# An array whose mtime is this close to when its entry was recorded is hashed again: a file
# system clock ticks in up to 2 s (FAT), and a change within the tick keeps the mtime.
RACY_NS = 2_000_000_000
_BATCH_ROWS = 256  # index rows written per transaction on a large load
_BLOCK = 512  # files looked up in the index before their work starts (the first results come early)


class _CacheUnusable(Exception):
    """The cache folder cannot hold a cache (not writable, a file in its place...)."""


def _index_key(path: Path) -> str:
    """The index key of a file: its resolved path, hex-encoded when the name is not valid UTF-8."""
    text = str(path.resolve())
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "fs-bytes:" + os.fsencode(text).hex()
    return text


def default_cache_dir() -> Path:
    """``$CTVIEWER_CACHE_DIR``, else the platform's user cache folder."""
    env = os.environ.get("CTVIEWER_CACHE_DIR")
    if env:
        return Path(env)
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif os.uname().sysname == "Darwin":  # pragma: no cover - macOS
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "ctviewer"


@dataclass(frozen=True)
class FileRecord:
    """What inspecting one readable image file yields."""

    meta: ImageMeta
    content_hash: str
    pixel_hash: str
    raw: RawPixels | None = None  # where an uncompressed DICOM's pixels lie (decoded by the array pass)


def content_hash(path: str | Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pixel_hash(image: Image) -> str:
    """Hash of the decoded pixels: equal for the same image in another container or file name.

    A monochrome DICOM's is that of its stored values (`stored_pixel_hash`), which needs no decoding.
    """
    if image.stored_hash:
        return image.stored_hash
    return digest(str(image.pixels.shape), np.ascontiguousarray(image.pixels, dtype=np.float32).data)


def _meta_to_json(meta: ImageMeta) -> str:
    return json.dumps(dataclasses.asdict(meta))


def _meta_from_json(text: str) -> ImageMeta:
    data = json.loads(text)
    if data.get("pixel_spacing") is not None:
        data["pixel_spacing"] = tuple(data["pixel_spacing"])
    return ImageMeta(**data)


def _raw_to_json(raw: RawPixels | None) -> str | None:
    return json.dumps(dataclasses.asdict(raw)) if raw is not None else None


def _raw_from_json(text: str | None) -> RawPixels | None:
    return RawPixels(**json.loads(text)) if text else None


def probe_file(path: str | Path) -> tuple[FileRecord, Image | None]:
    """Inspect one file with one read: hashes of the bytes read, header, pixels decoded only where needed.

    Raises ImageReadError for a file that is not a readable image.
    """
    found = probe(path)
    chash = hashlib.blake2b(found.data, digest_size=16).hexdigest()
    if found.raw is not None:
        return FileRecord(found.meta, chash, stored_pixel_hash(found.data, found.raw), found.raw), None
    assert found.image is not None
    return FileRecord(found.meta, chash, pixel_hash(found.image)), found.image


def decode_record(path: str | Path, record: FileRecord) -> Image:
    """The decoded image of an inspected file (its pixel bytes only, where the index knows their place)."""
    if record.raw is not None:
        return decode_raw(path, record.raw, dataclasses.replace(record.meta, path=str(path)))
    return load(path)


def _probe_task(path: Path) -> tuple[str, object]:
    """Worker-side inspection: ("ok", record) or ("bad", reason), never an exception (they may not pickle)."""
    try:
        return "ok", probe_file(path)[0]
    except ImageReadError as exc:
        return "bad", exc.reason
    except Exception as exc:  # noqa: BLE001 - one file's unforeseen failure is that file's reason
        return "bad", f"cannot be read ({type(exc).__name__}: {exc})"


@dataclass(frozen=True)
class _ArrayTask:
    path: Path
    record: FileRecord
    prep: Preprocessing
    target: Path


def _array_task(task: _ArrayTask) -> tuple[str, object]:
    """Worker-side preprocessing, written into the cache: ("saved", stat and digest), ("array", array) when
    the cache cannot be written, or ("bad", reason)."""
    try:
        arr = np.ascontiguousarray(preprocess(decode_record(task.path, task.record), task.prep), dtype=np.float32)
    except ImageReadError as exc:
        return "bad", exc.reason
    except Exception as exc:  # noqa: BLE001 - reported at this file's turn, as a serial load would
        return "bad", f"cannot be read ({type(exc).__name__}: {exc})"
    try:
        st = Cache._save_atomic(task.target, arr)
    except OSError as exc:
        return "array", (arr, exc.strerror or str(exc))
    return "saved", (array_digest(arr), st.st_size, st.st_mtime_ns)


class Cache:
    """Inspection index + preprocessed-array store under one folder. Thread-safe."""

    def __init__(self, root: str | Path | None = None,
                 verify_arrays: Literal["changed", "always"] = "changed") -> None:
        self.notes: list[str] = []
        self.verify_arrays = verify_arrays
        self._lock = threading.Lock()
        self._pending: dict[str, tuple] = {}  # index rows not yet written (a batch)
        self._pending_arrays: dict[str, tuple] = {}
        self._batching = 0
        wanted = Path(root) if root is not None else default_cache_dir()
        try:
            self._open(wanted)
        except _CacheUnusable as exc:
            fallback = Path(tempfile.mkdtemp(prefix="ctviewer-cache-"))
            self._say(f"cache folder {wanted} cannot be used ({exc}); using a temporary cache for this run "
                      f"({fallback}); images are read again next time")
            self._open(fallback)

    def _say(self, text: str) -> None:
        self.notes.append(text)
        _log.warning(text)

    def _open(self, root: Path) -> None:
        self.root = root
        self.arrays_dir = root / "arrays"
        try:
            self.arrays_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.arrays_dir):
                pass  # the folder exists, but can it be written?
        except OSError as exc:
            raise _CacheUnusable(exc.strerror or str(exc)) from None
        index = root / _INDEX_FILE
        try:
            self._db = self._connect(index)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):  # cannot open or write: not damage
                raise _CacheUnusable(str(exc)) from None
            self._say(f"cache index {index} is damaged ({exc}); rebuilt empty (images are inspected again)")
            for suffix in ("", "-wal", "-shm"):
                Path(f"{index}{suffix}").unlink(missing_ok=True)
            try:
                self._db = self._connect(index)
            except sqlite3.Error as again:
                raise _CacheUnusable(str(again)) from None

    @staticmethod
    def _connect(index: Path) -> sqlite3.Connection:
        db = sqlite3.connect(index, check_same_thread=False, timeout=30)
        try:
            # WAL with synchronous=NORMAL survives a crash or a kill intact (it may lose the last
            # entries, which are simply inspected again) without an fsync per file.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            check = db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check[0] if check else 'no answer'}")
            found = db.execute("PRAGMA user_version").fetchone()[0]
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables and found != _SCHEMA_VERSION:
                # Not written by this schema (a copied or renamed index): rebuilt, never misread.
                raise sqlite3.DatabaseError(f"schema version {found}, expected {_SCHEMA_VERSION}")
            with db:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
                    " version INTEGER, content_hash TEXT, meta TEXT, pixel_hash TEXT, error TEXT, raw TEXT)"
                )
                # The hash of each cached array's bytes, by its file name, with the file's size and mtime
                # when it was written or last hashed, and when that was (see RACY_NS).
                db.execute("CREATE TABLE IF NOT EXISTS arrays (name TEXT PRIMARY KEY, digest TEXT, size INTEGER,"
                           " mtime_ns INTEGER, checked_ns INTEGER)")
                db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._db.close()

    def flush(self) -> None:
        """Write the index rows kept back by a batch."""
        with self._lock:
            files, arrays = list(self._pending.values()), list(self._pending_arrays.values())
            self._pending.clear()
            self._pending_arrays.clear()
        if not files and not arrays:
            return
        try:
            with self._lock, self._db:
                self._db.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?)", files)
                self._db.executemany("INSERT OR REPLACE INTO arrays VALUES (?,?,?,?,?)", arrays)
        except sqlite3.Error as exc:
            self._index_failed(exc)

    # ------------------------------------------------------------------ inspection

    def inspect(self, path: str | Path) -> FileRecord:
        """Metadata and hashes of an image file, read once and then served from the index.

        Raises ImageReadError (also cached) for a file that is not a readable image.
        """
        path = Path(path)
        key, st, row = self._fresh_row(path)
        if row is not None:
            return self._record_of(path, row)
        try:
            record, image = probe_file(path)
        except ImageReadError as exc:
            self._remember(key, st, exc.reason)
            raise
        self._remember(key, st, record)
        if image is not None:
            self._remember_decoded(record.content_hash, image)
        return record

    def inspect_many(self, paths: Sequence[str | Path],
                     should_stop: StopCheck | None = None) -> Iterator[FileRecord | ImageReadError]:
        """`inspect` of each path in order, yielding the record or the error; worker processes do the
        reading when there are enough files. `Cancelled` when ``should_stop()`` says stop."""
        paths = [Path(p) for p in paths]
        with self._batch():
            if not parallel.worth_a_pool(len(paths)):
                for path in paths:
                    parallel.check_stop(should_stop)
                    yield self._inspect_or_error(path)
                return
            for start in range(0, len(paths), _BLOCK):
                block = paths[start : start + _BLOCK]
                looked = [self._fresh_row(p) for p in block]
                missing = [p for p, (_, _, row) in zip(block, looked) if row is None]
                probed = parallel.ordered(_probe_task, missing, should_stop)
                for path, (key, st, row) in zip(block, looked):
                    if row is not None:
                        yield self._error_or_record(path, row)
                        continue
                    status, value = next(probed)
                    self._remember(key, st, value if status == "ok" else str(value))
                    yield value if status == "ok" else ImageReadError(path, str(value))  # type: ignore[misc]

    def _inspect_or_error(self, path: Path) -> FileRecord | ImageReadError:
        try:
            return self.inspect(path)
        except ImageReadError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - one file's unforeseen failure must not end the whole folder
            return ImageReadError(path, f"cannot be read ({type(exc).__name__}: {exc})")

    def _error_or_record(self, path: Path, row: tuple) -> FileRecord | ImageReadError:
        try:
            return self._record_of(path, row)
        except ImageReadError as exc:
            return exc

    def _fresh_row(self, path: Path) -> tuple[str, os.stat_result | None, tuple | None]:
        """(index key, stat, the index row if it is still true of the file). A stat error is raised."""
        try:
            st = path.stat()
        except OSError as exc:
            raise ImageReadError(path, f"cannot be read ({exc.strerror or exc})") from None
        key = _index_key(path)
        row = self._lookup(key)
        if row and row[0] == st.st_size and row[1] == st.st_mtime_ns and row[2] == _SCHEMA_VERSION:
            return key, st, row
        return key, st, None

    @staticmethod
    def _record_of(path: Path, row: tuple) -> FileRecord:
        if row[6]:
            raise ImageReadError(path, row[6])
        meta = dataclasses.replace(_meta_from_json(row[4]), path=str(path))
        return FileRecord(meta=meta, content_hash=row[3], pixel_hash=row[5], raw=_raw_from_json(row[7]))

    def _remember(self, key: str, st: os.stat_result | None, result: FileRecord | str) -> None:
        """Keep an inspection (a record, or the reason a file cannot be read) in the index."""
        if isinstance(result, str) and "permission" in result:
            return  # permission problems may be fixed by the user at any moment: never remember them
        record = result if isinstance(result, FileRecord) else None
        self._store((
            key,
            st.st_size if st else None,
            st.st_mtime_ns if st else None,
            _SCHEMA_VERSION,
            record.content_hash if record else None,
            _meta_to_json(record.meta) if record else None,
            record.pixel_hash if record else None,
            None if record else result,
            _raw_to_json(record.raw) if record else None,
        ))

    def _lookup(self, key: str) -> tuple | None:
        pending = self._pending.get(key)
        if pending is not None:
            return pending[1:]
        try:
            with self._lock:
                return self._db.execute(
                    "SELECT size, mtime_ns, version, content_hash, meta, pixel_hash, error, raw FROM files"
                    " WHERE path=?", (key,),
                ).fetchone()
        except sqlite3.Error as exc:
            self._index_failed(exc)
            return None

    def _store(self, row: tuple) -> None:
        if self._batching:
            self._pending[row[0]] = row
            if len(self._pending) >= _BATCH_ROWS:
                self.flush()
            return
        try:
            with self._lock, self._db:
                self._db.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?)", row)
        except sqlite3.Error as exc:
            self._index_failed(exc)

    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """Index rows written in transactions of `_BATCH_ROWS` (one commit per file costs more than its row)."""
        self._batching += 1
        try:
            yield
        finally:
            self._batching -= 1
            if not self._batching:
                self.flush()

    def _index_failed(self, exc: sqlite3.Error) -> None:
        # Once per cache: the run goes on uncached rather than stopping for an index it can rebuild.
        if not getattr(self, "_index_failure_said", False):
            self._index_failure_said = True
            self._say(f"cache index {self.root / _INDEX_FILE} failed ({exc}); going on without it")

    # A just-decoded image is often preprocessed right after inspection: keep the last one.
    def _remember_decoded(self, chash: str, image: Image) -> None:
        self._last_decoded = (chash, image)

    # ------------------------------------------------------------------ arrays

    def array_path(self, chash: str, prep: Preprocessing, frame: int | None = None) -> Path:
        key = hashlib.blake2b(f"{prep.key()};f={frame}".encode(), digest_size=8).hexdigest()
        return self.arrays_dir / chash[:2] / f"{chash}_{key}.npy"

    def array(self, path: str | Path, prep: Preprocessing, frame: int | None = None,
              into: np.ndarray | None = None) -> np.ndarray:
        """Preprocessed (size, size) float32 array for a file: read from the cache (into ``into`` when given,
        a (size, size) float32 buffer), or in memory when it was just made (and written to the cache)."""
        record = self.inspect(path)
        target = self.array_path(record.content_hash, prep, frame)
        cached = self._cached(target, prep.size, path, into)
        if cached is not None:
            return cached
        last = getattr(self, "_last_decoded", None)
        image = last[1] if last and last[0] == record.content_hash else decode_record(path, record)
        arr = np.ascontiguousarray(preprocess(image, prep, frame), dtype=np.float32)
        try:
            st = self._save_atomic(target, arr)
        except OSError as exc:
            self._cannot_write(exc.strerror or str(exc))
            return arr
        self._store_digest(target.name, array_digest(arr), st.st_size, st.st_mtime_ns)
        return arr  # in memory already: mapping the file just written would fault every page in again

    def arrays(self, paths: Sequence[str | Path], prep: Preprocessing, should_stop: StopCheck | None = None,
               out: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """`array` of each path in order; the arrays not yet cached are made in worker processes when there
        are enough. With ``out`` (an (N, size, size) float32 stack), cached arrays are read straight into
        its rows. An unreadable file raises ImageReadError at its turn; `Cancelled` when ``should_stop()``
        says stop."""
        paths = [Path(p) for p in paths]
        row = (lambda i: out[i]) if out is not None else (lambda i: None)
        with self._batch():
            if not parallel.worth_a_pool(len(paths)):
                for i, path in enumerate(paths):
                    parallel.check_stop(should_stop)
                    yield self.array(path, prep, into=row(i))
                return
            for start in range(0, len(paths), _BLOCK):
                block = paths[start : start + _BLOCK]
                ready: list[tuple[np.ndarray | None, Path]] = []
                tasks = []
                for i, path in enumerate(block, start):
                    record = self.inspect(path)
                    target = self.array_path(record.content_hash, prep)
                    ready.append((self._cached(target, prep.size, path, row(i)), target))
                    if ready[-1][0] is None:
                        tasks.append(_ArrayTask(path, record, prep, target))
                made = parallel.ordered(_array_task, tasks, should_stop)
                for i, (path, (cached, target)) in enumerate(zip(block, ready), start):
                    if cached is not None:
                        yield cached
                        continue
                    status, value = next(made)
                    if status == "bad":
                        raise ImageReadError(path, str(value))
                    if status == "array":
                        arr, reason = value  # type: ignore[misc]
                        self._cannot_write(reason)
                        yield arr
                        continue
                    digest, size, mtime_ns = value  # type: ignore[misc]
                    self._store_digest(target.name, digest, size, mtime_ns)
                    # One read from the page cache, as before: a fresh map of a just-written file faults every page.
                    fresh = row(i) if out is not None else np.empty((prep.size, prep.size), dtype=np.float32)
                    yield _read_array(target, prep.size, fresh)

    def _cannot_write(self, reason: str) -> None:
        if not getattr(self, "_array_failure_said", False):
            self._array_failure_said = True
            self._say(f"cache folder {self.arrays_dir} cannot be written ({reason}); "
                      "going on without caching arrays")

    def _cached(self, target: Path, size: int, source: str | Path, into: np.ndarray | None = None) -> np.ndarray | None:
        """The cached array at ``target`` if there is one and it is what its index entry promises; a damaged,
        altered or unrecorded one is removed (made again, never trusted)."""
        try:
            st = target.stat()
        except OSError:
            return None
        cached = self._trusted(target, st, size, source, into)
        if cached is None:
            target.unlink(missing_ok=True)
        return cached

    def _trusted(self, target: Path, st: os.stat_result, size: int, source: str | Path,
                 into: np.ndarray | None = None) -> np.ndarray | None:
        """The cached array at ``target`` if it is what its index entry promises, else None.

        Its values are not range-checked: the entry's digest was taken of an array `preprocess` made
        (clipped to [0, 1]), and a file that still matches it, by stat or by hash, is that array.
        """
        entry = self._array_entry(target.name)
        if entry is None:
            return None  # written before digests were kept, or its entry was lost: made again
        try:
            cached = _read_array(target, size, into)
        except (ValueError, OSError):
            return None
        digest, known_size, known_mtime, checked_ns = entry
        unchanged = (st.st_size, st.st_mtime_ns) == (known_size, known_mtime) and known_mtime < checked_ns - RACY_NS
        if unchanged and self.verify_arrays == "changed":
            return cached
        if array_digest(cached) != digest:
            self._say(f"cached array {target.name} does not match its index entry (changed on disk); "
                      f"made again from {source}")
            return None
        if not unchanged:
            self._store_digest(target.name, digest, st.st_size, st.st_mtime_ns)  # hashed now: trusted by stat
        return cached

    def _array_entry(self, name: str) -> tuple | None:
        pending = self._pending_arrays.get(name)
        if pending is not None:
            return pending[1:]
        try:
            with self._lock:
                return self._db.execute("SELECT digest, size, mtime_ns, checked_ns FROM arrays WHERE name=?",
                                        (name,)).fetchone()
        except sqlite3.Error as exc:
            self._index_failed(exc)
            return None

    def _store_digest(self, name: str, digest: str, size: int, mtime_ns: int) -> None:
        row = (name, digest, size, mtime_ns, time.time_ns())
        if self._batching:
            self._pending_arrays[name] = row
            if len(self._pending_arrays) >= _BATCH_ROWS:
                self.flush()
            return
        try:
            with self._lock, self._db:
                self._db.execute("INSERT OR REPLACE INTO arrays VALUES (?,?,?,?,?)", row)
        except sqlite3.Error as exc:
            self._index_failed(exc)

    @staticmethod
    def _save_atomic(target: Path, arr: np.ndarray) -> os.stat_result:
        """Write ``arr`` as ``target`` (a new file renamed into place) and return the written file's stat."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".npy.tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.ascontiguousarray(arr, dtype=np.float32))
                st = os.fstat(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return st

    def clear(self) -> None:
        """Forget everything (index and arrays)."""
        import shutil

        with self._lock, self._db:
            self._pending.clear()
            self._pending_arrays.clear()
            self._db.execute("DELETE FROM files")
            self._db.execute("DELETE FROM arrays")
        shutil.rmtree(self.arrays_dir, ignore_errors=True)
        self.arrays_dir.mkdir(parents=True, exist_ok=True)


def array_digest(arr: np.ndarray) -> str:
    """Hash of an array's bytes (`hashing.digest`): about 10 µs for a 128 x 128 input, 130 µs at 512 px."""
    return digest(np.ascontiguousarray(arr).data)


def _read_array(target: Path, size: int, into: np.ndarray | None = None) -> np.ndarray:
    """A cached ``.npy`` as a (size, size) float32 array: read with one read into ``into`` (a (size, size)
    float32 buffer, e.g. a row of the caller's stack), else memory-mapped (a large set kept as arrays stays out of the process's memory).

    Reading into the stack copies each byte once from the page cache; a memory map copied into the
    stack cost 1.4x as much at 512 px. ValueError for any other file.
    """
    if into is None:
        mapped = np.load(target, mmap_mode="r")
        if mapped.shape != (size, size) or mapped.dtype != np.float32:
            raise ValueError(f"not a ({size}, {size}) float32 array")
        return mapped
    expected = _npy_header(size)
    with open(target, "rb") as fh:
        if fh.read(len(expected)) != expected:  # not the header this numpy writes: parse it
            fh.seek(0)
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(fh)
            if shape != (size, size) or fortran or dtype != np.dtype("<f4"):
                raise ValueError(f"not a ({size}, {size}) float32 array")
        if fh.readinto(memoryview(into).cast("B")) != into.nbytes or fh.read(1):
            raise ValueError("wrong length")
    return into


@functools.lru_cache(maxsize=8)
def _npy_header(size: int) -> bytes:
    """The ``.npy`` header `np.save` writes for a (size, size) float32 array: matched as bytes, not parsed
    (parsing it costs more than a 128 x 128 array's read)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": (size, size)})
    return buffer.getvalue()


class NoCache(Cache):
    """Same interface, nothing kept: every call reads and decodes again (for cold-load benchmarks)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.gettempdir())
        self.notes = []
        self._lock = threading.Lock()

    def close(self) -> None:
        pass

    def inspect(self, path: str | Path) -> FileRecord:
        record, image = probe_file(path)
        if image is not None:
            self._remember_decoded(record.content_hash, image)
        return record

    def inspect_many(self, paths: Sequence[str | Path],
                     should_stop: StopCheck | None = None) -> Iterator[FileRecord | ImageReadError]:
        for path in paths:
            parallel.check_stop(should_stop)
            yield self._inspect_or_error(Path(path))

    def array(self, path: str | Path, prep: Preprocessing, frame: int | None = None) -> np.ndarray:
        record = self.inspect(path)
        last = getattr(self, "_last_decoded", None)
        image = last[1] if last and last[0] == record.content_hash else decode_record(path, record)
        return preprocess(image, prep, frame)

    def arrays(self, paths: Sequence[str | Path], prep: Preprocessing, should_stop: StopCheck | None = None,
               out: np.ndarray | None = None) -> Iterator[np.ndarray]:
        for path in paths:  # nothing is cached: the caller copies each new array into ``out``
            parallel.check_stop(should_stop)
            yield self.array(path, prep)
