"""Doctor checks of data, splits and histories: each fires when it should and stays quiet on a clean setup.

No TensorFlow here: datasets are built from `Item`s (these checks never open files).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ctviewer.core.data.dataset import Dataset, Item
from ctviewer.core.data.splits import Folds, Split, keras_tail_split, kfold, train_validation_test_split
from ctviewer.core.doctor import (
    CODES,
    Finding,
    check_class_imbalance,
    check_duplicate_leak,
    check_history,
    check_patient_ids,
    check_patient_leak,
    check_slices_per_patient,
    check_small_class,
    check_tail_split,
    findings_to_json,
    format_finding,
    run_checks,
)
from ctviewer.core.metrics.evaluation import wilson_interval


def make_dataset(n_pos: int, n_neg: int, slices: int = 2, shuffled: bool = False, patient_source: str = "dicom",
                 seed: int = 0) -> Dataset:
    """Class-sorted (folder order) unless ``shuffled``; every image has its own pixel hash."""
    items = []
    for label, n in (("contrast", n_pos), ("no_contrast", n_neg)):
        for p in range(n):
            for s in range(slices):
                items.append(Item(path=f"/d/{label}/P{p}/IM{s}.dcm", label=label, patient=f"{label}-P{p}",
                                  patient_source=patient_source,  # type: ignore[arg-type]
                                  pixel_hash=f"h-{label}-{p}-{s}"))
    if shuffled:
        rng = np.random.default_rng(seed)
        items = [items[i] for i in rng.permutation(len(items))]
    return Dataset(items=items, classes=("contrast", "no_contrast"), positive="contrast", source="fake")


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


# --------------------------------------------------------------------------- Finding


def test_slices_per_patient_is_quiet_when_even_and_warns_when_one_patient_dominates():
    assert check_slices_per_patient(make_dataset(10, 10, slices=2)) == []
    ds = make_dataset(10, 10, slices=1)
    big = [Item(path=f"/d/contrast/P0/extra{s}.dcm", label="contrast", patient="contrast-P0", patient_source="dicom",
                pixel_hash=f"x{s}") for s in range(4)]
    uneven = Dataset(items=ds.items + big, classes=ds.classes, positive="contrast", source="fake")
    [f] = check_slices_per_patient(uneven)
    assert f.code == "slices-per-patient" and f.severity == "warning"  # 5 of 24 images: 21% > 10%
    assert f.evidence["largest_patient"] == "contrast-P0" and f.evidence["max"] == 5
    assert "misleading" in f.message
    spread = Dataset(items=make_dataset(30, 30, slices=1).items + big[:1], classes=ds.classes, positive="contrast",
                     source="fake")
    [g] = check_slices_per_patient(spread)
    assert g.severity == "info" and "1 to 2 slices" in g.message


def test_finding_is_json_ready_and_validated():
    f = Finding("small-class", "warning", "msg", {"x": np.float32(0.25), "n": np.int64(3), "nan": float("nan"),
                                                   "arr": np.array([1, 2]), "t": (1, 2)}, "fix it")
    data = json.loads(json.dumps(f.to_json_dict(), allow_nan=False))
    assert data["evidence"] == {"x": 0.25, "n": 3, "nan": None, "arr": [1, 2], "t": [1, 2]}
    assert set(data) == {"code", "severity", "message", "evidence", "fix"}
    with pytest.raises(ValueError):
        Finding("small-class", "fatal", "m")
    with pytest.raises(ValueError):
        Finding("not-a-code", "info", "m")
    text = format_finding(f)
    assert text.startswith("WARNING small-class") and "fix: fix it" in text


def test_every_code_the_issue_asks_for_exists():
    for code in ("tail-split-one-class", "small-class", "patient-leak", "duplicate-leak", "class-imbalance",
                 "prediction-collapse", "batchnorm-mode-mismatch", "unstable-predictions", "perfect-validation",
                 "unnormalised-input", "baseline-beats-model"):
        assert code in CODES


# --------------------------------------------------------------------------- tail split


def test_tail_split_fires_on_class_sorted_data_with_what_the_tail_holds():
    ds = make_dataset(10, 10)  # 40 images: contrast first, then no_contrast
    [f] = check_tail_split(ds)
    assert f.code == "tail-split-one-class" and f.severity == "warning"
    tails = f.evidence["tail_splits"]
    assert tails["0.2"]["n_validation"] == 8 and tails["0.2"]["class_counts"] == {"no_contrast": 8}
    assert tails["0.1"]["n_validation"] == 4
    assert tails["0.2"]["first_file"] == ds.items[32].path


def test_tail_split_is_an_error_when_the_split_was_a_keras_tail_split():
    ds = make_dataset(10, 10)
    [f] = check_tail_split(ds, keras_tail_split(ds, 0.2))
    assert f.severity == "error" and f.evidence["validation_class_counts"] == {"no_contrast": 8}


def test_tail_split_quiet_on_shuffled_data_and_on_grouped_split():
    ds = make_dataset(10, 10, shuffled=True, seed=1)
    assert check_tail_split(ds) == []
    sorted_ds = make_dataset(10, 10)
    # A tail split on shuffled data holds both classes: no finding even when used.
    assert check_tail_split(ds, keras_tail_split(ds, 0.2)) == []
    # Sorted data is still a hazard (warning), but a grouped split does not make it an error.
    found = check_tail_split(sorted_ds, train_validation_test_split(sorted_ds, 0.2, seed=0))
    assert [f.severity for f in found] == ["warning"]


# --------------------------------------------------------------------------- small class


def test_small_class_one_class_validation_is_an_error():
    ds = make_dataset(10, 10)
    found = check_small_class(ds, keras_tail_split(ds, 0.2))
    assert codes(found) == ["small-class"] and found[0].severity == "error"
    assert found[0].evidence["class_counts"] == {"contrast": 0, "no_contrast": 8}
    assert "sensitivity" in found[0].message


def test_small_class_uses_the_best_case_wilson_width():
    # 6 negatives in the test set: even 6/6 has a wide interval.
    ds = make_dataset(20, 6, slices=2)
    items = ds.items
    test_idx = set(range(6)) | set(range(40, 46))  # 6 contrast + 6 no_contrast images
    roles = ["test" if i in test_idx else "train" for i in range(len(items))]
    split = Split(tuple(ds.paths), tuple(ds.patients.tolist()), tuple(roles), seed=0)
    found = check_small_class(ds, split)
    assert {f.evidence["class"] for f in found} == {"contrast", "no_contrast"}
    neg = next(f for f in found if f.evidence["class"] == "no_contrast")
    expected = wilson_interval(6, 6)
    assert neg.evidence["metric"] == "specificity"
    assert neg.evidence["best_case_ci"][0] == pytest.approx(expected.low, abs=1e-6)
    assert neg.evidence["ci_width"] > 0.30


def test_small_class_quiet_with_enough_of_each_class():
    ds = make_dataset(30, 30, slices=1)
    split = train_validation_test_split(ds, validation=0.34, seed=0)  # ~10 per class in validation
    assert check_small_class(ds, split) == []


def test_small_class_checks_every_fold_of_a_kfold():
    ds = make_dataset(10, 10, slices=1)
    found = check_small_class(ds, kfold(ds, k=5, seed=0))  # 2 per class per fold
    assert found and {f.evidence["set"] for f in found} <= {f"fold {i}" for i in range(1, 6)}


# --------------------------------------------------------------------------- leaks


def test_patient_leak_fires_for_a_split_that_cuts_a_patient():
    ds = make_dataset(5, 5, slices=3)
    split = keras_tail_split(ds, 0.25)  # 30 images, the last 7 start inside patient no_contrast-P2
    [f] = check_patient_leak(split, ds)
    assert f.code == "patient-leak" and f.evidence["patients"] == ["no_contrast-P2"]
    assert f.evidence["roles_by_patient"]["no_contrast-P2"] == ["train", "validation"]


def test_patient_leak_quiet_for_grouped_split_and_folds():
    ds = make_dataset(8, 8, slices=3)
    assert check_patient_leak(train_validation_test_split(ds, 0.2, 0.2, seed=2), ds) == []
    assert check_patient_leak(kfold(ds, k=4, seed=0), ds) == []


def test_patient_leak_fires_for_folds_sharing_a_patient():
    ds = make_dataset(4, 4, slices=2)
    fold_of = tuple(i % 2 for i in range(len(ds)))  # alternate slices: every patient in both folds
    folds = Folds(tuple(ds.paths), tuple(ds.patients.tolist()), fold_of, k=2, seed=0)
    [f] = check_patient_leak(folds, ds)
    assert f.evidence["n_patients_shared"] == 8


def _with_duplicate(ds: Dataset, a: int, b: int) -> Dataset:
    from dataclasses import replace

    items = list(ds.items)
    items[b] = replace(items[b], pixel_hash=items[a].pixel_hash)
    return replace(ds, items=items)


def test_duplicate_leak_fires_when_copies_are_on_both_sides():
    ds = make_dataset(6, 6, slices=2)
    split = train_validation_test_split(ds, 0.3, seed=0)
    train_i, val_i = split.indices("train")[0], split.indices("validation")[0]
    dup = _with_duplicate(ds, int(train_i), int(val_i))
    [f] = check_duplicate_leak(dup, split)
    assert f.severity == "error" and set(f.evidence["example_roles"]) == {"train", "validation"}
    assert sorted(f.evidence["example_group"]) == sorted([ds.paths[train_i], ds.paths[val_i]])


def test_duplicate_leak_without_split_flags_copies_across_patients_or_labels():
    ds = make_dataset(4, 4, slices=2)
    across = _with_duplicate(ds, 0, 2)  # contrast-P0 and contrast-P1
    [f] = check_duplicate_leak(across)
    assert f.severity == "warning" and f.evidence["n_groups_across_patients"] == 1
    conflicting = _with_duplicate(ds, 0, 9)  # a contrast image copied into no_contrast
    [g] = check_duplicate_leak(conflicting)
    assert g.severity == "error" and g.evidence["n_groups_conflicting_labels"] == 1


def test_duplicate_leak_quiet_without_duplicates_or_within_one_side():
    ds = make_dataset(6, 6, slices=2)
    assert check_duplicate_leak(ds) == []
    same_patient = _with_duplicate(ds, 0, 1)  # two slices of one patient: a grouped split keeps them together
    assert check_duplicate_leak(same_patient) == []
    assert check_duplicate_leak(same_patient, train_validation_test_split(same_patient, 0.3, seed=0)) == []


def test_no_patient_ids_fires_only_for_file_patients():
    assert codes(check_patient_ids(make_dataset(3, 3, patient_source="file"))) == ["no-patient-ids"]
    assert check_patient_ids(make_dataset(3, 3)) == []


# --------------------------------------------------------------------------- imbalance


def test_class_imbalance_reports_majority_accuracy():
    ds = make_dataset(30, 10, slices=1)
    [f] = check_class_imbalance(ds)
    assert f.evidence["majority"] == "contrast"
    assert f.evidence["always_majority_accuracy"] == pytest.approx(0.75)
    assert "75%" in f.message


def test_class_imbalance_quiet_when_balanced():
    assert check_class_imbalance(make_dataset(11, 10, slices=1)) == []


# --------------------------------------------------------------------------- history


def test_perfect_validation_fires_when_validation_is_perfect_before_training_is_good():
    history = {"loss": [0.9, 0.7, 0.6, 0.5], "accuracy": [0.55, 0.62, 0.7, 0.8],
               "val_loss": [0.2, 0.1, 0.1, 0.05], "val_accuracy": [1.0, 1.0, 1.0, 1.0]}
    found = check_history(history)
    perfect = next(f for f in found if f.code == "perfect-validation")
    assert perfect.evidence["epochs"] == [1, 2, 3] and perfect.evidence["metric"] == "accuracy"


def test_validation_all_or_nothing_fires_for_0_1_accuracy():
    history = {"accuracy": [0.5, 0.52, 0.55], "val_accuracy": [0.0, 0.0, 1.0]}
    found = check_history(history)
    assert "validation-all-or-nothing" in codes(found)


def test_history_quiet_for_a_normal_run_and_accepts_a_history_object():
    class History:  # what keras.callbacks.History exposes
        history = {"loss": [0.7, 0.5, 0.4], "accuracy": [0.6, 0.75, 0.85],
                   "val_loss": [0.68, 0.55, 0.5], "val_accuracy": [0.55, 0.7, 0.8]}

    assert check_history(History()) == []
    # Perfect validation after training is also good is not suspicious.
    assert check_history({"accuracy": [0.97, 0.99, 1.0], "val_accuracy": [1.0, 1.0, 1.0]}) == []


# --------------------------------------------------------------------------- run_checks


def test_run_checks_orders_by_severity_and_is_quiet_on_a_clean_setup():
    dirty = make_dataset(10, 10)
    found = run_checks(dirty, keras_tail_split(dirty, 0.2),
                       history={"accuracy": [0.5, 0.5, 0.5], "val_accuracy": [0.0, 0.0, 0.0]})
    severities = [f.severity for f in found]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)
    assert {"tail-split-one-class", "small-class", "validation-all-or-nothing"} <= set(codes(found))
    json.dumps(findings_to_json(found), allow_nan=False)

    clean = make_dataset(30, 30, slices=2, shuffled=True, seed=4)
    split = train_validation_test_split(clean, 0.34, seed=0)
    history = {"accuracy": [0.6, 0.8, 0.9], "val_accuracy": [0.58, 0.75, 0.85]}
    assert run_checks(clean, split, history) == []


def test_importing_the_doctor_does_not_import_tensorflow_or_sklearn():
    code = ("import sys, ctviewer.core.doctor, ctviewer.cli.doctor, ctviewer.core.explain.baseline, "
            "ctviewer.core.doctor.model_checks, ctviewer.core.doctor.model_source; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.siim
def test_siim_folder_order_is_a_tail_split_hazard_and_nothing_else(siim_dir):
    from ctviewer.core.data.dataset import discover

    ds = discover(siim_dir, positive="contrast")
    found = run_checks(ds)
    assert codes(found) == ["tail-split-one-class", "slices-per-patient"]
    assert found[0].evidence["tail_splits"]["0.2"]["class_counts"] == {"no_contrast": 20}
    # 54 patients give 1 to 6 of the 100 slices; 9 have scans of both classes.
    spread = found[1]
    assert spread.severity == "info" and spread.evidence["n_patients"] == 54 and spread.evidence["max"] == 6
    assert spread.evidence["n_patients_with_two_classes"] == 9
    # The question's split itself: one class in validation, and (files are named by image, not by
    # patient) patients on both sides.
    found = run_checks(ds, keras_tail_split(ds, 0.2))
    assert set(codes(found)) == {"tail-split-one-class", "small-class", "patient-leak", "slices-per-patient"}
    assert all(f.severity == "error" for f in found if f.code != "slices-per-patient")


def test_cli_checks_a_prediction_report_and_a_split_record(tmp_path, capsys):
    """No model needed: a collapsed prediction CSV and a recorded tail split are enough evidence."""
    from ctviewer.cli import main
    from ctviewer.core.data.dataset import discover
    from ctviewer.core.data.demo import make_demo_dataset
    from ctviewer.core.metrics.predictions import Predictions
    from ctviewer.core.metrics.report import write_predictions_csv

    folder = make_demo_dataset(tmp_path / "ct", n_patients=5, slices_per_patient=2, size=48)
    ds = discover(folder)
    collapsed = Predictions(paths=ds.paths, probs=np.full(len(ds), 0.8), threshold=0.5,
                            classes=("no_contrast", "contrast"), labels=[it.label for it in ds.items],
                            patients=ds.patients.tolist())
    write_predictions_csv(collapsed, tmp_path / "pred.csv")
    (tmp_path / "split.json").write_text(json.dumps(keras_tail_split(ds, 0.2).to_json_dict()))
    code = main(["doctor", str(folder), "--predictions", str(tmp_path / "pred.csv"),
                 "--split", str(tmp_path / "split.json"), "--json"])
    assert code == 0
    found = {f["code"]: f for f in json.loads(capsys.readouterr().out)}
    assert found["prediction-collapse"]["severity"] == "error"
    assert found["tail-split-one-class"]["severity"] == "error"
    # Constant probabilities rank nothing (AUC 0.5): the histogram baseline beats them.
    assert found["baseline-beats-model"]["evidence"]["model_auc"] == pytest.approx(0.5)
    assert found["baseline-beats-model"]["evidence"]["baseline_auc"] > 0.6
    (tmp_path / "bad_split.json").write_text(json.dumps({"items": [{"path": "x"}]}))
    assert main(["doctor", str(folder), "--split", str(tmp_path / "bad_split.json")]) == 1
    assert "not a ctviewer split record" in capsys.readouterr().err


def test_run_checks_asks_before_each_step_stops_when_told_and_runs_unchanged_otherwise():
    from ctviewer.core.errors import Cancelled

    ds = make_dataset(6, 6)
    split = keras_tail_split(ds, 0.2)
    with pytest.raises(Cancelled):
        run_checks(ds, split, should_stop=lambda: True)
    steps: list[str] = []
    asked: list[int] = []
    run_checks(ds, split, on_event=lambda e: steps.append(e.text), should_stop=lambda: bool(asked.append(1)))
    assert len(asked) == len(steps) >= 1  # asked before every step
    assert codes(run_checks(ds, split, should_stop=lambda: False)) == codes(run_checks(ds, split))
