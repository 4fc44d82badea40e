"""On-disk cache: file inspection results and preprocessed model inputs.

Two levels, so a second load of a folder costs a ``stat`` and a memory map per file:

* an index (SQLite) from (path, size, mtime) to the file's content hash, its metadata
  and pixel hash, or the reason it could not be read;
* preprocessed arrays as ``.npy`` files named by content hash + preprocessing key,
  opened memory-mapped, so a dataset larger than RAM streams from disk.

Keys are content hashes, so a moved or copied file reuses its arrays, and an edited
file (new size or mtime) is read again.

The cache can always be rebuilt, so it never stops a run: a damaged index is rebuilt, a
folder that cannot be written is replaced by a temporary cache for the run (both said in
`Cache.notes` and logged as a warning), and a cached array that is not what its entry
promises is made again from its file: the shape, the type, values in [0, 1], and its
content, by the hash of its bytes that the index keeps (``arrays`` table) from when it was
written. An array without such an entry (older caches, a lost index) is made again too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctviewer.core.data.imaging import Image, ImageMeta, Preprocessing, load, preprocess
from ctviewer.core.errors import ImageReadError

_SCHEMA_VERSION = 1
_INDEX_FILE = "index.sqlite3"
_log = logging.getLogger("ctviewer.cache")


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


def content_hash(path: str | Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pixel_hash(image: Image) -> str:
    """Hash of the decoded pixels: equal for the same image in another container or file name."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(image.pixels.shape).encode())
    h.update(np.ascontiguousarray(image.pixels, dtype=np.float32).tobytes())
    return h.hexdigest()


def _meta_to_json(meta: ImageMeta) -> str:
    return json.dumps(dataclasses.asdict(meta))


def _meta_from_json(text: str) -> ImageMeta:
    data = json.loads(text)
    if data.get("pixel_spacing") is not None:
        data["pixel_spacing"] = tuple(data["pixel_spacing"])
    return ImageMeta(**data)


