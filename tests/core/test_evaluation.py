"""Metrics, intervals, curves and threshold choice of ctviewer.core.metrics.evaluation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    roc_auc_score,
)

from ctviewer.core.metrics import evaluation as ev
from ctviewer.core.metrics.predictions import Predictions

Z95 = 1.959963984540054


def _noisy_scores(n: int = 80, seed: int = 3, decimals: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping classes; rounding makes many tied scores."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.18), 0.0, 1.0).round(decimals)
    return y, p


# --------------------------------------------------------------------------- Wilson


def test_wilson_five_of_six_matches_the_published_value() -> None:
    ci = ev.wilson_interval(5, 6)
    assert ci.low == pytest.approx(0.4365, abs=5e-5)
    assert ci.high == pytest.approx(0.9699, abs=5e-5)


@pytest.mark.parametrize("k,n", [(1, 7), (30, 41), (0, 12), (12, 12), (3, 300)])
def test_wilson_ends_are_where_the_score_test_statistic_equals_z(k: int, n: int) -> None:
    # Independent definition: the interval is every p0 with |k/n - p0| <= z * sqrt(p0 (1 - p0) / n).
    ci = ev.wilson_interval(k, n)
    p_hat = k / n
    for p0 in (ci.low, ci.high):
        if p0 in (0.0, 1.0) and p0 == p_hat:
            continue  # 0/n and n/n: the interval ends at the estimate itself
        assert abs(p_hat - p0) == pytest.approx(Z95 * math.sqrt(p0 * (1 - p0) / n), rel=1e-9)
    assert ci.low <= p_hat <= ci.high


def test_wilson_edges_and_errors() -> None:
    assert ev.wilson_interval(0, 10).low == 0.0 and ev.wilson_interval(10, 10).high == 1.0
    assert ev.wilson_interval(0, 0).is_nan
    wide, narrow = ev.wilson_interval(90, 100, 0.99), ev.wilson_interval(90, 100, 0.90)
    assert wide.width > narrow.width
    with pytest.raises(ValueError):
        ev.wilson_interval(7, 6)
    with pytest.raises(ValueError):
        ev.wilson_interval(1, 6, confidence=1.5)


# --------------------------------------------------------------------------- AUC and DeLong


HAND_POS = [0.9, 0.8, 0.6, 0.4]
HAND_NEG = [0.7, 0.3, 0.2, 0.4]
# Counted by hand, pair by pair (negatives below each positive, a tie counts one half):
# 0.9 -> 4, 0.8 -> 4, 0.6 -> 3, 0.4 -> 2 + 0.5; AUC = 13.5 / 16.
HAND_AUC = 13.5 / 16


def test_auc_of_a_hand_made_ranking() -> None:
    y = [1] * 4 + [0] * 4
    p = HAND_POS + HAND_NEG
    est = ev.delong_auc(y, p)
    assert est.auc == pytest.approx(HAND_AUC)
    assert est.auc == pytest.approx(roc_auc_score(y, p))
    assert ev.compute_metrics(y, p, 0.5).auc == pytest.approx(HAND_AUC)


def _delong_by_pairs(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """DeLong's structural components from all m*n pairs (the O(n^2) definition)."""
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    var = v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size
    return float(psi.mean()), float(var)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_variance_matches_the_pairwise_definition(seed: int) -> None:
    y, p = _noisy_scores(n=60 + 20 * seed, seed=seed, decimals=1)  # coarse rounding: many ties
    auc, var = _delong_by_pairs(p[y == 1], p[y == 0])
    est = ev.delong_auc(y, p)
    assert est.auc == pytest.approx(auc, rel=1e-12)
    assert est.se ** 2 == pytest.approx(var, rel=1e-10)
    assert est.ci.low == pytest.approx(max(0.0, auc - Z95 * math.sqrt(var)))
    assert est.ci.high == pytest.approx(min(1.0, auc + Z95 * math.sqrt(var)))


def test_delong_on_the_hand_made_ranking() -> None:
    auc, var = _delong_by_pairs(np.array(HAND_POS), np.array(HAND_NEG))
    est = ev.delong_auc([1] * 4 + [0] * 4, HAND_POS + HAND_NEG)
    assert est.se ** 2 == pytest.approx(var)


def test_delong_without_a_class_or_with_one_member() -> None:
    assert math.isnan(ev.delong_auc([1, 1, 1], [0.2, 0.5, 0.9]).auc)
    one_negative = ev.delong_auc([1, 1, 0], [0.9, 0.8, 0.1])
    assert one_negative.auc == 1.0 and math.isnan(one_negative.se) and one_negative.ci.is_nan


# --------------------------------------------------------------------------- compute_metrics


