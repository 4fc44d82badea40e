"""Background work for the GUI: run a core function in a QThread and re-emit its events as signals.

A job is a plain function ``job(on_event, should_stop) -> result`` (the core's callback
contract). `Worker` runs it in its own thread; `WorkerRunner` owns start, cancel and
shutdown in one place. The `Worker` object stays in the GUI thread while its job runs in
another, so Qt queues every signal to the GUI thread, whatever the slot is. Workers never
touch widgets: they only emit signals.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from PySide6.QtCore import QObject, QRunnable, QThread, QThreadPool, Signal, Slot
from PySide6.QtGui import QImage

from ctviewer.core.errors import Cancelled, CTViewerError

Job = Callable[[Callable[[Any], None], Callable[[], bool]], Any]


@dataclass(frozen=True)
class WorkerError:
    """What the GUI shows for a failed job: a readable line plus the full details."""

    title: str
    message: str
    details: str
    user_error: bool  # a CTViewerError: the user can fix it; no traceback needed on the console

    @classmethod
    def from_exception(cls, title: str, exc: BaseException) -> WorkerError:
        details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        user_error = isinstance(exc, CTViewerError)
        if hasattr(exc, "details") and hasattr(exc, "user_error"):  # an EngineError: the engine's own story
            details, user_error = exc.details or details, bool(exc.user_error)
            return cls(title=title, message=str(exc), details=details, user_error=user_error)
        message = str(exc) if user_error else f"{type(exc).__name__}: {exc}"
        return cls(title=title, message=message or type(exc).__name__, details=details, user_error=user_error)


class Worker(QObject):
    """Runs one job in a worker thread; every core event becomes a signal.

    Signals carry the core's own event dataclasses (`ctviewer.core.events`), so slots
    read ``event.logs``, ``event.epoch`` etc. exactly as the CLI does.
    """

    epoch_ended = Signal(object)  # EpochEnded
    batch_ended = Signal(object)  # BatchEnded
    fold_started = Signal(object)  # FoldStarted
    message = Signal(object)  # Message
    progress = Signal(int, int, str)  # done, total, what
    image_read = Signal(str)  # path (ctviewer.core.events.ImageFound)
    finished = Signal(object)  # the job's result
    cancelled = Signal()
    failed = Signal(object)  # WorkerError

    _EVENT_SIGNALS: ClassVar[dict[str, str]] = {
        "EpochEnded": "epoch_ended",
        "BatchEnded": "batch_ended",
        "FoldStarted": "fold_started",
        "Message": "message",
    }

    def __init__(self, job: Job, title: str = "Task") -> None:
        super().__init__()
        self.title = title
        self._job = job
        self._stop = threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop at its next check (thread-safe)."""
        self._stop.set()

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def on_event(self, event: Any) -> None:
        """The ``on_event`` callback handed to core functions: dispatch by event type."""
        kind = type(event).__name__
        if kind == "Progress":
            self.progress.emit(int(event.done), int(event.total), str(event.what))
            return
        if kind == "ImageFound":
            self.image_read.emit(str(event.path))
            return
        name = self._EVENT_SIGNALS.get(kind)
        if name is not None:
            getattr(self, name).emit(event)

    def run(self) -> None:
        """Run the job (called in the worker thread); the outcome leaves as exactly one signal."""
        try:
            result = self._job(self.on_event, self.should_stop)
        except Cancelled:
            self.cancelled.emit()
        except BaseException as exc:  # noqa: BLE001 - everything must reach the GUI, never kill the thread
            self.failed.emit(WorkerError.from_exception(self.title, exc))
        else:
            self.finished.emit(result)


class _JobThread(QThread):
    """The thread a `Worker` runs in. The worker object itself stays in the GUI thread, so
    every slot connected to its signals (methods and lambdas alike) runs in the GUI thread."""

    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self.worker = worker
        self.setObjectName(worker.title)

    def run(self) -> None:
        self.worker.run()