class Cache:
    """Inspection index + preprocessed-array store under one folder. Thread-safe."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.notes: list[str] = []
        self._lock = threading.Lock()
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
            with db:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
                    " version INTEGER, content_hash TEXT, meta TEXT, pixel_hash TEXT, error TEXT)"
                )
                # The hash of each cached array's bytes, by its file name: checked on every read.
                db.execute("CREATE TABLE IF NOT EXISTS arrays (name TEXT PRIMARY KEY, digest TEXT)")
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ inspection

    def inspect(self, path: str | Path) -> FileRecord:
        """Metadata and hashes of an image file, decoded once and then served from the index.

        Raises ImageReadError (also cached) for a file that is not a readable image.
        """
        path = Path(path)
        try:
            st = path.stat()
        except OSError as exc:
            raise ImageReadError(path, f"cannot be read ({exc.strerror or exc})") from None
        key = _index_key(path)
        row = self._lookup(key)
        if row and row[0] == st.st_size and row[1] == st.st_mtime_ns and row[2] == _SCHEMA_VERSION:
            if row[6]:
                raise ImageReadError(path, row[6])
            meta = dataclasses.replace(_meta_from_json(row[4]), path=str(path))
            return FileRecord(meta=meta, content_hash=row[3], pixel_hash=row[5])
        record, image, error = None, None, None
        try:
            image = load(path)
            record = FileRecord(image.meta, content_hash(path), pixel_hash(image))
        except ImageReadError as exc:
            error = exc.reason
        # Permission problems may be fixed by the user at any moment: never remember them.
        if error is None or "permission" not in error:
            self._store(
                (
                    key,
                    st.st_size,
                    st.st_mtime_ns,
                    _SCHEMA_VERSION,
                    record.content_hash if record else None,
                    _meta_to_json(record.meta) if record else None,
                    record.pixel_hash if record else None,
                    error,
                )
            )
        if record is None:
            raise ImageReadError(path, error or "unreadable")
        if image is not None:
            self._remember_decoded(record.content_hash, image)
        return record

    def _lookup(self, key: str) -> tuple | None:
        try:
            with self._lock:
                return self._db.execute(
                    "SELECT size, mtime_ns, version, content_hash, meta, pixel_hash, error FROM files WHERE path=?",
                    (key,),
                ).fetchone()
        except sqlite3.Error as exc:
            self._index_failed(exc)
            return None

    def _store(self, row: tuple) -> None:
        try:
            with self._lock, self._db:
                self._db.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?)", row)
        except sqlite3.Error as exc:
            self._index_failed(exc)

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

    def array(self, path: str | Path, prep: Preprocessing, frame: int | None = None) -> np.ndarray:
        """Preprocessed (size, size) float32 array for a file, memory-mapped from the cache."""
        record = self.inspect(path)
        target = self.array_path(record.content_hash, prep, frame)
        if target.exists():
            cached = self._trusted(target, prep.size, path)
            if cached is not None:
                return cached
            target.unlink(missing_ok=True)  # a damaged, altered or unrecorded entry is rebuilt, never trusted
        last = getattr(self, "_last_decoded", None)
        image = last[1] if last and last[0] == record.content_hash else load(path)
        arr = np.ascontiguousarray(preprocess(image, prep, frame), dtype=np.float32)
        try:
            self._save_atomic(target, arr)
        except OSError as exc:
            if not getattr(self, "_array_failure_said", False):
                self._array_failure_said = True
                self._say(f"cache folder {self.arrays_dir} cannot be written ({exc.strerror or exc}); "
                          "going on without caching arrays")
            return arr
        self._store_digest(target.name, array_digest(arr))
        return np.load(target, mmap_mode="r")

    def _trusted(self, target: Path, size: int, source: str | Path) -> np.ndarray | None:
        """The cached array at ``target`` if it is what its index entry promises, else None."""
        try:
            cached = np.load(target, mmap_mode="r")
        except (ValueError, OSError):
            return None
        if not _is_model_input(cached, size):
            return None
        expected = self._digest(target.name)
        if expected is None:
            return None  # written before digests were kept, or its entry was lost: made again
        if array_digest(cached) != expected:
            self._say(f"cached array {target.name} does not match its index entry (changed on disk); "
                      f"made again from {source}")
            return None
        return cached

    def _digest(self, name: str) -> str | None:
        try:
            with self._lock:
                row = self._db.execute("SELECT digest FROM arrays WHERE name=?", (name,)).fetchone()
        except sqlite3.Error as exc:
            self._index_failed(exc)
            return None
        return row[0] if row else None

    def _store_digest(self, name: str, digest: str) -> None:
        try:
            with self._lock, self._db:
                self._db.execute("INSERT OR REPLACE INTO arrays VALUES (?,?)", (name, digest))
        except sqlite3.Error as exc:
            self._index_failed(exc)

    @staticmethod
    def _save_atomic(target: Path, arr: np.ndarray) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".npy.tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.ascontiguousarray(arr, dtype=np.float32))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def clear(self) -> None:
        """Forget everything (index and arrays)."""
        import shutil

        with self._lock, self._db:
            self._db.execute("DELETE FROM files")
            self._db.execute("DELETE FROM arrays")
        shutil.rmtree(self.arrays_dir, ignore_errors=True)
        self.arrays_dir.mkdir(parents=True, exist_ok=True)


def array_digest(arr: np.ndarray) -> str:
    """Hash of an array's bytes (blake2b, 128 bits): about 50 µs for a 128 x 128 input."""
    return hashlib.blake2b(np.ascontiguousarray(arr).data, digest_size=16).hexdigest()


def _is_model_input(arr: np.ndarray, size: int) -> bool:
    """What every cached array must be: (size, size) float32 values in [0, 1]."""
    if arr.shape != (size, size) or arr.dtype != np.float32:
        return False
    return bool(np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0)


class NoCache(Cache):
    """Same interface, nothing kept: every call decodes again (for cold-load benchmarks)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.gettempdir())
        self.notes = []
        self._lock = threading.Lock()

    def close(self) -> None:
        pass

    def inspect(self, path: str | Path) -> FileRecord:
        image = load(path)
        self._remember_decoded(content_hash(path), image)
        return FileRecord(image.meta, self._last_decoded[0], pixel_hash(image))

    def array(self, path: str | Path, prep: Preprocessing, frame: int | None = None) -> np.ndarray:
        last = getattr(self, "_last_decoded", None)
        image = last[1] if last and last[1].meta.path == str(path) else load(path)
        return preprocess(image, prep, frame)
