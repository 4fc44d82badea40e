"""`run_training`: the one entry point the app and `ctviewer train` share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _trainkit import tiny_config, tiny_demo

from ctviewer.cli import main
from ctviewer.core.model.bundle import load_bundle
from ctviewer.core.model.inference import predict
from ctviewer.core.training.results import TrainedModel
from ctviewer.core.training.run import VALIDATION_PREDICTIONS, run_training


def test_one_fold_is_one_model_shown_on_its_validation_hold_out(tmp_path: Path) -> None:
    dataset, cache = tiny_demo(tmp_path / "data", n_patients=4)
    run = run_training(dataset, tiny_config(epochs=1), 1, cache=cache)
    assert isinstance(run.model, TrainedModel) and run.trained is run.model and run.cv is None
    assert run.predictions is run.trained.validation_predictions and run.predictions_are == VALIDATION_PREDICTIONS
    assert run.summary.startswith("Training done: 1 epochs") and len(run.histories) == 1
    # The model is a Predictor: its probabilities are those `predict` gives for the same arrays.
    x = np.stack([cache.array(p, run.model.preprocessing) for p in dataset.paths[:3]])
    np.testing.assert_array_equal(run.model.probabilities(x), predict(run.model, x).probs)


def test_cli_train_with_folds_saves_the_ensemble_of_run_training(tmp_path: Path, capsys) -> None:
    from ctviewer.core.data.demo import make_demo_dataset

    data = make_demo_dataset(tmp_path / "data", n_patients=4, slices_per_patient=2, size=48)
    out = tmp_path / "bundle"
    assert main(["train", str(data), "--out", str(out), "--folds", "2",
                 "--size", "32", "--epochs", "1", "--batch-size", "8", "-q"]) == 0
    text = capsys.readouterr().out
    assert "trained default as a 2-fold ensemble" in text and "ensemble of 2 fold model(s)" in text
    bundle = load_bundle(out)
    assert bundle.card.kind == "ensemble" and len(bundle.card.raw["members"]) == 2
    assert bundle.card.raw["cross_validation"]["folds"] == 2
