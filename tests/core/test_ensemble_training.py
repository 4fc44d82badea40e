"""`train`'s k-fold ensemble: members, out-of-fold threshold and expected performance, cancel, round trip,
training images marked, member spread."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _trainkit import tiny_config, tiny_demo

from ctviewer.core.data.dataset import discover
from ctviewer.core.events import FoldStarted, Message
from ctviewer.core.metrics.thresholds import choose_threshold
from ctviewer.core.model.bundle import load_bundle, read_card, save_bundle
from ctviewer.core.model.inference import predict
from ctviewer.core.training.cv import cross_validate

# Three fold models per run: on the shared 2-core machine the module's fixture alone can pass
# the 600 s default.
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory: pytest.TempPathFactory):
    """Three patients per class: the default 5 folds become 3 (with a note); 1 epoch per fold."""
    folder = tmp_path_factory.mktemp("ensemble")
    dataset, cache = tiny_demo(folder, n_patients=3)
    events: list = []
    result = cross_validate(dataset, tiny_config(epochs=1), on_event=events.append, cache=cache, keep_models=True)
    bundle = save_bundle(result.ensemble, folder / "bundle")
    return dataset, cache, result, events, bundle, folder


def test_default_folds_are_lowered_with_a_note_when_a_class_has_fewer_patients(ensemble_run):
    _, _, result, events, _, _ = ensemble_run
    assert result.folds.k == 3 and len(result.ensemble.members) == 3
    assert any("3 folds instead of 5" in n for n in result.notes)
    assert any(isinstance(e, Message) and "3 folds instead of 5" in e.text for e in events)
    assert [e.fold for e in events if isinstance(e, FoldStarted)] == [0, 1, 2]


def test_bundle_holds_k_members_and_the_card_holds_out_of_fold_metrics_and_threshold(ensemble_run):
    dataset, _, result, _, bundle, _ = ensemble_run
    card = read_card(bundle)
    raw = card.raw
    assert card.kind == "ensemble" and len(raw["members"]) == 3
    expected = raw["expected_performance"]
    assert expected["metrics"]["n"] == len(dataset) and len(expected["per_fold"]) == 3
    # Series/patient thresholds come from the same pooled out-of-fold predictions.
    assert {raw["levels"][level]["chosen_on"] for level in ("series", "patient")} == {"pooled out-of-fold predictions"}
    for key in ("auc", "sensitivity", "specificity", "ppv", "npv", "accuracy"):
        assert key in expected["metrics"] and len(expected["metrics"][f"{key}_ci"]) == 2
    # The threshold is Youden's J on the out-of-fold file's probabilities, nothing else.
    with open(bundle / expected["file"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(dataset) and {r["fold"] for r in rows} == {"0", "1", "2"}
    y = np.array([int(r["label"] == "contrast") for r in rows])
    oof = np.array([float(r["prob"]) for r in rows])
    assert card.threshold == expected["threshold"] == choose_threshold(y, oof, "youden")
    assert raw["threshold_chosen_on"].startswith("pooled out-of-fold")
    # ...and not what the same rule gives on the ensemble's predictions of its own training images.
    in_sample = predict(result.ensemble, dataset, cache=ensemble_run[1])
    assert choose_threshold(in_sample.y_true, in_sample.probs, "youden") != card.threshold


def test_ensemble_bundle_round_trips_bit_identically_with_spread_and_training_marks(ensemble_run):
    dataset, cache, result, _, bundle, folder = ensemble_run
    before = predict(result.ensemble, dataset, cache=cache)
    loaded = load_bundle(bundle)
    after = predict(loaded, dataset, cache=cache)
    np.testing.assert_array_equal(before.probs, after.probs)
    np.testing.assert_array_equal(before.uncertainty, after.uncertainty)
    assert after.uncertainty is not None and (after.uncertainty > 0).any()
    assert before.in_training.all() and after.in_training.all()
    # A copy of one training image elsewhere is still a training image (same content); an image
    # with other content is not.
    from ctviewer.core.data.demo import make_demo_dataset

    other = discover(make_demo_dataset(folder / "other", n_patients=1, slices_per_patient=1, size=48, seed=7),
                     cache=cache)
    mixed = folder / "mixed"
    mixed.mkdir()
    shutil.copy(dataset.paths[0], mixed / "copy_of_training.dcm")
    shutil.copy(other.paths[0], mixed / "new.dcm")
    marks = predict(loaded, discover(mixed, cache=cache), cache=cache)
    assert dict(zip((Path(p).name for p in marks.paths), marks.in_training.tolist())) == {
        "copy_of_training.dcm": True, "new.dcm": False}
    # Saved again (a loaded bundle), it keeps its out-of-fold file and so its marks.
    again = load_bundle(save_bundle(loaded, folder / "resaved"))
    assert (folder / "resaved" / "oof_predictions.csv").is_file()
    np.testing.assert_array_equal(predict(again, dataset, cache=cache).in_training, after.in_training)


def test_cancel_keeps_only_the_completed_folds(ensemble_run, tmp_path: Path):
    dataset, cache, _, _, _, _ = ensemble_run
    started: list[int] = []

    def note(event: object) -> None:
        if isinstance(event, FoldStarted):
            started.append(event.fold)

    result = cross_validate(dataset, tiny_config(epochs=2), on_event=note, should_stop=lambda: 2 in started,
                            cache=cache, keep_models=True, keep_partial=True)
    assert result.cancelled and result.completed_folds == 2 and len(result.ensemble.members) == 2
    tested = np.flatnonzero(np.isin(result.folds.fold_of, [0, 1]))
    assert result.predictions.paths == [dataset.paths[i] for i in tested]
    assert result.metrics.n == len(tested) and any("2 completed fold model(s) of 3" in n for n in result.notes)
    card = json.loads((save_bundle(result.ensemble, tmp_path / "b") / "model_card.json").read_text())
    assert card["cancelled"] is True and card["expected_performance"]["completed_folds"] == 2
    assert len(card["members"]) == 2


def test_cv_and_train_share_one_path_same_out_of_fold_numbers(ensemble_run):
    dataset, cache, result, _, _, _ = ensemble_run
    again = cross_validate(dataset, tiny_config(epochs=1), cache=cache, keep_models=False)
    assert again.ensemble is None and not again.models
    np.testing.assert_array_equal(again.predictions.probs, result.predictions.probs)
    assert again.threshold == result.threshold


def test_an_ensemble_predicts_without_mirror_tta_and_its_out_of_fold_rows_were_made_so(ensemble_run):
    from ctviewer.core.model.inference import predict_arrays

    dataset, cache, result, _, bundle, _ = ensemble_run
    assert result.config.tta, "the recipe itself keeps TTA (a single model uses it)"
    loaded = load_bundle(bundle)
    assert result.ensemble.tta is False and loaded.tta is False and read_card(bundle).raw["training"]["tta"] is False
    # Each out-of-fold probability is its fold member's plain forward pass, as the ensemble predicts.
    prep = loaded.preprocessing
    for k, member in enumerate(result.ensemble.members):
        rows = np.flatnonzero(result.predictions.folds == k)
        x = np.stack([np.asarray(cache.array(result.predictions.paths[i], prep), np.float32) for i in rows])
        batch = result.config.batch_size  # as cross_validate predicted them: same padding, same arithmetic
        plain = predict_arrays(member.model, x, batch_size=batch, tta=False)
        np.testing.assert_array_equal(plain, result.predictions.probs[rows])
        assert not np.array_equal(predict_arrays(member.model, x, batch_size=batch, tta=True), plain)
