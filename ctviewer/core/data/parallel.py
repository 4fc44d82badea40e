"""Per-file work in worker processes, in order, where a folder is large enough for that to pay.

Workers are started with ``forkserver`` (``spawn`` where there is none), never ``fork``: the
parent may hold TensorFlow or Qt threads. They import only this module's needs (numpy,
pydicom, Pillow and `ctviewer.core.data`), once per process; the pool is kept for the
process's life, so only the first large load pays its start.

Workers never import the ``__main__`` module: spawn and forkserver would import the user's
script in each worker, and run it again where it has no ``if __name__ == "__main__":``
guard. The work needs nothing from it (tasks are functions of the core).

The main process is one of the workers: when a chunk's turn comes and no worker has
taken it yet, the main process does it itself, so a slow pool start never stalls a load
and few files never wait on one. ``CTVIEWER_DECODE_WORKERS=0`` turns the pool off.

A worker exits when the process that started it is gone (`core.child_process`): an app killed by a
signal leaves no idle worker or fork server behind.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.spawn
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from ctviewer.core.child_process import exit_with_the_caller
from ctviewer.core.errors import Cancelled
from ctviewer.core.events import StopCheck, stop_requested

T = TypeVar("T")
R = TypeVar("R")

# Below this many files a pool does not pay for itself (a process start costs as much as
# decoding some tens of CT slices).
MIN_FILES = 32
CHUNK = 8  # files per task: few enough to keep both processes busy to the end
MAIN_HELPS = True  # tests turn it off to make the workers do every chunk

_pool: ProcessPoolExecutor | None = None
_pool_size = 0
_starting = threading.Lock()


def worker_count() -> int:
    """Worker processes besides the main one: ``CTVIEWER_DECODE_WORKERS``, else one per further CPU.

    On an idle 2-core machine one worker made a cold load of the SIIM folder 1.35-1.5x faster
    in wall time (0.25 -> 0.38x the plain loop at 512 px, 0.46 -> 0.62x at 1024); while other jobs
    fill the cores it gains nothing and costs CPU (BENCHMARKS.md), so ``CTVIEWER_DECODE_WORKERS=0``
    turns it off. A frozen (PyInstaller) app works serially: its executable is the app, not a
    Python that could run the fork server.
    """
    env = os.environ.get("CTVIEWER_DECODE_WORKERS", "").strip()
    if env.isdigit():
        return int(env)
    if getattr(sys, "frozen", False):
        return 0
    return max(usable_cpus() - 1, 0)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_stop(should_stop: StopCheck | None) -> None:
    if stop_requested(should_stop):
        raise Cancelled("loading cancelled")


def worth_a_pool(n: int) -> bool:
    return n >= MIN_FILES and worker_count() > 0


def ordered(fn: Callable[[T], R], items: Sequence[T], should_stop: StopCheck | None = None) -> Iterator[R]:
    """``fn(item)`` for each item, in order; in worker processes when `worth_a_pool`.

    ``fn`` must be a module-level function of the core whose result pickles, and it should
    return failures rather than raise them. `Cancelled` when ``should_stop()`` says stop
    (checked before each result); chunks not yet started are dropped.
    """
    if not worth_a_pool(len(items)):
        for item in items:
            if stop_requested(should_stop):
                raise Cancelled("loading cancelled")
            yield fn(item)
        return
    chunks = [list(items[i : i + CHUNK]) for i in range(0, len(items), CHUNK)]
    try:
        pool = _get_pool()
        with without_main():  # the executor starts its processes inside submit
            futures: list[Future | None] = [pool.submit(_run_chunk, fn, chunk) for chunk in chunks]
    except (BrokenProcessPool, OSError, RuntimeError):
        _drop_pool()
        futures = [None] * len(chunks)
    done: dict[int, list[R]] = {}
    try:
        for i, chunk in enumerate(chunks):
            while i not in done:
                if stop_requested(should_stop):
                    raise Cancelled("loading cancelled")
                future = futures[i]
                if future is None or (MAIN_HELPS and future.cancel()):
                    done[i] = _run_chunk(fn, chunk, should_stop)
                elif future.done() or not MAIN_HELPS or not _help(fn, chunks, futures, done, i, should_stop):
                    done[i] = _result(future, fn, chunk, should_stop)
            for result in done.pop(i):
                if stop_requested(should_stop):
                    raise Cancelled("loading cancelled")
                yield result
    finally:
        for future in futures:
            if future is not None:
                future.cancel()


def _help(fn: Callable[[T], R], chunks: list[list[T]], futures: list[Future | None], done: dict[int, list[R]],
          waiting: int, should_stop: StopCheck | None) -> bool:
    """While chunk ``waiting`` is in a worker, do the next chunk no worker has taken; False if none is left."""
    for j in range(waiting + 1, len(chunks)):
        future = futures[j]
        if j not in done and future is not None and future.cancel():
            done[j] = _run_chunk(fn, chunks[j], should_stop)
            return True
    return False


def _result(future: Future, fn: Callable[[T], R], chunk: list[T], should_stop: StopCheck | None) -> list[R]:
    try:
        return future.result()
    except BrokenProcessPool:
        # A worker died (killed, out of memory): this chunk is done here, later loads start a new pool.
        _drop_pool()
        return _run_chunk(fn, chunk, should_stop)


def _run_chunk(fn: Callable[[T], R], chunk: list[T], should_stop: StopCheck | None = None) -> list[R]:
    results = []
    for item in chunk:
        if stop_requested(should_stop):
            raise Cancelled("loading cancelled")
        results.append(fn(item))
    return results


def _get_pool() -> ProcessPoolExecutor:
    global _pool, _pool_size
    size = worker_count()
    if _pool is None or _pool_size != size:
        _drop_pool()
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        context: Any = multiprocessing.get_context(method)
        if method == "forkserver":
            # Imported once in the server and inherited by every worker it forks.
            context.set_forkserver_preload(["ctviewer.core.data.cache", "pydicom", "PIL.Image"])
        # The watch: a caller killed by a signal would otherwise leave its workers (and their fork server) behind.
        _pool = ProcessPoolExecutor(max_workers=size, mp_context=context, initializer=exit_with_the_caller)
        _pool_size = size
    return _pool


@contextlib.contextmanager
def without_main() -> Iterator[None]:
    """Processes started meanwhile are not told to import ``__main__`` (see the module's note)."""
    real = multiprocessing.spawn.get_preparation_data

    def preparation(name: str) -> dict[str, Any]:
        data = real(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    with _starting:
        multiprocessing.spawn.get_preparation_data = preparation  # type: ignore[assignment]
        try:
            yield
        finally:
            multiprocessing.spawn.get_preparation_data = real  # type: ignore[assignment]


def _drop_pool() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None
