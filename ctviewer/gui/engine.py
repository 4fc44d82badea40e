"""The GUI's side of the model engine: start the engine process on first use, send calls,
route answers back to the (worker-thread) caller. No Qt here; `workers.Worker` jobs call
`EngineClient.call`, so training still reaches the widgets as Qt signals.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from typing import Any, Callable

from ctviewer.core.errors import Cancelled, CTViewerError

POLL_S = 0.1  # how often a waiting call checks should_stop()


class EngineError(CTViewerError):
    """A call failed inside the engine; carries the engine's message and traceback."""

    def __init__(self, message: str, details: str, user_error: bool) -> None:
        super().__init__(message)
        self.details = details
        self.user_error = user_error


class EngineClient:
    """One engine process per window. Thread-safe: several workers may call at once
    (the engine answers them in order)."""

    def __init__(self, cache_root: str | None = None) -> None:
        self.cache_root = cache_root
        self._process: Any = None
        self._conn: Any = None
        self._lock = threading.Lock()  # start/stop and sending
        self._pending: dict[int, queue.Queue] = {}
        self._ids = itertools.count(1)
        self._reader: threading.Thread | None = None

    # ------------------------------------------------------------------ process

    def is_running(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def _ensure_started(self) -> None:
        if self.is_running():
            return
        import multiprocessing

        # spawn, never fork: forking a process that runs Qt threads is unsafe.
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from ctviewer.gui.engine_child import serve

        process = ctx.Process(target=serve, args=(child, self.cache_root), name="ctviewer-engine", daemon=True)
        process.start()
        child.close()
        self._process, self._conn = process, parent
        self._reader = threading.Thread(target=self._read, args=(parent, process), name="engine-router", daemon=True)
        self._reader.start()

    def _read(self, conn: Any, process: Any) -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            except Exception as exc:  # noqa: BLE001 - an unreadable answer fails its call, not the router
                message = ("error", None, f"unreadable answer from the engine: {exc}", "", False)
            box = self._pending.get(message[1]) if message[1] is not None else None
            if box is not None:
                box.put(message)
        # The engine is gone: every waiting call fails with the reason.
        process.join(timeout=1)
        code = process.exitcode
        for box in list(self._pending.values()):
            box.put(("error", None, f"the model engine stopped unexpectedly (exit code {code})", "", False))

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Cancel every call, ask the engine to quit, wait, and kill it if it does not."""
        with self._lock:
            process, conn = self._process, self._conn
            self._process = self._conn = None
            if process is None:
                return
            try:
                for call_id in list(self._pending):
                    conn.send(("cancel", call_id))
                conn.send(("quit",))
            except (OSError, ValueError):
                pass
        process.join(timeout_s)
        if process.is_alive():
            process.terminate()
            process.join(5)
        try:
            conn.close()
        except OSError:
            pass

    # ------------------------------------------------------------------ calls

    def call(self, name: str, on_event: Callable[[Any], None] | None = None,
             should_stop: Callable[[], bool] | None = None, **kwargs: Any) -> Any:
        """Run ``Engine.<name>(**kwargs)`` in the engine and wait for its answer.

        Events are passed to ``on_event`` as they arrive; when ``should_stop()`` turns true the
        engine is asked to cancel. Raises `Cancelled` or `EngineError` like a local call would.
        """
        box: queue.Queue = queue.Queue()
        with self._lock:
            self._ensure_started()
            call_id = next(self._ids)
            self._pending[call_id] = box
            conn = self._conn
            conn.send(("call", call_id, name, kwargs))
        cancel_sent = False
        try:
            while True:
                try:
                    message = box.get(timeout=POLL_S)
                except queue.Empty:
                    if should_stop is not None and not cancel_sent and should_stop():
                        with self._lock:
                            if self._conn is conn:
                                conn.send(("cancel", call_id))
                        cancel_sent = True
                    continue
                kind = message[0]
                if kind == "event":
                    if on_event is not None:
                        on_event(message[2])
                elif kind == "result":
                    return message[2]
                elif kind == "cancelled":
                    raise Cancelled(f"{name} cancelled")
                else:
                    raise EngineError(message[2], message[3], message[4])
        finally:
            self._pending.pop(call_id, None)
