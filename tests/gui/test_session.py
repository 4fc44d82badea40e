"""Session: the window's state tells its subscribers what changed (no Qt, no engine process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import discover
from ctviewer.core.data.demo import make_demo_dataset
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.gui.session import Session


def test_each_change_is_told_to_subscribers_once_and_a_new_dataset_drops_old_predictions(tmp_path: Path) -> None:
    session = Session(cache=Cache(tmp_path / "cache"))
    changes: list[str] = []
    unsubscribe = session.subscribe(changes.append)
    dataset = discover(make_demo_dataset(tmp_path / "data", n_patients=2, slices_per_patient=1, size=32))
    predictions = Predictions(paths=dataset.paths, probs=np.full(len(dataset), 0.5), threshold=0.5,
                              classes=("no_contrast", "contrast"))

    session.set_dataset(dataset)
    session.set_predictions(predictions, "all of them")
    session.set_predictions(predictions)  # the same predictions again: no second notification
    session.set_labels(dataset)  # labels edited: predictions stay
    assert session.predictions is predictions and session.predictions_description == "all of them"
    session.set_dataset(dataset)  # a new dataset: its old predictions go first
    assert changes == ["dataset", "predictions", "labels", "predictions", "dataset"]
    assert session.predictions is None and session.predictions_description == ""
    assert "no model" in session.describe()

    unsubscribe()
    session.set_predictions(predictions)
    assert len(changes) == 5 and session.describe().endswith(f"{len(dataset)} predictions")
