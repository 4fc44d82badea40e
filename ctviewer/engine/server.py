"""The model engine's process: every TensorFlow call of the GUI (train, predict, Grad-CAM,
bundles, the doctor's model checks) runs here, one call at a time.

Why a process and not a thread: TensorFlow holds the GIL for hundreds of milliseconds while
it traces and starts graph functions, which froze the window (measured: 0.6-0.9 s stalls
with training in a QThread). Here it can only slow this process down. No Qt in this package.

Started by `ctviewer.engine.client.EngineClient` as ``python -m ctviewer.engine.server``
(``ctviewer --engine`` in a frozen app); it connects back over a local socket/pipe and
speaks the messages of `ctviewer.engine.protocol`.
"""

from __future__ import annotations

import itertools
import queue
import threading
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ctviewer.engine.protocol import (
    KEY_ENV,
    LONG_CALLS,
    Call,
    Cancel,
    CancelledReply,
    EventMessage,
    Failure,
    ModelHandle,
    Quit,
    Result,
    TrainingOutcome,
)

if TYPE_CHECKING:
    import numpy as np

    from ctviewer.core.data.dataset import Dataset
    from ctviewer.core.doctor.findings import Finding
    from ctviewer.core.events import EventCallback, StopCheck
    from ctviewer.core.metrics.predictions import Predictions
    from ctviewer.core.model.config import TrainConfig
    from ctviewer.core.model.export import ExportResult
    from ctviewer.core.model.predictor import Predictor


class Engine:
    """Holds the models of one GUI session and serves calls on them."""

    def __init__(self, cache_root: str | None) -> None:
        from ctviewer.core.data.cache import Cache

        self.cache = Cache(cache_root) if cache_root else Cache()
        self.models: dict[str, Predictor] = {}
        self._ids = itertools.count(1)

    def _keep(self, model: Predictor, kind: str, source: str, config: TrainConfig | None,
              **extra: Any) -> ModelHandle:
        key = f"m{next(self._ids)}"
        self.models[key] = model
        # What it was trained on: the GUI marks predictions on those images as optimistic.
        extra.setdefault("trained_on", str(model.trained_on or ""))
        summary = getattr(model, "dataset", None)
        extra.setdefault("n_trained", int(getattr(summary, "n_images", 0) or 0))
        if "level_thresholds" not in extra:
            extra["level_thresholds"] = _level_thresholds(model)
        return ModelHandle(id=key, kind=kind, source=source, preprocessing=model.preprocessing,
                           classes=tuple(model.classes), threshold=float(model.threshold),
                           model_id=model.model_id, config=config, history=model.history, **extra)

    def model(self, model_id: str) -> Predictor:
        try:
            return self.models[model_id]
        except KeyError:
            from ctviewer.core.errors import ModelError

            raise ModelError(f"model {model_id} is no longer loaded; open or train it again") from None

    # ------------------------------------------------------------------ calls

    def train(self, dataset: Dataset, model_name: str, overrides: dict[str, Any], folds: int | None,
              on_event: EventCallback, should_stop: StopCheck) -> TrainingOutcome:
        from ctviewer.core.model.recipes import default_config
        from ctviewer.core.training.run import run_training

        config = default_config(model_name).with_overrides(**overrides)
        run = run_training(dataset, config, folds, on_event=on_event, should_stop=should_stop, cache=self.cache)
        handle = None
        if run.cv is not None and run.cv.ensemble is not None:
            from ctviewer.core.training.oof import expected_line

            cv = run.cv
            kept = len(cv.ensemble.members)
            source = f"ensemble of {kept} fold models ({cv.config.model})"
            if cv.cancelled:
                source += f", cancelled: {kept} of {cv.folds.k} folds kept"
            handle = self._keep(cv.ensemble, "ensemble", source, cv.ensemble.config, split=cv.folds,
                                cancelled=cv.cancelled,
                                expected=expected_line({"expected_performance": cv.expected_performance()}),
                                level_thresholds=_level_thresholds(cv.ensemble, cv.predictions, config,
                                                                   "pooled out-of-fold predictions"))
        elif run.trained is not None:
            trained = run.trained
            source = f"{config.model} trained in this session" + (
                " (cancelled, best epoch kept)" if trained.cancelled else "")
            handle = self._keep(trained, "trained", source, trained.config, split=trained.split,
                                best_epoch=trained.best_epoch, epochs_run=trained.epochs_run,
                                cancelled=trained.cancelled,
                                level_thresholds=_level_thresholds(trained, trained.validation_predictions,
                                                                   trained.config, "validation hold-out"))
        return TrainingOutcome(handle, run.predictions, run.predictions_are, run.summary, histories=run.histories)

    def predict(self, model_id: str, dataset: Dataset, on_event: EventCallback, should_stop: StopCheck
                ) -> Predictions:
        from ctviewer.core.model.inference import predict

        return predict(self.model(model_id), dataset, cache=self.cache, on_event=on_event, should_stop=should_stop)

    def grad_cam(self, model_id: str, path: str) -> np.ndarray:
        import numpy as np

        from ctviewer.core.explain.gradcam import grad_cam

        model = self.model(model_id)
        array = np.asarray(self.cache.array(path, model.preprocessing), dtype=np.float32)
        return np.asarray(grad_cam(model, array), dtype=np.float32)

    def save_bundle(self, model_id: str, folder: str) -> str:
        from ctviewer.core.model.bundle import save_bundle

        return str(save_bundle(self.model(model_id), folder))

    def export(self, model_id: str, fmt: str, folder: str, on_event: EventCallback, should_stop: StopCheck
               ) -> ExportResult:
        """`ctviewer.core.model.export.export_bundle` of a session model (an unsaved one too)."""
        from ctviewer.core.model.export import export_bundle

        return export_bundle(self.model(model_id), fmt, folder, on_event=on_event, should_stop=should_stop)

    def load_bundle(self, folder: str) -> ModelHandle:
        from ctviewer.core.model.bundle import load_bundle
        from ctviewer.core.training.oof import expected_line

        bundle = load_bundle(folder)
        return self._keep(bundle, "bundle", f"saved model {folder}", None, split=bundle.split, folder=str(folder),
                          expected=expected_line(bundle.card.raw))

    def doctor(self, dataset: Dataset | None, model_id: str | None, predictions: Predictions | None,
               on_event: EventCallback, should_stop: StopCheck) -> list[Finding]:
        from ctviewer.core.doctor import run_checks

        model = self.model(model_id) if model_id else None
        return list(run_checks(dataset=dataset, model=model, predictions=predictions, baseline=True,
                               cache=self.cache, on_event=on_event, should_stop=should_stop))

    def calls(self) -> dict[str, Callable[..., Any]]:
        """The calls the GUI may make, by the name a `Call` gives."""
        return {"train": self.train, "predict": self.predict, "grad_cam": self.grad_cam,
                "save_bundle": self.save_bundle, "load_bundle": self.load_bundle, "doctor": self.doctor,
                "export": self.export}


