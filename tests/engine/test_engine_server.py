"""The engine's serving loop over a real pipe, without TensorFlow: what each message is answered with."""

from __future__ import annotations

import threading
from multiprocessing import Pipe
from pathlib import Path

from ctviewer.engine.protocol import Call, Failure, Quit
from ctviewer.engine.server import Engine, serve


def test_each_call_gets_one_typed_answer_and_quit_ends_the_loop(tmp_path: Path) -> None:
    gui, engine_end = Pipe()
    loop = threading.Thread(target=serve, args=(engine_end, str(tmp_path / "cache")), daemon=True)
    loop.start()

    gui.send(Call(1, "no_such_call", {}))
    failure = gui.recv()
    assert isinstance(failure, Failure) and failure.id == 1 and "no_such_call" in failure.message
    assert not failure.user_error

    gui.send(Call(2, "save_bundle", {"model_id": "m9", "folder": str(tmp_path / "b")}))
    unknown = gui.recv()  # a ModelError: said to the user as it is
    assert isinstance(unknown, Failure) and unknown.id == 2 and unknown.user_error
    assert "m9 is no longer loaded" in unknown.message

    gui.send(Quit())
    loop.join(10)
    assert not loop.is_alive()


def test_the_engine_serves_exactly_its_calls() -> None:
    assert set(Engine(None).calls()) == {"train", "predict", "grad_cam", "save_bundle", "load_bundle", "doctor",
                                         "export"}
