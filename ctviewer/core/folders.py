"""Output folders written as one set: staged next to their place, swapped in whole.

`output_set` is the one way ctviewer writes a folder of outputs (a model bundle, an export,
cross-validation's predictions, metrics and folds). A reader of ``target`` sees the old set
or the new one, never a mix and never nothing:
on Linux the staged folder and the old one are exchanged in one ``renameat2`` call; where
that is not available, two renames leave a gap of microseconds, and a run killed inside it
is repaired the next time (`clean_leftovers` puts the old folder back).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

_log = logging.getLogger("ctviewer.folders")
# Leftovers younger than this may belong to a save that is running right now.
LEFTOVER_AGE_S = 600.0
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def staging_dir(target: Path) -> Path:
    """A new empty folder next to ``target`` (same file system), with the umask's usual mode."""
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        candidate = target.parent / f".{target.name}.tmp-{secrets.token_hex(4)}"
        try:
            # os.mkdir applies the umask (tempfile.mkdtemp would force 0700 on the bundle).
            candidate.mkdir(mode=0o777)
        except FileExistsError:
            continue
        return candidate


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the platform cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # an old kernel or a file system without exchange
    raise OSError(code, os.strerror(code), str(b))


def keep_foreign_entries(old: Path, staged: Path, own: Iterable[str]) -> None:
    """Carry everything in ``old`` that ctviewer did not write (names not in ``own``) into ``staged``.

    Hard links where the file system allows them, so nothing is copied and nothing lost.
    """
    own = set(own)
    for entry in old.iterdir():
        if entry.name in own or (staged / entry.name).exists():
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, staged / entry.name, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(entry), str(staged / entry.name))


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)
    return dst


def swap_in(staged: Path, target: Path) -> None:
    """Put the folder ``staged`` at ``target``, replacing what is there, with no moment without ``target``."""
    if not target.exists():
        os.rename(staged, target)
        return
    if _exchange(staged, target):
        shutil.rmtree(staged, ignore_errors=True)  # it now holds the old set
        return
    old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
    os.rename(target, old)
    os.rename(staged, target)
    shutil.rmtree(old, ignore_errors=True)


def clean_leftovers(target: Path, max_age_s: float = LEFTOVER_AGE_S) -> list[str]:
    """Remove staging folders of ``target`` left by killed runs; put the old set back if a kill left none.

    Returns what was done, one line each (also logged).
    """
    said: list[str] = []
    parent = target.parent
    if not parent.is_dir():
        return said
    now = time.time()
    leftovers = []
    for entry in parent.iterdir():
        if entry.name.startswith((f".{target.name}.tmp-", f".{target.name}.old-")) and entry.is_dir():
            try:
                age = now - entry.stat().st_mtime
            except OSError:
                continue
            if age >= max_age_s:
                leftovers.append(entry)
    olds = sorted((e for e in leftovers if ".old-" in e.name), key=lambda e: e.stat().st_mtime)
    if not target.exists() and olds:
        restored = olds.pop()
        os.rename(restored, target)
        said.append(f"{target} was missing after an interrupted replacement: the previous one is restored")
    for entry in leftovers:
        if entry.exists():
            shutil.rmtree(entry, ignore_errors=True)
            said.append(f"removed {entry.name}, left next to {target.name} by an interrupted run")
    for line in said:
        _log.warning(line)
    return said


@contextmanager
def output_set(folder: str | os.PathLike[str], own: Iterable[str] | None) -> Iterator[Path]:
    """Write a set of output files as one: into a staging folder that then replaces ``folder`` whole.

    Yields the staging folder; write every file of the set into it. On a clean exit the set
    is swapped in (`swap_in`), so a reader sees the old set or the new one, never a new
    ``predictions.csv`` beside an old ``metrics.json``. Entries of an existing ``folder``
    named in ``own`` (what the set consists of) go; anything else there is kept. ``own``
    None: the new set replaces the whole folder. If the body raises, ``folder`` is untouched.
    """
    target = Path(folder)
    clean_leftovers(target)
    staged = staging_dir(target)
    try:
        yield staged
        if own is not None and target.is_dir():
            keep_foreign_entries(target, staged, own)
        swap_in(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
