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


def test_a_model_trained_in_this_session_gets_the_level_thresholds_its_card_will_hold() -> None:
    """No card yet: the series/patient thresholds are chosen on its out-of-fold predictions, as saving does."""
    from types import SimpleNamespace

    import numpy as np

    from ctviewer.core.metrics.aggregate import choose_level_threshold
    from ctviewer.core.metrics.predictions import Predictions
    from ctviewer.core.model.config import TrainConfig
    from ctviewer.engine.server import _level_thresholds

    rng = np.random.default_rng(5)
    patients = [f"p{i // 3}" for i in range(60)]
    labels = ["contrast" if int(p[1:]) % 2 else "none" for p in patients]
    probs = np.clip(np.array([0.7 if lab == "contrast" else 0.4 for lab in labels]) + rng.normal(0, 0.15, 60), 0, 1)
    oof = Predictions(paths=[f"/d/{i}.dcm" for i in range(60)], probs=probs, threshold=0.5,
                      classes=("none", "contrast"), labels=labels, patients=patients)
    config = TrainConfig()
    got = _level_thresholds(SimpleNamespace(), oof, config, "pooled out-of-fold predictions")
    expected = choose_level_threshold(oof, "patient", "mean", config.threshold_rule, config.threshold_target)
    assert got["patient"][0] == expected != 0.5
    assert "out-of-fold" in got["patient"][1]
    # Without honest predictions (and no card) there is none: the GUI falls back to the image threshold.
    assert _level_thresholds(SimpleNamespace())["patient"][0] is None