def test_point_metrics_agree_with_scikit_learn() -> None:
    y, p = _noisy_scores()
    m = ev.compute_metrics(y, p, 0.5)
    yp = (p >= 0.5).astype(int)
    (tn, fp), (fn, tp) = confusion_matrix(y, yp, labels=[0, 1])
    assert (m.tp, m.tn, m.fp, m.fn) == (tp, tn, fp, fn)
    assert ev.confusion(y, yp) == ev.Confusion(tp=tp, tn=tn, fp=fp, fn=fn)
    assert m.sensitivity == pytest.approx(tp / (tp + fn))
    assert m.specificity == pytest.approx(tn / (tn + fp))
    assert m.ppv == pytest.approx(tp / (tp + fp)) and m.npv == pytest.approx(tn / (tn + fn))
    assert m.balanced_accuracy == pytest.approx(balanced_accuracy_score(y, yp))
    assert m.f1 == pytest.approx(f1_score(y, yp))
    assert m.brier == pytest.approx(brier_score_loss(y, p))
    assert m.auc == pytest.approx(roc_auc_score(y, p))
    assert m.sensitivity_ci == ev.wilson_interval(tp, tp + fn)
    assert m.accuracy_ci == ev.wilson_interval(tp + tn, len(y))


def test_bootstrap_intervals_are_reproducible_and_hold_the_estimate() -> None:
    y, p = _noisy_scores(n=120)
    a, b = ev.compute_metrics(y, p, 0.45), ev.compute_metrics(y, p, 0.45)
    assert a.balanced_accuracy_ci == b.balanced_accuracy_ci and a.f1_ci == b.f1_ci
    for name in ("balanced_accuracy", "f1"):
        ci = getattr(a, f"{name}_ci")
        assert ci.low < getattr(a, name) < ci.high
    # The bootstrap spread of balanced accuracy shrinks roughly like 1/sqrt(n).
    big = ev.compute_metrics(np.tile(y, 16), np.tile(p, 16), 0.45)
    assert big.balanced_accuracy_ci.width < a.balanced_accuracy_ci.width / 2.5


def test_json_dict_follows_the_contract_and_is_strict_json() -> None:
    y, p = _noisy_scores()
    d = ev.compute_metrics(y, p, 0.5, classes=("no_contrast", "contrast")).to_json_dict()
    for key in ("n", "tp", "tn", "fp", "fn", "sensitivity", "specificity", "accuracy",
                "balanced_accuracy", "auc", "threshold"):
        assert key in d
    for key in ("sensitivity", "specificity", "ppv", "npv", "accuracy", "balanced_accuracy", "f1", "auc"):
        low, high = d[f"{key}_ci"]
        assert low <= d[key] <= high
    assert d["classes"] == ["no_contrast", "contrast"]
    json.dumps(d, allow_nan=False)


def test_no_positives() -> None:
    m = ev.compute_metrics([0, 0, 0, 0, 0], [0.1, 0.2, 0.7, 0.3, 0.4], 0.5)
    assert (m.n_positive, m.tn, m.fp) == (0, 4, 1)
    assert math.isnan(m.sensitivity) and m.sensitivity_ci.is_nan
    assert math.isnan(m.auc) and m.auc_ci.is_nan and math.isnan(m.balanced_accuracy)
    assert m.specificity == pytest.approx(0.8) and m.npv == 1.0 and m.ppv == 0.0
    assert any("no positives" in w for w in m.warnings)
    d = m.to_json_dict()
    assert d["sensitivity"] is None and d["auc_ci"] == [None, None]
    json.dumps(d, allow_nan=False)


def test_no_negatives_and_no_positive_calls() -> None:
    m = ev.compute_metrics([1, 1, 1], [0.9, 0.8, 0.2], 0.5, classes=("no_contrast", "contrast"))
    assert math.isnan(m.specificity) and m.sensitivity == pytest.approx(2 / 3)
    assert any("no negatives (no_contrast)" in w for w in m.warnings)
    called_none = ev.compute_metrics([1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4], 0.5)
    assert math.isnan(called_none.ppv) and any("PPV is undefined" in w for w in called_none.warnings)


def test_all_correct_says_the_intervals_understate() -> None:
    y = [1] * 40 + [0] * 6
    p = [0.9] * 40 + [0.1] * 6
    m = ev.compute_metrics(y, p, 0.5, classes=("no_contrast", "contrast"))
    assert (m.sensitivity, m.specificity, m.accuracy, m.auc) == (1.0, 1.0, 1.0, 1.0)
    assert m.auc_se == 0.0
    # Wilson keeps honest room below 1, most of all for the 6 negatives.
    assert m.specificity_ci.low < 0.7 and m.sensitivity_ci.low > 0.85
    joined = " ".join(m.warnings)
    assert "specificity rests on 6 negatives (no_contrast): 95% CI 0.61-1.00" in joined
    assert "zero width" in joined and "understate" in joined


