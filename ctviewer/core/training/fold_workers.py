"""The folds of a cross-validation trained side by side, in worker processes of one CPU thread each.

Why: one training step of the default recipe (128 px, batch 16) keeps a 2-core CPU only ~65 %
busy, because TensorFlow's threads wait on each other inside each small op. Two single-threaded
processes, each training its own fold, did the same epochs 1.6x sooner on the 2-core machine of
BENCHMARKS.md ("Folds side by side"). So `cross_validate` (``ctviewer cv``, ``train``, Start
training) gives each of up to `worker_plan` processes a fixed list of folds.

What stays as it was:

* Each worker trains its folds one after the other on one compiled model (`CompiledModelPool`),
  and the folds are dealt to workers by number (fold k to worker k mod W), so the same data,
  config and machine give the same model, every run.
* The caller sees the folds in order: the events of fold k (batches, epochs) are passed on when
  fold k is the current one; those of a fold that ran ahead are held and passed on when its turn comes.
* Cancel reaches the workers at once (a shared flag their training polls after every batch).
* A worker that dies (killed, out of memory) makes `FoldWorkerDied`; the caller trains the rest
  of the folds itself.
* A caller that dies (killed, crashed: no ``close``) takes its workers with it: each watches the
  caller's liveness (`core.child_process`) and exits, so no orphan keeps the cores busy with folds
  nobody waits for.

Not used with a GPU or an explicit ``tf.distribute`` strategy (the devices are the parallelism
there), for the texture recipe (no epochs), in a frozen app, on one CPU, for work too small to
pay the workers' start (about 10 s: TensorFlow's import and a trace), or when
``CTVIEWER_FOLD_WORKERS=0``; ``CTVIEWER_FOLD_WORKERS=N`` asks for N workers.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import queue
import sys
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ctviewer.core.child_process import exit_with_the_caller
from ctviewer.core.data.dataset import Dataset
from ctviewer.core.data.parallel import usable_cpus, without_main
from ctviewer.core.errors import Cancelled, TrainingError
from ctviewer.core.events import EventCallback, StopCheck, emit, stop_requested
from ctviewer.core.model.config import TrainConfig
from ctviewer.core.training.results import TrainedModel

# Image-epochs (training images x epochs, summed over the folds, at 128 px) below which the workers'
# start costs more than they save. The SIIM cv is 5 x 80 x 60 = 24 000.
MIN_WORK = 6000
# Resident memory of one worker training the default recipe, at 128 px and per extra 128 px-equivalent
# of input (measured peaks: ~1.5 GiB at 128 px, 5.9 GiB at 512 px, batch 16).
_BASE_BYTES = 1.5 * 2**30
_PER_AREA_BYTES = 0.3 * 2**30
_POLL_S = 0.1


class FoldWorkerDied(RuntimeError):
    """A fold worker process ended without giving its result (killed, out of memory)."""


@dataclass(frozen=True)
class FoldTask:
    """Fold ``k``: train ``config`` on ``train``, then predict ``test`` (images read from the cache at ``cache_root``)."""

    k: int
    train: Dataset
    test: Dataset
    config: TrainConfig
    cache_root: str
    stream: bool | None
    keep_model: bool


@dataclass
class FoldOutcome:
    """What a worker sends back: the fold's model without its Keras object, and its test probabilities."""

    k: int
    trained: TrainedModel  # ``model`` is None: rebuilt from ``variables`` when it is kept
    probs: np.ndarray
    variables: list[np.ndarray] | None


