"""The GUI's side of the model engine: start the engine process on first use, send calls,
route answers back to the (worker-thread) caller. No Qt here; `ctviewer.gui.workers.Worker`
jobs call the typed methods (`EngineClient.train`, ``predict``...), so training still reaches
the widgets as Qt signals.
"""

from __future__ import annotations

import itertools
import os
import queue
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from ctviewer.core.errors import Cancelled, CTViewerError
from ctviewer.core.events import EventCallback, StopCheck
from ctviewer.engine import protocol as msg
from ctviewer.engine.protocol import KEY_ENV, ModelHandle, TrainingOutcome

if TYPE_CHECKING:
    import numpy as np

    from ctviewer.core.data.dataset import Dataset
    from ctviewer.core.doctor.findings import Finding
    from ctviewer.core.metrics.predictions import Predictions
    from ctviewer.core.model.export import ExportResult

POLL_S = 0.1  # how often a waiting call checks should_stop()
STARTUP_TIMEOUT_S = 120.0  # the engine connects before it imports anything heavy


def engine_command(address: str, cache_root: str | None) -> list[str]:
    """How to start the engine: this Python with ``-m``, or a frozen app with ``--engine``."""
    tail = [address, cache_root or ""]
    if getattr(sys, "frozen", False):
        return [sys.executable, "--engine", *tail]
    return [sys.executable, "-m", "ctviewer.engine.server", *tail]


def _accept(listener: Any, process: subprocess.Popen, timeout_s: float) -> Any:
    """The engine's connection; fails (and stops the process) if it dies or never connects."""
    result: dict[str, Any] = {}

    def accept() -> None:
        try:
            result["conn"] = listener.accept()
        except Exception as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    thread = threading.Thread(target=accept, name="engine-accept", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while thread.is_alive() and process.poll() is None and time.monotonic() < deadline:
        thread.join(0.1)
    if "conn" in result:
        return result["conn"]
    if thread.is_alive():
        from multiprocessing.connection import Client

        try:  # wake the blocked accept(): a connection with a wrong key makes it raise
            Client(listener.address, authkey=b"wake-up").close()
        except Exception:  # noqa: BLE001, S110 - the refusal is the point
            pass
        thread.join(5)
    if "conn" in result:
        return result["conn"]
    if process.poll() is None:
        process.kill()
    raise EngineError(f"the model engine did not start (exit code {process.poll()}); see the console for why",
                      str(result.get("error", "")), False)


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
        self._pending: dict[int, queue.Queue[msg.Answer]] = {}
        self._ids = itertools.count(1)
        self._reader: threading.Thread | None = None

    # ------------------------------------------------------------------ process

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _ensure_started(self) -> None:
        if self.is_running():
            return
        from multiprocessing.connection import Listener

        # A plain subprocess, not multiprocessing's spawn: spawn re-runs the parent's main
        # script in the child, which a GUI script without a __main__ guard cannot survive.
        key = os.urandom(32)
        listener = Listener(authkey=key)
        env = {**os.environ, KEY_ENV: key.hex()}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        process = subprocess.Popen(engine_command(str(listener.address), self.cache_root), env=env)
        try:
            conn = _accept(listener, process, STARTUP_TIMEOUT_S)
        finally:
            listener.close()
        self._process, self._conn = process, conn
        self._reader = threading.Thread(target=self._read, args=(conn, process), name="engine-router", daemon=True)
        self._reader.start()

    def _read(self, conn: Any, process: Any) -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            except Exception as exc:  # noqa: BLE001 - an unreadable answer fails its call, not the router
                message = msg.Failure(None, f"unreadable answer from the engine: {exc}", "", False)
            box = self._pending.get(message.id) if message.id is not None else None
            if box is not None:
                box.put(message)
        # The engine is gone: every waiting call fails with the reason.
        try:
            code = process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        for box in list(self._pending.values()):
            box.put(msg.Failure(None, f"the model engine stopped unexpectedly (exit code {code})", "", False))

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Cancel every call, ask the engine to quit, wait, and kill it if it does not."""
        with self._lock:
            process, conn = self._process, self._conn
            self._process = self._conn = None
            if process is None:
                return
            try:
                for call_id in list(self._pending):
                    conn.send(msg.Cancel(call_id))
                conn.send(msg.Quit())
            except (OSError, ValueError):
                pass
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        try:
            conn.close()
        except OSError:
            pass

    # ------------------------------------------------------------------ calls

    def train(self, dataset: Dataset, model_name: str, overrides: dict[str, Any], folds: int | None,
              on_event: EventCallback | None = None, should_stop: StopCheck | None = None) -> TrainingOutcome:
        """Train in the engine (`ctviewer.core.training.run.run_training`); the model stays there."""
        return self._call("train", on_event, should_stop, dataset=dataset, model_name=model_name,
                         overrides=overrides, folds=folds)

    def predict(self, model_id: str, dataset: Dataset, on_event: EventCallback | None = None,
                should_stop: StopCheck | None = None) -> Predictions:
        return self._call("predict", on_event, should_stop, model_id=model_id, dataset=dataset)

    def grad_cam(self, model_id: str, path: str) -> np.ndarray:
        return self._call("grad_cam", model_id=model_id, path=path)

    def save_bundle(self, model_id: str, folder: str) -> str:
        return self._call("save_bundle", model_id=model_id, folder=folder)

    def export(self, model_id: str, fmt: str, folder: str, on_event: EventCallback | None = None,
               should_stop: StopCheck | None = None) -> ExportResult:
        """`ctviewer.core.model.export.export_bundle` in the engine: converting and checking take a minute."""
        return self._call("export", on_event, should_stop, model_id=model_id, fmt=fmt, folder=folder)

    def load_bundle(self, folder: str) -> ModelHandle:
        return self._call("load_bundle", folder=folder)

    def doctor(self, dataset: Dataset | None, model_id: str | None, predictions: Predictions | None,
               on_event: EventCallback | None = None, should_stop: StopCheck | None = None) -> list[Finding]:
        return self._call("doctor", on_event, should_stop, dataset=dataset, model_id=model_id,
                         predictions=predictions)

    def _call(self, name: str, on_event: EventCallback | None = None,
             should_stop: StopCheck | None = None, **kwargs: Any) -> Any:
        """Run ``Engine.<name>(**kwargs)`` in the engine and wait for its answer.

        Events are passed to ``on_event`` as they arrive; when ``should_stop()`` turns true the
        engine is asked to cancel. Raises `Cancelled` or `EngineError` like a local call would.
        """
        box: queue.Queue[msg.Answer] = queue.Queue()
        with self._lock:
            self._ensure_started()
            call_id = next(self._ids)
            self._pending[call_id] = box
            conn = self._conn
            conn.send(msg.Call(call_id, name, kwargs))
        cancel_sent = False
        try:
            while True:
                # Checked on every turn, not only when the engine is quiet: a fast training run
                # sends events more often than POLL_S, and the cancel must still go out.
                if should_stop is not None and not cancel_sent and should_stop():
                    with self._lock:
                        if self._conn is conn:
                            conn.send(msg.Cancel(call_id))
                    cancel_sent = True
                try:
                    message = box.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                if isinstance(message, msg.EventMessage):
                    if on_event is not None:
                        on_event(message.event)
                elif isinstance(message, msg.Result):
                    return message.value
                elif isinstance(message, msg.CancelledReply):
                    raise Cancelled(f"{name} cancelled")
                else:
                    raise EngineError(message.message, message.details, message.user_error)
        finally:
            self._pending.pop(call_id, None)
