"""Cancel stops a long prediction too, through the panel's button, and keeps what was shown."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from _engines import FakeEngine  # tests/gui/_engines.py (pytest puts this folder on sys.path)

from ctviewer.core.errors import Cancelled
from ctviewer.core.events import Progress


class _SlowPredictingEngine(FakeEngine):
    """Stands in for the model engine: a prediction over many images that honours should_stop."""

    def __init__(self) -> None:
        self.stopped_at: int | None = None
        self.started = threading.Event()

    def predict(self, model_id, dataset, on_event=None, should_stop=None):
        self.started.set()
        total = 5000
        for done in range(total):
            if should_stop():
                self.stopped_at = done
                raise Cancelled("predict cancelled")
            on_event(Progress(done, total, "predicting"))
            time.sleep(0.002)
        return "every image predicted"


def test_cancel_button_stops_a_running_prediction(window, use_engine, qtbot):
    engine = use_engine(_SlowPredictingEngine())
    window.session.model = SimpleNamespace(id="m1", kind="bundle", source="a saved model")
    panel = window.training
    predicted: list[object] = []
    panel.predictions_ready.connect(lambda *args: predicted.append(args))

    worker = panel.predict_dataset()
    qtbot.waitUntil(lambda: engine.started.is_set() and panel.progress_bar.value() > 0, timeout=10_000)
    assert panel.cancel_button.isEnabled() and not panel.start_button.isEnabled()
    with qtbot.waitSignal(worker.cancelled, timeout=10_000):
        panel.cancel_button.click()

    assert engine.stopped_at is not None and engine.stopped_at < 5000
    assert predicted == []
    assert "cancelled" in panel.epoch_label.text()
    qtbot.waitUntil(lambda: panel.predict_button.isEnabled(), timeout=10_000)
    assert not panel.cancel_button.isEnabled()