def _available_memory() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def worker_plan(config: TrainConfig, train_sizes: list[int], strategy: Any = None) -> tuple[int, int]:
    """(workers, CPU threads per worker) for these folds; (0, 0): train them in this process."""
    folds = len(train_sizes)
    env = os.environ.get("CTVIEWER_FOLD_WORKERS", "").strip()
    cpus = usable_cpus()
    if env.isdigit():
        workers = min(int(env), folds)
        return (workers, _threads_each(cpus, workers)) if workers else (0, 0)
    from ctviewer.core.model.recipes import before_issue_15

    if (folds < 2 or cpus < 2 or strategy is not None or config.model == "texture" or before_issue_15()
            or getattr(sys, "frozen", False)):
        return 0, 0
    area = (config.input_size / 128.0) ** 2
    if sum(train_sizes) * config.epochs * area < MIN_WORK or _has_gpu():
        return 0, 0
    memory = _available_memory()
    # Never so many that they push the machine into swap.
    most = folds if memory is None else min(folds, int(memory // (_BASE_BYTES + _PER_AREA_BYTES * area)))
    workers = balanced_workers(folds, cpus, most)
    return (workers, _threads_each(cpus, workers)) if workers >= 2 else (0, 0)


def balanced_workers(folds: int, cpus: int, most: int) -> int:
    """How many workers share ``folds`` out so that the CPUs stay full to the last fold.

    Measured on the 2-core machine (BENCHMARKS.md, "Folds side by side"): single-threaded workers
    fill the cores only from one more worker than CPUs (2 workers: 0.89 epochs/s in all; 3: 1.33;
    5: 1.37), since each waits between its small ops. So a last round of fewer than ``cpus + 1``
    folds runs at a fraction of the speed: 5 folds on 3 workers spent half their time with only 2
    left. The answer is the fewest workers (each traces its model once, ~10 CPU-s, and holds ~1.5 GiB)
    from ``cpus + 1`` up whose last round is full or keeps ``cpus + 1`` busy; else ``cpus + 1``.
    """
    floor = min(folds, cpus + 1, most)
    for workers in range(floor, min(folds, most) + 1):
        last = folds % workers
        if last == 0 or last >= cpus + 1:
            return workers
    return floor


def _threads_each(cpus: int, workers: int) -> int:
    return max(1, -(-cpus // workers))  # rounded up: 5 workers on 8 CPUs get 2 threads each, none left idle


def _context() -> Any:
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


class FoldWorkers:
    """Worker processes training fixed lists of folds; `result(k)` waits for fold k, passing its events on."""

    def __init__(self, workers: int, threads: int) -> None:
        """Start the workers now (each imports TensorFlow while the caller readies the images); `submit`
        gives them their folds.

        (Tracing each worker's model on blank images meanwhile was tried: it cost ~10 CPU-s and saved ~4.)
        """
        context = _context()
        self._messages = context.Queue()
        self._stop = context.Event()
        self._inboxes = [context.Queue() for _ in range(workers)]
        self._held: dict[int, list[Any]] = {}
        self._finished: dict[int, tuple[str, Any]] = {}
        self._worker_of: dict[int, int] = {}
        with without_main():
            self._processes = [
                context.Process(target=_worker_main, args=(inbox, self._messages, self._stop, threads),
                                name=f"ctviewer-fold-worker-{w}", daemon=True)
                for w, inbox in enumerate(self._inboxes)
            ]
            for process in self._processes:
                process.start()

    @property
    def workers(self) -> int:
        return len(self._processes)

    def submit(self, tasks: list[FoldTask]) -> None:
        """Deal the folds out by number (the i-th task to worker i mod W), each worker's in order."""
        for i, task in enumerate(tasks):
            self._worker_of[task.k] = i % len(self._inboxes)
            self._held[task.k] = []
            self._inboxes[i % len(self._inboxes)].put(task)
        for inbox in self._inboxes:
            inbox.put(None)

    def result(self, k: int, on_event: EventCallback | None, should_stop: StopCheck | None) -> FoldOutcome:
        """Fold ``k``'s outcome; its events (and any held for it) go to ``on_event`` meanwhile.

        Raises what the fold raised in its worker (`Cancelled`, `TrainingError`, ...), or
        `FoldWorkerDied`.
        """
        for event in self._held.pop(k, []):
            emit(on_event, event)
        while k not in self._finished:
            if stop_requested(should_stop):
                self._stop.set()
            try:
                kind, fold, payload = self._messages.get(timeout=_POLL_S)
            except queue.Empty:
                process = self._processes[self._worker_of[k]]
                if not process.is_alive() and k not in self._finished:
                    self._drain_now(k, on_event)
                    if k not in self._finished:
                        raise FoldWorkerDied(f"the worker training fold {k + 1} ended (exit code {process.exitcode}) "
                                             "without its result; the machine may be out of memory") from None
                continue
            self._take(kind, fold, payload, k, on_event)
        kind, payload = self._finished.pop(k)
        if kind == "failed":
            raise payload
        return payload

    def _drain_now(self, current: int, on_event: EventCallback | None) -> None:
        while True:
            try:
                kind, fold, payload = self._messages.get(timeout=_POLL_S)
            except queue.Empty:
                return
            self._take(kind, fold, payload, current, on_event)

    def _take(self, kind: str, fold: int, payload: Any, current: int, on_event: EventCallback | None) -> None:
        if kind == "event":
            if fold == current:
                emit(on_event, payload)
            else:
                self._held.setdefault(fold, []).append(payload)
        else:
            self._finished[fold] = (kind, payload)

    def close(self) -> None:
        """Stop the workers (a fold in training stops within a batch) and wait for them to end."""
        self._stop.set()
        for inbox in self._inboxes:  # a worker still waiting for its folds gets none
            inbox.put(None)
        for process in self._processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        for channel in (self._messages, *self._inboxes):
            channel.close()


# ----- in the worker process -----

def _worker_main(inbox: Any, messages: Any, stop: Any, threads: int) -> None:
    exit_with_the_caller()
    os.environ["CTVIEWER_DECODE_WORKERS"] = "0"  # a daemonic process cannot start a decode pool
    with contextlib.suppress(AttributeError, OSError):
        # Below the caller and the GUI, which stay responsive while the folds train.
        os.nice(5)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import ctviewer.core.model.recipes  # noqa: F401 - Keras and the layers, imported before the first fold comes
    from ctviewer.core.training.reuse import CompiledModelPool

    models = CompiledModelPool()
    while (task := inbox.get()) is not None:
        try:
            outcome = _train_fold(task, models, messages, stop)
            messages.put(("done", task.k, outcome))
        except BaseException as exc:  # sent to the caller, which raises it as its own
            messages.put(("failed", task.k, _sendable(exc)))
            if isinstance(exc, Cancelled | KeyboardInterrupt):
                return


def _train_fold(task: FoldTask, models: Any, messages: Any, stop: Any) -> FoldOutcome:
    from ctviewer.core.data.cache import Cache
    from ctviewer.core.model.inference import predict
    from ctviewer.core.training.fit import fit

    def send(event: Any) -> None:
        messages.put(("event", task.k, event))

    def should_stop() -> bool:
        return stop.is_set()

    cache = Cache(task.cache_root)
    try:
        trained = fit(task.train, task.config, send, should_stop, cache=cache, stream=task.stream, fold=task.k,
                      models=models)
        if trained.cancelled:
            return FoldOutcome(task.k, replace(trained, model=None), np.zeros(0), None)
        probs = predict(trained, task.test, batch_size=task.config.batch_size, cache=cache).probs
        variables = [np.asarray(v.value) for v in trained.model.variables] if task.keep_model else None
        return FoldOutcome(task.k, replace(trained, model=None), np.asarray(probs), variables)
    finally:
        cache.close()


def _sendable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (the queue), else a `TrainingError` with its message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any exception type may fail to pickle
        return TrainingError(f"fold worker: {type(exc).__name__}: {exc}")


def rebuild_model(config: TrainConfig, variables: list[np.ndarray]) -> Any:
    """A model of ``config`` holding the worker's trained ``variables``."""
    from ctviewer.core.model.recipes import build_model
    from ctviewer.core.training.reuse import assign_variables

    model = build_model(config)
    try:
        assign_variables(model, variables)
    except ValueError:
        raise TrainingError("a fold worker's model does not match this process's build of it") from None
    return model
