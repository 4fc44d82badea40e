"""The model engine's process: every TensorFlow call of the GUI (train, predict, Grad-CAM,
bundles, the doctor's model checks) runs here, one call at a time.

Why a process and not a thread: TensorFlow holds the GIL for hundreds of milliseconds while
it traces and starts graph functions, which froze the window (measured: 0.6-0.9 s stalls
with training in a QThread). Here it can only slow this process down. No Qt in this module.

Started by `ctviewer.gui.engine.EngineClient` as ``python -m ctviewer.gui.engine_child``
(``ctviewer --engine`` in a frozen app); it connects back over a local socket/pipe.
Messages on the connection are tuples: from the GUI ``("call", id, name, kwargs)``,
``("cancel", id)``, ``("quit",)``; to the GUI ``("event", id, event)``, ``("result", id,
value)``, ``("error", id, message, details, user_error)``, ``("cancelled", id)``.
"""

from __future__ import annotations

import itertools
import queue
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ctviewer.core.data.imaging import Preprocessing

if TYPE_CHECKING:
    from ctviewer.core.model.config import TrainConfig
    from ctviewer.core.model.predictor import Predictor


@dataclass
class ModelHandle:
    """What the GUI knows of a model living in the engine: everything but the weights."""

    id: str
    kind: str  # "trained", "bundle" or "ensemble"
    source: str  # shown to the user
    preprocessing: Preprocessing
    classes: tuple[str, str]
    threshold: float
    model_id: str = ""
    config: Any = None  # TrainConfig
    history: dict[str, list[float]] | None = None
    split: Any = None  # ctviewer.core.data.splits.Split
    best_epoch: int | None = None
    epochs_run: int = 0
    cancelled: bool = False
    folder: str = ""


@dataclass
class TrainingOutcome:
    """The result of a training call: the model handle and its honest predictions."""

    handle: ModelHandle | None
    predictions: Any  # Predictions (validation hold-out, or out-of-fold)
    description: str
    summary: str
    histories: list[dict[str, list[float]]] = field(default_factory=list)


class Engine:
    """Holds the models of one GUI session and serves calls on them."""

    def __init__(self, cache_root: str | None) -> None:
        from ctviewer.core.data.cache import Cache

        self.cache = Cache(cache_root) if cache_root else Cache()
        self.models: dict[str, Any] = {}
        self._ids = itertools.count(1)

    def _keep(self, model: Predictor, kind: str, source: str, config: TrainConfig | None,
              **extra: Any) -> ModelHandle:
        key = f"m{next(self._ids)}"
        self.models[key] = model
        return ModelHandle(id=key, kind=kind, source=source, preprocessing=model.preprocessing,
                           classes=tuple(model.classes), threshold=float(model.threshold),
                           model_id=model.model_id, config=config, history=model.history, **extra)

    def model(self, model_id: str) -> Any:
        try:
            return self.models[model_id]
        except KeyError:
            from ctviewer.core.errors import ModelError

            raise ModelError(f"model {model_id} is no longer loaded; open or train it again") from None

    # ------------------------------------------------------------------ calls

    def train(self, dataset: Any, model_name: str, overrides: dict[str, Any], folds: int,
              on_event: Callable, should_stop: Callable) -> TrainingOutcome:
        from ctviewer.core.model.recipes import default_config
        from ctviewer.core.training.cv import cross_validate
        from ctviewer.core.training.fit import fit

        config = default_config(model_name).with_overrides(**overrides)
        if folds >= 2:
            cv = cross_validate(dataset, config, folds=folds, on_event=on_event, should_stop=should_stop,
                                keep_models=True, cache=self.cache)
            handle = None
            if cv.ensemble is not None:
                handle = self._keep(cv.ensemble, "ensemble", f"ensemble of {folds} fold models ({config.model})",
                                    cv.ensemble.config, split=cv.folds)
            return TrainingOutcome(handle, cv.predictions, "out-of-fold predictions (cross-validation)",
                                   f"{folds}-fold cross-validation done", histories=list(cv.histories))
        trained = fit(dataset, config, on_event=on_event, should_stop=should_stop, cache=self.cache)
        source = f"{config.model} trained in this session" + (" (cancelled, best epoch kept)" if trained.cancelled else "")
        handle = self._keep(trained, "trained", source, trained.config, split=trained.split,
                            best_epoch=trained.best_epoch, epochs_run=trained.epochs_run, cancelled=trained.cancelled)
        best = "none" if trained.best_epoch is None else str(trained.best_epoch + 1)
        summary = (f"Training {'cancelled' if trained.cancelled else 'done'}: {trained.epochs_run} epochs, "
                   f"best epoch {best}, threshold {trained.threshold:.3f}")
        return TrainingOutcome(handle, trained.validation_predictions, "validation hold-out of the training run",
                               summary, histories=[dict(trained.history)])

    def predict(self, model_id: str, dataset: Any, on_event: Callable, should_stop: Callable) -> Any:
        from ctviewer.core.model.inference import predict

        return predict(self.model(model_id), dataset, cache=self.cache, on_event=on_event, should_stop=should_stop)

    def grad_cam(self, model_id: str, path: str) -> Any:
        import numpy as np

        from ctviewer.core.explain.gradcam import grad_cam

        model = self.model(model_id)
        array = np.asarray(self.cache.array(path, model.preprocessing), dtype=np.float32)
        return np.asarray(grad_cam(model, array), dtype=np.float32)

    def save_bundle(self, model_id: str, folder: str) -> str:
        from ctviewer.core.model.bundle import save_bundle

        return str(save_bundle(self.model(model_id), folder))

    def load_bundle(self, folder: str) -> ModelHandle:
        from ctviewer.core.model.bundle import load_bundle

        bundle = load_bundle(folder)
        return self._keep(bundle, "bundle", f"bundle {folder}", None, split=bundle.split, folder=str(folder))

    def doctor(self, dataset: Any, model_id: str | None, predictions: Any, on_event: Callable,
               should_stop: Callable) -> list[Any]:
        from ctviewer.core.doctor import run_checks

        model = self.model(model_id) if model_id else None
        return list(run_checks(dataset=dataset, model=model, predictions=predictions, baseline=True,
                               cache=self.cache, on_event=on_event, should_stop=should_stop))

    def ping(self) -> str:
        return "pong"

    def model_names(self) -> tuple[str, ...]:
        from ctviewer.core.model.recipes import MODEL_NAMES

        return tuple(MODEL_NAMES)


