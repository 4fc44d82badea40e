"""Splits: grouped by patient, stratified, shuffled, recorded, reproducible; clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ctviewer.core.data.dataset import Dataset, Item
from ctviewer.core.data.splits import (
    TEST,
    TRAIN,
    VALIDATION,
    Folds,
    Split,
    holdout_assignment,
    keras_tail_split,
    kfold,
    train_validation_test_split,
)
from ctviewer.core.errors import DatasetError


def fake_dataset(n_pos_patients: int, n_neg_patients: int, slices=(1, 2, 3), sorted_by_class: bool = True) -> Dataset:
    """Items only (splits never open files): patients with 1-3 slices, ordered class by class."""
    items = []
    rng = np.random.default_rng(123)
    for label, n in (("contrast", n_pos_patients), ("no_contrast", n_neg_patients)):
        for p in range(n):
            for s in range(int(rng.choice(slices))):
                items.append(Item(path=f"/d/{label}/p{p}_{s}.dcm", label=label, patient=f"{label}-{p}",
                                  patient_source="dicom"))
    if not sorted_by_class:
        items = [items[i] for i in rng.permutation(len(items))]
    return Dataset(items=items, classes=("contrast", "no_contrast"), positive="contrast", source="fake")


def test_kfold_never_shares_a_patient_and_tests_every_image_once():
    ds = fake_dataset(12, 15)
    folds = kfold(ds, k=5, seed=3)
    assert sorted(set(folds.fold_of)) == [0, 1, 2, 3, 4]
    fold_by_patient: dict[str, set[int]] = {}
    for patient, fold in zip(folds.patients, folds.fold_of):
        fold_by_patient.setdefault(patient, set()).add(fold)
    assert all(len(f) == 1 for f in fold_by_patient.values())
    for fold in range(5):
        test, train = folds.test_indices(fold), folds.train_indices(fold)
        assert len(np.intersect1d(test, train)) == 0 and len(test) + len(train) == len(ds)
        assert not set(ds.patients[test]) & set(ds.patients[train])


def test_class_sorted_dataset_still_gives_mixed_folds_and_validation():
    ds = fake_dataset(10, 10, sorted_by_class=True)
    y = ds.y
    folds = kfold(ds, k=5, seed=0)
    for fold in range(5):
        assert set(y[folds.test_indices(fold)]) == {0, 1}
    split = train_validation_test_split(ds, validation=0.2, test=0.2, seed=0)
    for role in (TRAIN, VALIDATION, TEST):
        assert set(y[split.indices(role)]) == {0, 1}, role
    assert not split.shared_patients()
    # The tail split of Keras on the same data validates on one class only: the bug we avoid.
    tail = keras_tail_split(ds, 0.2)
    assert set(y[tail.indices(VALIDATION)]) == {0}


def test_split_is_reproducible_from_seed_and_shuffled_by_it():
    ds = fake_dataset(15, 15)
    a = train_validation_test_split(ds, validation=0.25, seed=7)
    b = train_validation_test_split(ds, validation=0.25, seed=7)
    assert a == b
    others = {train_validation_test_split(ds, validation=0.25, seed=s).roles for s in range(8)}
    assert len(others) > 1
    assert kfold(ds, 4, seed=1) == kfold(ds, 4, seed=1)
    assert len({kfold(ds, 4, seed=s).fold_of for s in range(6)}) > 1


def test_holdout_fraction_is_close_and_grouped():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(60), 2)
    y = np.repeat(rng.integers(0, 2, 60), 2)
    mask = holdout_assignment(y, groups, 0.25, seed=5)
    assert 0.15 < mask.mean() < 0.35
    assert not set(groups[mask]) & set(groups[~mask])
    assert set(y[mask]) == {0, 1} and set(y[~mask]) == {0, 1}


def test_holdout_with_minimum_patients_still_has_both_classes():
    ds = fake_dataset(2, 2, slices=(3,))
    split = train_validation_test_split(ds, validation=0.2, seed=0)
    y = ds.y
    assert set(y[split.indices(VALIDATION)]) == {0, 1}
    assert set(y[split.indices(TRAIN)]) == {0, 1}
    assert not split.shared_patients()


def test_split_json_round_trip():
    ds = fake_dataset(6, 6)
    split = train_validation_test_split(ds, validation=0.3, seed=2)
    again = Split.from_json_dict(json.loads(json.dumps(split.to_json_dict())))
    assert again == split
    folds = kfold(ds, 3, seed=2)
    assert Folds.from_json_dict(json.loads(json.dumps(folds.to_json_dict()))) == folds


def test_impossible_splits_raise_clear_errors():
    with pytest.raises(DatasetError, match="patients"):
        kfold(fake_dataset(3, 10), k=5)
    with pytest.raises(DatasetError, match="one class"):
        kfold(fake_dataset(5, 0), k=2)
    with pytest.raises(DatasetError, match="folds"):
        kfold(fake_dataset(5, 5), k=1)
    with pytest.raises(DatasetError, match="patients"):
        train_validation_test_split(fake_dataset(1, 5, slices=(3,)), validation=0.2)


def test_splits_module_does_not_import_tensorflow():
    code = "import sys, ctviewer.core.data.splits, ctviewer.core.events; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