class WorkerRunner(QObject):
    """Owns at most one running `Worker` of a kind: start, cancel, wait, clean up.

    ``idle`` is emitted once the thread has really ended, so a queued task can start then.
    Once closed (the window is closing) it starts nothing more: a late signal that would start
    a task must not leave a thread running when the process exits.
    """

    idle = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: _JobThread | None = None
        self._worker: Worker | None = None
        self._closed = False

    @property
    def worker(self) -> Worker | None:
        return self._worker

    def is_running(self) -> bool:
        """Busy from `start` until ``idle`` is emitted. A thread that has just ended still counts
        until its end reaches the GUI thread: buttons follow ``idle``, and a caller that saw "not
        running" while they were still greyed out would click a disabled button."""
        return self._thread is not None

    def start(self, worker: Worker) -> Worker:
        """Start ``worker`` in a fresh thread (connect its signals before calling this)."""
        if self._closed:
            return worker  # closing: never run (it emits nothing)
        if self.is_running():
            raise RuntimeError(f"{worker.title}: another task of this kind is still running")
        thread = _JobThread(worker)
        thread.finished.connect(self._on_thread_finished)
        self._thread, self._worker = thread, worker
        thread.start()
        return worker

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    def close(self) -> None:
        """Cancel the running task and refuse new ones from now on."""
        self._closed = True
        self.cancel()

    @property
    def closed(self) -> bool:
        return self._closed

    def wait(self, timeout_ms: int = 60_000) -> bool:
        """Block until the thread ends; True if it ended (or none was running)."""
        if self._thread is None:
            return True
        return bool(self._thread.wait(timeout_ms))

    def stop(self, timeout_ms: int = 60_000) -> bool:
        """Cancel the running task and wait until its thread has ended; new tasks may start then."""
        self.cancel()
        ok = self.wait(timeout_ms)
        if ok:
            self._on_thread_finished()
        return ok

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        """Cancel, refuse new tasks, and wait: used when the window closes."""
        self.close()
        return self.stop(timeout_ms)

    @Slot()
    def _on_thread_finished(self) -> None:
        thread = self._thread
        if thread is not None and not thread.isRunning():
            # Keep Python references until here: dropping them while the thread runs crashes Qt.
            self._thread, self._worker = None, None
            thread.deleteLater()
            self.idle.emit()


# --------------------------------------------------------------------------- thumbnails


class ThumbnailSignals(QObject):
    """Signals of the thumbnail pool (QRunnable cannot emit on its own)."""

    thumbnail_ready = Signal(str, QImage)  # path, image
    thumbnail_failed = Signal(str, str)  # path, reason


class _ThumbnailJob(QRunnable):
    def __init__(self, path: str, size: int, signals: ThumbnailSignals, make: Callable[[str, int], QImage],
                 stop: threading.Event) -> None:
        super().__init__()
        self.path, self.size, self.signals, self.make, self.stop = path, size, signals, make, stop

    def run(self) -> None:
        if self.stop.is_set():
            return
        try:
            image = self.make(self.path, self.size)
        except Exception as exc:  # noqa: BLE001 - a bad thumbnail must not stop the others
            self.signals.thumbnail_failed.emit(self.path, str(exc))
        else:
            if not self.stop.is_set():
                self.signals.thumbnail_ready.emit(self.path, image)


class ThumbnailPool(QObject):
    """Makes thumbnails (QImage, safe off the GUI thread) in a small private thread pool."""

    def __init__(self, make: Callable[[str, int], QImage], threads: int = 1, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.signals = ThumbnailSignals(self)
        self._make = make
        self._pool = QThreadPool(self)
        # One thread: thumbnails are a nicety and must not compete with training for 2 cores.
        self._pool.setMaxThreadCount(threads)
        self._stop = threading.Event()

    def request(self, paths: list[str], size: int = 48) -> None:
        self._stop.clear()
        for path in paths:
            self._pool.start(_ThumbnailJob(path, size, self.signals, self._make, self._stop))

    def cancel(self) -> None:
        """Drop queued thumbnails (a new folder was opened)."""
        self._stop.set()
        self._pool.clear()

    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        self.cancel()
        return bool(self._pool.waitForDone(timeout_ms))

    def wait(self, timeout_ms: int = 10_000) -> bool:
        return bool(self._pool.waitForDone(timeout_ms))