# --------------------------------------------------------------------------- the serving loop

_TAKES_EVENTS = {"train", "predict", "doctor"}
ENGINE_NICENESS = 10
_TAKES_STOP = {"train", "predict", "doctor"}


def serve(conn: Any, cache_root: str | None) -> None:
    """Process entry point: answer calls until "quit" or the GUI goes away."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if hasattr(os, "nice"):
        # Lower priority than the window: when cores are scarce, drawing and input come first.
        try:
            os.nice(ENGINE_NICENESS)
        except OSError:
            pass
    engine = Engine(cache_root)
    calls: queue.Queue = queue.Queue()
    stops: dict[int, threading.Event] = {}
    send_lock = threading.Lock()

    def send(message: tuple) -> None:
        with send_lock:
            conn.send(message)

    def read() -> None:
        # A thread of its own, so a cancel arrives while a call is running.
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                message = ("quit",)
            if message[0] == "call":
                stops[message[1]] = threading.Event()
                calls.put(message)
            elif message[0] == "cancel":
                stops.setdefault(message[1], threading.Event()).set()
            if message[0] == "quit":
                for event in list(stops.values()):
                    event.set()
                calls.put(None)
                return

    threading.Thread(target=read, name="engine-reader", daemon=True).start()
    while True:
        message = calls.get()
        if message is None:
            break
        _, call_id, name, kwargs = message
        stop = stops[call_id]
        if name in _TAKES_EVENTS:
            kwargs["on_event"] = lambda event, i=call_id: send(("event", i, event))
        if name in _TAKES_STOP:
            kwargs["should_stop"] = stop.is_set
        try:
            if stop.is_set():
                from ctviewer.core.errors import Cancelled

                raise Cancelled(f"{name} cancelled before it started")
            send(("result", call_id, getattr(engine, name)(**kwargs)))
        except BaseException as exc:  # noqa: BLE001 - every failure (unpicklable results too) goes back
            from ctviewer.core.errors import Cancelled, CTViewerError

            if isinstance(exc, Cancelled):
                send(("cancelled", call_id))
            else:
                details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                user = isinstance(exc, CTViewerError)
                send(("error", call_id, str(exc) if user else f"{type(exc).__name__}: {exc}", details, user))
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                break
        finally:
            stops.pop(call_id, None)
    try:
        conn.close()
    except OSError:
        pass


def main(argv: list[str]) -> int:
    """``python -m ctviewer.gui.engine_child ADDRESS [CACHE_ROOT]``: connect back to the GUI, serve."""
    import os
    from multiprocessing.connection import Client

    from ctviewer.gui.engine import KEY_ENV

    if not argv:
        print("usage: python -m ctviewer.gui.engine_child ADDRESS [CACHE_ROOT] (started by the GUI)")
        return 2
    key = bytes.fromhex(os.environ.pop(KEY_ENV, ""))
    conn = Client(argv[0], authkey=key)
    serve(conn, argv[1] if len(argv) > 1 and argv[1] else None)
    return 0


if __name__ == "__main__":
    import sys

    # Run through the module's real name, so pickled handles say ctviewer.gui.engine_child.ModelHandle
    # (the GUI cannot unpickle a class of this process's __main__).
    from ctviewer.gui.engine_child import main as _main

    sys.exit(_main(sys.argv[1:]))
