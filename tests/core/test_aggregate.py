"""Aggregation to series and patients, per-level thresholds, and intervals that count patients."""

from __future__ import annotations

import numpy as np
import pytest

from ctviewer.core.metrics.aggregate import aggregate, aggregate_probs, choose_level_threshold, parse_rule, unit_keys
from ctviewer.core.metrics.cluster import cluster_bootstrap, cluster_ids
from ctviewer.core.metrics.evaluation import metrics_from_predictions, wilson_interval
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.core.metrics.thresholds import choose_threshold

CLASSES = ("no_contrast", "contrast")


def _pred(probs, patients, labels, series=None, folds=None, threshold=0.5) -> Predictions:
    n = len(probs)
    return Predictions(paths=[f"/d/{patients[i]}/im{i}.dcm" for i in range(n)], probs=np.asarray(probs, float),
                       threshold=threshold, classes=CLASSES, labels=list(labels), patients=list(patients),
                       series=list(series) if series else [], folds=None if folds is None else np.asarray(folds))


# --------------------------------------------------------------------------- rules


def test_rules_on_hand_made_probabilities() -> None:
    p = [0.1, 0.9, 0.5, 0.3]
    assert aggregate_probs(p, "mean") == pytest.approx(0.45)
    assert aggregate_probs(p, "max") == pytest.approx(0.9)
    assert aggregate_probs(p, "top2") == pytest.approx(0.7)  # (0.9 + 0.5) / 2
    assert aggregate_probs(p, "top10") == pytest.approx(0.45)  # fewer images than k: all of them
    assert aggregate_probs(p, "top1") == aggregate_probs(p, "max")


@pytest.mark.parametrize("bad", ["median", "top0", "top", "", "topx"])
def test_unknown_rule_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="aggregation rule"):
        parse_rule(bad)


def test_patient_units_carry_their_images_truth_and_count() -> None:
    pred = _pred([0.2, 0.4, 0.9, 0.7, 0.6], ["A", "A", "B", "B", "B"],
                 ["no_contrast", "no_contrast", "contrast", "contrast", "contrast"])
    units = aggregate(pred, "patient", "mean", threshold=0.5)
    assert units.predictions.paths == ["A", "B"]
    assert units.n_images.tolist() == [2, 3]
    assert units.predictions.probs.tolist() == pytest.approx([0.3, 0.7333333])
    assert units.predictions.labels == ["no_contrast", "contrast"]
    assert units.predictions.pred_names() == ["no_contrast", "contrast"]
    # The slice that drove B's call is its most positive one; slices come sorted by probability.
    assert units.driving.tolist() == [1, 2]
    assert units.slices_of(1).tolist() == [2, 3, 4]
    assert aggregate(pred, "patient", "max", threshold=0.5).predictions.probs.tolist() == pytest.approx([0.4, 0.9])


def test_series_units_split_a_patient_and_image_level_is_the_identity() -> None:
    pred = _pred([0.2, 0.4, 0.9], ["A", "A", "A"], ["contrast"] * 3, series=["s1", "s1", "s2"])
    assert unit_keys(pred, "series") == ["s1", "s1", "s2"]
    assert len(aggregate(pred, "series", threshold=0.5)) == 2
    assert len(aggregate(pred, "patient", threshold=0.5)) == 1
    image = aggregate(pred, "image")
    assert image.predictions.paths == pred.paths and image.predictions.probs.tolist() == pred.probs.tolist()


def test_a_patient_without_id_is_its_own_unit_and_mixed_labels_give_no_truth() -> None:
    pred = _pred([0.2, 0.4, 0.9], ["", "", "C"], ["contrast", "no_contrast", "contrast"])
    pred.labels[2] = "contrast"
    units = aggregate(pred, "patient", threshold=0.5)
    assert len(units) == 3
    mixed = _pred([0.2, 0.8], ["A", "A"], ["contrast", "no_contrast"])
    units = aggregate(mixed, "patient", threshold=0.5)
    assert units.predictions.labels == [None] and units.mixed == ["A"]
    assert "two classes" in units.notes[0]


# --------------------------------------------------------------------------- thresholds


def _oof(seed: int = 0, patients: int = 30, slices: int = 4) -> Predictions:
    rng = np.random.default_rng(seed)
    ids, labels, probs, folds = [], [], [], []
    for k in range(patients):
        positive = k % 2 == 0
        centre = rng.normal(0.62 if positive else 0.38, 0.08)
        for _ in range(slices):
            ids.append(f"P{k:02d}")
            labels.append(CLASSES[int(positive)])
            probs.append(float(np.clip(centre + rng.normal(0, 0.1), 0, 1)))
            folds.append(k % 3)
    return _pred(probs, ids, labels, folds=folds, threshold=0.5)


