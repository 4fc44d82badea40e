"""On-disk cache: file inspection results and preprocessed model inputs.

Two levels, so a second load of a folder costs a ``stat`` and a memory map per file:

* an index (SQLite) from (path, size, mtime) to the file's content hash, its metadata
  and pixel hash, or the reason it could not be read;
* preprocessed arrays as ``.npy`` files named by content hash + preprocessing key,
  opened memory-mapped, so a dataset larger than RAM streams from disk.

Keys are content hashes, so a moved or copied file reuses its arrays, and an edited
file (new size or mtime) is read again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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
        self.root = Path(root) if root is not None else default_cache_dir()
        self.arrays_dir = self.root / "arrays"
        self.arrays_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / "index.sqlite3", check_same_thread=False, timeout=30)
        # The cache can always be rebuilt, so trade durability for speed: no fsync per file.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        with self._lock, self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
                " version INTEGER, content_hash TEXT, meta TEXT, pixel_hash TEXT, error TEXT)"
            )

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
        key = str(path.resolve())
        with self._lock:
            row = self._db.execute(
                "SELECT size, mtime_ns, version, content_hash, meta, pixel_hash, error FROM files WHERE path=?",
                (key,),
            ).fetchone()
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
            with self._lock, self._db:
                self._db.execute(
                    "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?)",
                    (
                        key,
                        st.st_size,
                        st.st_mtime_ns,
                        _SCHEMA_VERSION,
                        record.content_hash if record else None,
                        _meta_to_json(record.meta) if record else None,
                        record.pixel_hash if record else None,
                        error,
                    ),
                )
        if record is None:
            raise ImageReadError(path, error or "unreadable")
        if image is not None:
            self._remember_decoded(record.content_hash, image)
        return record

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
            try:
                return np.load(target, mmap_mode="r")
            except (ValueError, OSError):
                target.unlink(missing_ok=True)  # a damaged entry is rebuilt, never trusted
        last = getattr(self, "_last_decoded", None)
        image = last[1] if last and last[0] == record.content_hash else load(path)
        arr = preprocess(image, prep, frame)
        self._save_atomic(target, arr)
        return np.load(target, mmap_mode="r")

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
        shutil.rmtree(self.arrays_dir, ignore_errors=True)
        self.arrays_dir.mkdir(parents=True, exist_ok=True)


class NoCache(Cache):
    """Same interface, nothing kept: every call decodes again (for cold-load benchmarks)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.gettempdir())
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