def _level_thresholds(model: Predictor, honest: Predictions | None = None, config: TrainConfig | None = None,
                      chosen_on: str = "") -> dict[str, tuple[float | None, str]]:
    """The model's series and patient thresholds for the GUI, read the way ``predict --level`` reads them.

    A loaded bundle: from its card. A model trained in this session has no card yet: the levels its
    card will record when saved (`bundle.save_bundle`), chosen on ``honest`` (the pooled out-of-fold
    or validation predictions) by the same core function.
    """
    from types import SimpleNamespace

    from ctviewer.core.metrics.aggregate import DEFAULT_RULE, level_thresholds
    from ctviewer.core.model.volumes import level_threshold

    source: Any = model
    if getattr(model, "card", None) is None and honest is not None and config is not None:
        levels = level_thresholds(honest, threshold_rule=config.threshold_rule, target=config.threshold_target,
                                  chosen_on=chosen_on)
        source = SimpleNamespace(card=SimpleNamespace(raw={"levels": levels}))
    return {level: level_threshold(source, level, DEFAULT_RULE) for level in ("series", "patient")}


# --------------------------------------------------------------------------- the serving loop

ENGINE_NICENESS = 10


def serve(conn: Any, cache_root: str | None) -> None:
    """Answer `Call`s on ``conn`` until `Quit` or the GUI goes away."""
    engine = Engine(cache_root)
    handlers = engine.calls()
    calls: queue.Queue[Call | None] = queue.Queue()
    stops: dict[int, threading.Event] = {}
    send_lock = threading.Lock()

    def send(message: EventMessage | Result | Failure | CancelledReply) -> None:
        with send_lock:
            conn.send(message)

    def read() -> None:
        # A thread of its own, so a cancel arrives while a call is running.
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                message = Quit()
            if isinstance(message, Call):
                stops[message.id] = threading.Event()
                calls.put(message)
            elif isinstance(message, Cancel):
                stops.setdefault(message.id, threading.Event()).set()
            elif isinstance(message, Quit):
                for event in list(stops.values()):
                    event.set()
                calls.put(None)
                return

    threading.Thread(target=read, name="engine-reader", daemon=True).start()
    while True:
        call = calls.get()
        if call is None:
            break
        stop = stops[call.id]
        kwargs = dict(call.kwargs)
        if call.name in LONG_CALLS:
            kwargs["on_event"] = lambda event, i=call.id: send(EventMessage(i, event))
            kwargs["should_stop"] = stop.is_set
        try:
            if stop.is_set():
                from ctviewer.core.errors import Cancelled

                raise Cancelled(f"{call.name} cancelled before it started")
            handler = handlers.get(call.name)
            if handler is None:
                raise ValueError(f"the engine has no call {call.name!r}")
            from ctviewer.core.model.tf_runtime import start_tensorflow

            start_tensorflow()  # every call runs a model; its start-up lines stay out of the app's log
            send(Result(call.id, handler(**kwargs)))
        except BaseException as exc:  # noqa: BLE001 - every failure (unpicklable results too) goes back
            from ctviewer.core.errors import Cancelled, CTViewerError

            if isinstance(exc, Cancelled):
                send(CancelledReply(call.id))
            else:
                details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                user = isinstance(exc, CTViewerError)
                send(Failure(call.id, str(exc) if user else f"{type(exc).__name__}: {exc}", details, user))
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                break
        finally:
            stops.pop(call.id, None)
    try:
        conn.close()
    except OSError:
        pass


def main(argv: list[str]) -> int:
    """``python -m ctviewer.engine.server ADDRESS [CACHE_ROOT]``: connect back to the GUI, serve."""
    import os
    from multiprocessing.connection import Client

    if not argv:
        print("usage: python -m ctviewer.engine.server ADDRESS [CACHE_ROOT] (started by the GUI)")
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if hasattr(os, "nice"):
        # Lower priority than the window: when cores are scarce, drawing and input come first.
        try:
            os.nice(ENGINE_NICENESS)
        except OSError:
            pass
    key = bytes.fromhex(os.environ.pop(KEY_ENV, ""))
    conn = Client(argv[0], authkey=key)
    serve(conn, argv[1] if len(argv) > 1 and argv[1] else None)
    return 0


if __name__ == "__main__":
    import sys

    # Run through the module's real name: what is pickled must not be a class of this process's __main__.
    from ctviewer.engine.server import main as _main

    sys.exit(_main(sys.argv[1:]))