def test_cross_fitted_threshold_never_uses_the_units_it_calls() -> None:
    pred = _oof()
    units = aggregate(pred, "patient", "mean")
    t, folds = units.predictions.row_thresholds, units.predictions.folds
    assert t is not None and folds is not None
    plain = aggregate(pred, "patient", "mean", threshold=0.5).predictions
    for k in range(3):
        others = folds != k
        expected = choose_threshold(plain.y_true[others], plain.probs[others], "youden")
        assert np.all(t[folds == k] == expected)
    assert units.predictions.threshold == pytest.approx(np.median([t[folds == k][0] for k in range(3)]))
    # Changing the units of fold 0 leaves the threshold of fold 0 where it was.
    moved = _oof()
    moved.probs[moved.folds == 0] = 1.0 - moved.probs[moved.folds == 0]
    t2 = aggregate(moved, "patient", "mean").predictions.row_thresholds
    assert np.array_equal(t2[folds == 0], t[folds == 0])
    assert not np.array_equal(t2[folds == 1], t[folds == 1])


def test_level_threshold_is_chosen_on_units() -> None:
    pred = _pred([0.1, 0.9, 0.2, 0.3, 0.8, 0.7], ["A", "A", "B", "B", "C", "C"],
                 ["no_contrast"] * 4 + ["contrast"] * 2)
    # Patient means 0.5, 0.25, 0.75: only a cut between 0.5 and 0.75 gets all three right.
    t = choose_level_threshold(pred, "patient")
    assert 0.5 < t <= 0.75


def test_without_folds_or_threshold_units_use_the_image_threshold_and_say_so() -> None:
    pred = _pred([0.2, 0.9], ["A", "B"], ["no_contrast", "contrast"], threshold=0.37)
    units = aggregate(pred, "patient")
    assert units.predictions.threshold == 0.37
    assert any("image threshold" in note for note in units.notes)


# --------------------------------------------------------------------------- intervals


def _base(patients: int = 24) -> Predictions:
    rng = np.random.default_rng(5)
    labels = [CLASSES[k % 2] for k in range(patients)]
    probs = np.clip(rng.normal([0.65 if lab == "contrast" else 0.35 for lab in labels], 0.2), 0, 1)
    return _pred(probs, [f"P{k}" for k in range(patients)], labels)


def _duplicated(pred: Predictions, copies: int) -> Predictions:
    rows = np.repeat(np.arange(len(pred)), copies)
    return Predictions(paths=[f"{pred.paths[i]}#{j}" for j, i in enumerate(rows)], probs=pred.probs[rows],
                       threshold=pred.threshold, classes=pred.classes, labels=[pred.labels[i] for i in rows],
                       patients=[pred.patients[i] for i in rows])


def _does_not_shrink(base: float, duplicated: float) -> bool:
    """Copies of the same slices carry no new information: an honest interval stays as wide."""
    return duplicated >= 0.85 * base


def test_patient_bootstrap_does_not_shrink_when_slices_are_duplicated_but_wilson_does() -> None:
    base, dup = _base(), _duplicated(_base(), 6)
    mb, md = metrics_from_predictions(base), metrics_from_predictions(dup)
    assert md.n == 6 * mb.n and md.n_patients == mb.n_patients == 24
    for name in ("sensitivity", "specificity", "accuracy", "auc"):
        assert _does_not_shrink(mb.patient_ci[name].width, md.patient_ci[name].width), name
    # The image-level Wilson interval fails the same check: it treats the copies as new patients.
    assert not _does_not_shrink(mb.sensitivity_ci.width, md.sensitivity_ci.width)
    assert not _does_not_shrink(mb.accuracy_ci.width, md.accuracy_ci.width)
    assert md.patient_ci["sensitivity"].width > md.sensitivity_ci.width
    assert any("count images" in w for w in md.warnings)
    payload = md.to_json_dict()
    assert payload["unit"] == "image" and payload["n_patients"] == 24
    assert set(payload["patient_bootstrap_ci"]) >= {"sensitivity", "auc"}


def test_one_image_per_patient_bootstrap_is_close_to_wilson() -> None:
    m = metrics_from_predictions(_base(200))
    assert m.patient_ci["accuracy"].width == pytest.approx(m.accuracy_ci.width, rel=0.25)
    assert not any("count images" in w for w in m.warnings)


def test_cluster_bootstrap_is_reproducible_and_keeps_class_strata() -> None:
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(12), 3)
    y = (g % 2).astype(int)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    called = (p >= 0.5).astype(int)
    a = cluster_bootstrap(y, p, called, g)
    assert a == cluster_bootstrap(y, p, called, g)
    # Every replicate keeps both positive patients' strata and both negatives': AUC is always defined.
    assert not a["auc"].is_nan
    sens = called[y == 1].mean()
    assert 0.0 <= a["sensitivity"].low <= sens <= a["sensitivity"].high <= 1.0
    # Two patients per class: resampling them says little, so no interval rather than a zero-width one.
    few = cluster_bootstrap(y[:12], p[:12], called[:12], g[:12])
    assert all(ci.is_nan for ci in few.values())
    assert cluster_ids(["A", "", "A", ""], ["x", "y", "z", "w"]).tolist() == [0, 1, 0, 2]


def test_patient_level_metrics_count_patients() -> None:
    dup = _duplicated(_base(), 6)
    units = aggregate(dup, "patient", threshold=0.5)
    m = metrics_from_predictions(units.predictions, unit="patient")
    assert m.n == 24 and m.unit == "patient" and not m.patient_ci
    assert m.sensitivity_ci == wilson_interval(m.tp, m.tp + m.fn)
    assert any("count patients" in w for w in m.warnings)
