"""EngineClient.call against a scripted engine: no process, no TensorFlow, fast."""

from __future__ import annotations

import threading
import time

import pytest

from ctviewer.core.errors import Cancelled
from ctviewer.gui.engine import EngineClient


class _RunningProcess:
    def poll(self) -> None:
        return None


class _ScriptedEngine:
    """Stands in for the pipe: records what the client sends and answers like the engine child,
    streaming events every few milliseconds until it is told to cancel."""

    def __init__(self, client: EngineClient, event_interval_s: float) -> None:
        self.client = client
        self.sent: list[tuple] = []
        self.cancelled = threading.Event()
        self.interval = event_interval_s

    def send(self, message: tuple) -> None:
        self.sent.append(message)
        if message[0] == "call":
            threading.Thread(target=self._serve, args=(message[1],), daemon=True).start()
        elif message[0] == "cancel":
            self.cancelled.set()

    def _serve(self, call_id: int) -> None:
        deadline = time.monotonic() + 10
        while not self.cancelled.is_set() and time.monotonic() < deadline:
            self.client._pending[call_id].put(("event", call_id, "batch"))
            time.sleep(self.interval)
        answer = ("cancelled", call_id) if self.cancelled.is_set() else ("result", call_id, "ran to the end")
        self.client._pending[call_id].put(answer)


def _client(event_interval_s: float) -> tuple[EngineClient, _ScriptedEngine]:
    client = EngineClient()
    scripted = _ScriptedEngine(client, event_interval_s)
    client._process, client._conn = _RunningProcess(), scripted
    return client, scripted


@pytest.mark.parametrize("event_interval_s", [0.002, 0.3])
def test_cancel_reaches_the_engine_whether_events_stream_fast_or_slowly(event_interval_s):
    # Events faster than the client's poll interval (engine.POLL_S) once starved the cancel check
    # (issue 5): 2 ms is far below it, 300 ms above it.
    client, scripted = _client(event_interval_s)
    events: list[str] = []
    asked_at: list[float] = []

    def should_stop() -> bool:
        if len(events) >= 3 and not asked_at:
            asked_at.append(time.monotonic())
        return bool(asked_at)

    with pytest.raises(Cancelled):
        client.call("train", events.append, should_stop)
    assert [m[0] for m in scripted.sent] == ["call", "cancel"]
    assert scripted.sent[1][1] == scripted.sent[0][1]  # the cancel names the running call
    assert time.monotonic() - asked_at[0] < 2.0
    assert client._pending == {}


def test_a_call_nobody_cancels_returns_its_result_and_events():
    client, scripted = _client(0.001)
    scripted._serve = _finish_after_five(client)  # type: ignore[method-assign]
    events: list[str] = []
    assert client.call("train", events.append, lambda: False) == "done"
    assert events == ["batch"] * 5
    assert [m[0] for m in scripted.sent] == ["call"]


def _finish_after_five(client: EngineClient):
    def serve(call_id: int) -> None:
        for _ in range(5):
            client._pending[call_id].put(("event", call_id, "batch"))
        client._pending[call_id].put(("result", call_id, "done"))

    return serve