def test_ties_in_probabilities() -> None:
    m = ev.compute_metrics([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5], 0.5)
    assert m.auc == 0.5 and (m.tp, m.fp) == (2, 2)  # prob == threshold is called positive
    assert m.auc_se == 0.0 and any("tied scores" in w for w in m.warnings)
    assert ev.choose_threshold([1, 0, 1, 0], [0.5] * 4) == 0.75  # J is 0 everywhere: the highest
    m = ev.compute_metrics([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5], 0.6)
    assert (m.tn, m.fn) == (2, 2)


@pytest.mark.parametrize(
    "y,p,match",
    [
        ([1, 0, 1], [0.2, float("nan"), 0.3], "NaN"),
        ([1, 0], [0.2, float("inf")], "NaN or infinite"),
        ([1, 0], [0.2, 1.3], r"\[0, 1\]"),
        ([1, 2], [0.2, 0.3], "only 0"),
        ([1, 0, 1], [0.2, 0.3], "entries"),
        ([], [], "no labelled"),
    ],
)
def test_bad_input_is_a_clear_value_error(y: list, p: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ev.compute_metrics(y, p, 0.5)


def test_metrics_from_predictions_uses_labelled_rows_only() -> None:
    pred = Predictions(
        paths=["a", "b", "c", "d", "e"], probs=[0.9, 0.2, 0.7, 0.4, 0.99], threshold=0.5,
        classes=("neg", "pos"), labels=["pos", "neg", "neg", "pos", None],
    )
    m = ev.metrics_from_predictions(pred)
    ref = ev.compute_metrics([1, 0, 0, 1], [0.9, 0.2, 0.7, 0.4], 0.5)
    assert (m.n, m.tp, m.tn, m.fp, m.fn, m.auc) == (ref.n, ref.tp, ref.tn, ref.fp, ref.fn, ref.auc)
    assert m.classes == ("neg", "pos") and any("1 unlabelled" in w for w in m.warnings)
    assert ev.metrics_from_predictions(pred, threshold=0.3).tp == 2
    with pytest.raises(ValueError, match="none of the"):
        ev.metrics_from_predictions(Predictions(paths=["a"], probs=[0.5], threshold=0.5, classes=("n", "p")))


# --------------------------------------------------------------------------- thresholds


def _counts(y: np.ndarray, p: np.ndarray, t: float) -> tuple[int, int]:
    called = p >= t
    return int((called & (y == 1)).sum()), int((~called & (y == 0)).sum())


def test_candidate_thresholds_are_midpoints_that_reproduce_counts() -> None:
    y, p = _noisy_scores()
    cands = ev.candidate_thresholds(p)
    scores = np.unique(p)
    assert cands.size == scores.size + 1 and np.all(np.diff(cands) > 0)
    assert cands[1] == pytest.approx((scores[0] + scores[1]) / 2)
    assert not np.isin(cands[1:-1], p).any()  # every threshold sits in a gap between scores
    table = ev.metrics_at_thresholds(y, p)
    for i in range(len(table)):
        assert (table.tp[i], table.tn[i]) == _counts(y, p, table.thresholds[i])
    assert table.tp[0] == (y == 1).sum() and table.tn[-1] == (y == 0).sum()
    # Scores at the ends of [0, 1] and adjacent floats still get separating thresholds.
    edge = np.array([0.0, 0.3, np.nextafter(0.3, 1.0), 1.0])
    c = ev.candidate_thresholds(edge)
    assert [int((edge >= t).sum()) for t in c] == [4, 3, 2, 1, 0]


def test_youden_is_the_best_j_ties_take_the_widest_run_centre() -> None:
    y, p = _noisy_scores()
    t = ev.choose_threshold(y, p, "youden")
    m, n = (y == 1).sum(), (y == 0).sum()
    best = max(_counts(y, p, c)[0] / m + _counts(y, p, c)[1] / n for c in ev.candidate_thresholds(p))
    tp, tn = _counts(y, p, t)
    assert tp / m + tn / n == pytest.approx(best)
    # Separable classes: the threshold lies in the gap, halfway.
    assert ev.choose_threshold([0, 0, 1, 1], [0.1, 0.3, 0.6, 0.9]) == pytest.approx(0.45)
    # J ties between 0.35 and 0.75 (both J = 0.5, apart): the higher threshold wins.
    assert ev.choose_threshold([0, 1, 0, 1], [0.2, 0.5, 0.6, 0.9]) == pytest.approx(0.75)
    # A run of equal best J: a positive and a negative tied at 0.5 and again at 0.6, so
    # candidates 0.35, 0.55 and 0.7 all reach J = 0.5. The centre of the run is taken, not an end.
    y, p = [0, 0, 1, 0, 1, 0, 1, 1], [0.1, 0.2, 0.5, 0.5, 0.6, 0.6, 0.8, 0.9]
    table = ev.metrics_at_thresholds(y, p)
    j = table.tp / 4 + table.tn / 4 - 1
    assert [round(t, 3) for t in table.thresholds[j == j.max()]] == [0.35, 0.55, 0.7]
    assert ev.choose_threshold(y, p) == pytest.approx(0.55)


def test_target_sensitivity_and_specificity() -> None:
    y, p = _noisy_scores()
    cands = ev.candidate_thresholds(p)
    m, n = (y == 1).sum(), (y == 0).sum()
    t = ev.choose_threshold(y, p, "sensitivity", 0.9)
    assert _counts(y, p, t)[0] / m >= 0.9
    assert all(_counts(y, p, c)[0] / m < 0.9 for c in cands[cands > t])  # the highest that reaches it
    s = ev.choose_threshold(y, p, "specificity", 0.8)
    assert _counts(y, p, s)[1] / n >= 0.8
    assert all(_counts(y, p, c)[1] / n < 0.8 for c in cands[cands < s])  # the lowest that reaches it
    # The chosen threshold gives the same counts through compute_metrics.
    assert ev.compute_metrics(y, p, t).sensitivity >= 0.9
    # 9 of 10 meets a target of exactly 0.9 despite float rounding.
    yy = np.r_[np.ones(10, int), np.zeros(3, int)]
    pp = np.r_[np.linspace(0.5, 0.95, 10), [0.1, 0.2, 0.3]]
    assert _counts(yy, pp, ev.choose_threshold(yy, pp, "sensitivity", 0.9))[0] == 9


@pytest.mark.parametrize(
    "y,rule,target,match",
    [
        ([1, 1], "youden", None, "both classes"),
        ([0, 1], "youden", 0.5, "no target"),
        ([0, 1], "sensitivity", None, "target between"),
        ([0, 1], "specificity", 1.2, "target between"),
        ([0, 0], "sensitivity", 0.9, "positive images"),
        ([1, 1], "specificity", 0.9, "negative images"),
        ([0, 1], "cost", None, "unknown threshold rule"),
    ],
)
def test_threshold_rule_errors(y: list, rule: str, target: float | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ev.choose_threshold(y, [0.3, 0.6], rule, target)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- curves


def test_roc_pr_and_calibration() -> None:
    y, p = _noisy_scores(n=200, decimals=12)
    roc = ev.roc_curve(y, p)
    assert np.trapezoid(roc.tpr, roc.fpr) == pytest.approx(roc_auc_score(y, p))
    assert roc.fpr[0] == 0.0 and roc.tpr[-1] == 1.0 and np.isinf(roc.thresholds[0])
    pr = ev.pr_curve(y, p)
    assert pr.average_precision == pytest.approx(average_precision_score(y, p))
    assert pr.prevalence == pytest.approx(y.mean())
    cal = ev.calibration(y, p, n_bins=5)
    assert cal.count.sum() == y.size and cal.brier == pytest.approx(brier_score_loss(y, p))
    filled = cal.count > 0
    observed, predicted = calibration_curve(y, p, n_bins=5)  # same bins: no score sits on an edge
    assert not np.isin(p, cal.edges[1:-1]).any()
    np.testing.assert_allclose(cal.observed_fraction[filled], observed)
    np.testing.assert_allclose(cal.mean_predicted[filled], predicted)
    with pytest.raises(ValueError, match="both classes"):
        ev.roc_curve([1, 1], [0.2, 0.3])


def test_calibration_empty_bins_and_edges() -> None:
    cal = ev.calibration([0, 1, 1], [0.0, 1.0, 0.95], n_bins=4)
    assert cal.count.tolist() == [1, 0, 0, 2]
    assert math.isnan(cal.mean_predicted[1]) and cal.observed_fraction[3] == 1.0
    assert cal.ece == pytest.approx((1 * 0.0 + 2 * abs(1.0 - 0.975)) / 3)


def test_metric_rows_cover_every_interval() -> None:
    y, p = _noisy_scores()
    m = ev.compute_metrics(y, p, 0.5)
    rows = {r.key: r for r in ev.metric_rows(m)}
    assert rows["auc"].value == m.auc and rows["auc"].ci == m.auc_ci
    assert rows["brier"].ci is None and set(ev.INTERVAL_METRICS) <= set(rows)
