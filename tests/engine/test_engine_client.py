"""EngineClient against a scripted engine: no process, no TensorFlow, fast."""

from __future__ import annotations

import threading
import time

import pytest

from ctviewer.core.errors import Cancelled
from ctviewer.engine.client import EngineClient
from ctviewer.engine.protocol import Call, Cancel, CancelledReply, EventMessage, Result


class _RunningProcess:
    def poll(self) -> None:
        return None


class _ScriptedEngine:
    """Stands in for the pipe: records what the client sends and answers like the engine child,
    streaming events every few milliseconds until it is told to cancel."""

    def __init__(self, client: EngineClient, event_interval_s: float) -> None:
        self.client = client
        self.sent: list[object] = []
        self.cancelled = threading.Event()
        self.interval = event_interval_s

    def send(self, message: object) -> None:
        self.sent.append(message)
        if isinstance(message, Call):
            threading.Thread(target=self._serve, args=(message.id,), daemon=True).start()
        elif isinstance(message, Cancel):
            self.cancelled.set()

    def _serve(self, call_id: int) -> None:
        deadline = time.monotonic() + 10
        while not self.cancelled.is_set() and time.monotonic() < deadline:
            self.client._pending[call_id].put(EventMessage(call_id, "batch"))
            time.sleep(self.interval)
        answer = CancelledReply(call_id) if self.cancelled.is_set() else Result(call_id, "ran to the end")
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
        client.train(None, "default", {}, 1, events.append, should_stop)  # type: ignore[arg-type]
    assert [type(m) for m in scripted.sent] == [Call, Cancel]
    assert scripted.sent[0].name == "train"
    assert scripted.sent[1].id == scripted.sent[0].id  # the cancel names the running call
    assert time.monotonic() - asked_at[0] < 2.0
    assert client._pending == {}


def test_a_call_nobody_cancels_returns_its_result_and_events():
    client, scripted = _client(0.001)
    scripted._serve = _finish_after_five(client)  # type: ignore[method-assign]
    events: list[str] = []
    assert client.train(None, "default", {}, 1, events.append, lambda: False) == "done"  # type: ignore[arg-type]
    assert events == ["batch"] * 5
    assert [type(m) for m in scripted.sent] == [Call]


def _finish_after_five(client: EngineClient):
    def serve(call_id: int) -> None:
        for _ in range(5):
            client._pending[call_id].put(EventMessage(call_id, "batch"))
        client._pending[call_id].put(Result(call_id, "done"))

    return serve
