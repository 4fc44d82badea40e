"""Splits that cannot mislead: shuffled, stratified by class, grouped by patient, recorded.

Slices of one patient are near-copies of each other; a patient on both sides of a split
turns a validation score into a memory test. Every split here keeps each patient on one
side, keeps the class balance of each side close to the whole, is drawn from a seed and
is recorded (which file went where) so it can be reported, saved and redrawn.

Keras' ``validation_split`` takes the *last* fraction of the arrays; on data ordered by
class that validates on one class only. It is never used here unless a config asks for
it on purpose (`keras_tail_split`, to reproduce the original question's failure).

No TensorFlow import: the GUI may use this module at start-up.
"""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ctviewer.core.data.dataset import Dataset
from ctviewer.core.errors import DatasetError

TRAIN, VALIDATION, TEST = "train", "validation", "test"
ROLES = (TRAIN, VALIDATION, TEST)


@dataclass(frozen=True)
class Split:
    """One role (``train``, ``validation`` or ``test``) per image, in dataset order.

    ``method`` says how it was drawn: ``"grouped-stratified"`` (the default) or
    ``"keras-tail"`` (the last fraction of the unshuffled data, for reproducing a mistake).
    """

    paths: tuple[str, ...]
    patients: tuple[str, ...]
    roles: tuple[str, ...]
    seed: int
    method: str = "grouped-stratified"

    def indices(self, role: str) -> np.ndarray:
        """Positions (into the dataset the split was drawn from) of the images with ``role``."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        return np.array([i for i, r in enumerate(self.roles) if r == role], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        c = Counter(self.roles)
        return {role: c.get(role, 0) for role in ROLES}

    def shared_patients(self) -> set[str]:
        """Patients with images in more than one role (empty for a grouped split)."""
        roles_by_patient: dict[str, set[str]] = defaultdict(set)
        for patient, role in zip(self.patients, self.roles):
            roles_by_patient[patient].add(role)
        return {p for p, roles in roles_by_patient.items() if len(roles) > 1}

    def to_json_dict(self) -> dict[str, Any]:
        return {"method": self.method, "seed": self.seed, "counts": self.counts(),
                "items": _items_json(self.paths, self.patients, "role", self.roles)}

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Split:
        paths, patients, roles = _items_from_json(data["items"], "role", str)
        return cls(paths=paths, patients=patients, roles=roles, seed=int(data["seed"]),
                   method=str(data.get("method", "grouped-stratified")))


@dataclass(frozen=True)
class Folds:
    """Patient-grouped stratified k-fold: ``fold_of[i]`` is the fold in which image i is tested."""

    paths: tuple[str, ...]
    patients: tuple[str, ...]
    fold_of: tuple[int, ...]
    k: int
    seed: int

    def test_indices(self, fold: int) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.fold_of) == fold)

    def train_indices(self, fold: int) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.fold_of) != fold)

    def to_json_dict(self) -> dict[str, Any]:
        return {"method": "grouped-stratified-kfold", "k": self.k, "seed": self.seed,
                "items": _items_json(self.paths, self.patients, "fold", self.fold_of)}

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Folds:
        paths, patients, fold_of = _items_from_json(data["items"], "fold", int)
        return cls(paths=paths, patients=patients, fold_of=fold_of, k=int(data["k"]), seed=int(data["seed"]))


# split.json / folds.json hold one item per image: its path, its patient and where it went.


def _items_json(paths: Sequence[str], patients: Sequence[str], key: str, values: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"path": p, "patient": g, key: v} for p, g, v in zip(paths, patients, values)]


def _items_from_json(items: Sequence[dict[str, Any]], key: str, kind: type
                     ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[Any, ...]]:
    """(paths, patients, values of ``key`` as ``kind``) of the items."""
    return (tuple(it["path"] for it in items), tuple(it["patient"] for it in items),
            tuple(kind(it[key]) for it in items))


# --------------------------------------------------------------------------- array-level


def _patient_classes(y: np.ndarray, groups: np.ndarray) -> dict[Any, int]:
    """Each patient's majority class (a patient with slices of both classes counts once)."""
    by_patient: dict[Any, list[int]] = defaultdict(list)
    for label, group in zip(y.tolist(), groups.tolist()):
        by_patient[group].append(label)
    return {g: Counter(labels).most_common(1)[0][0] for g, labels in by_patient.items()}


def _require_patients(y: np.ndarray, groups: np.ndarray, needed: int, what: str) -> None:
    if len(np.unique(y)) < 2:
        raise DatasetError(f"cannot {what}: only one class present; a split needs images of both classes")
    per_class = Counter(_patient_classes(y, groups).values())
    short = {int(c): n for c, n in sorted(per_class.items()) if n < needed}
    if short or len(per_class) < 2:
        detail = ", ".join(f"class {c}: {n} patients" for c, n in short.items()) or "one class has no patient"
        raise DatasetError(
            f"cannot {what}: each class needs at least {needed} patients ({detail}); "
            "add patients or use fewer folds"
        )


def _sgkf_folds(y: np.ndarray, groups: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # "least populated class has fewer members than n_splits" is checked by the callers per patient.
        warnings.simplefilter("ignore", UserWarning)
        return [test for _, test in splitter.split(np.zeros(len(y)), y, groups)]


def kfold_assignment(y: Sequence[int], groups: Sequence[Any], k: int, seed: int = 0) -> np.ndarray:
    """Test fold (0..k-1) of each sample: stratified by ``y``, grouped by ``groups``, shuffled by ``seed``.

    Raises
    ------
    DatasetError
        When a class has fewer than ``k`` patients, or a fold would test one class only.
    """
    y, groups = np.asarray(y), np.asarray(groups)
    if k < 2:
        raise DatasetError(f"cross-validation needs at least 2 folds (got {k})")
    _require_patients(y, groups, k, f"make {k} patient-grouped folds")
    fold_of = np.full(len(y), -1, dtype=np.int64)
    for fold, test in enumerate(_sgkf_folds(y, groups, k, seed)):
        fold_of[test] = fold
    for fold in range(k):
        present = set(y[fold_of == fold].tolist())
        if len(present) < 2:
            raise DatasetError(
                f"cannot make {k} patient-grouped folds with both classes in every fold "
                f"(fold {fold + 1} has {'one class only' if present else 'no images'}); use fewer folds"
            )
    return fold_of


def holdout_assignment(y: Sequence[int], groups: Sequence[Any], fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of a patient-grouped, stratified hold-out of about ``fraction`` of the samples.

    Both sides get both classes. The hold-out is one fold of a ``round(1 / fraction)``-fold
    grouped stratified split, chosen by the seed among the folds that contain both classes.
    """
    y, groups = np.asarray(y), np.asarray(groups)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"hold-out fraction must be between 0 and 1 (got {fraction})")
    _require_patients(y, groups, 2, "hold out a patient-grouped validation set")
    # No more folds than the smallest class has patients, so every fold can hold both classes.
    smallest = min(Counter(_patient_classes(y, groups).values()).values())
    k = int(min(max(2, round(1.0 / fraction)), smallest))
    folds = _sgkf_folds(y, groups, k, seed)
    rng = np.random.default_rng(seed)
    for fold in rng.permutation(k):
        mask = np.zeros(len(y), dtype=bool)
        mask[folds[fold]] = True
        if len(set(y[mask].tolist())) == 2 and len(set(y[~mask].tolist())) == 2:
            return mask
    # Few patients: fall back to one patient per class held out, which always works when
    # each class has two patients (checked above).
    patient_class = _patient_classes(y, groups)
    held: set[Any] = set()
    for cls in (0, 1):
        candidates = sorted((g for g, c in patient_class.items() if c == cls), key=str)
        held.add(candidates[int(rng.integers(len(candidates)))])
    return np.array([g in held for g in groups.tolist()], dtype=bool)


# --------------------------------------------------------------------------- dataset-level


def _y_and_groups(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    dataset.require_binary()
    return dataset.y, dataset.patients


def train_validation_test_split(
    dataset: Dataset, validation: float = 0.2, test: float = 0.0, seed: int = 0
) -> Split:
    """Split a labelled dataset into train / validation / (optional) test, grouped by patient.

    Parameters
    ----------
    dataset
        A `ctviewer.core.data.dataset.Dataset` with two classes.
    validation, test
        Approximate fractions of the images (0 < validation < 1; test may be 0).
    seed
        The same seed on the same dataset gives the same split.
    """
    y, groups = _y_and_groups(dataset)
    roles = np.full(len(y), TRAIN, dtype=object)
    if test > 0:
        test_mask = holdout_assignment(y, groups, test, seed)
        roles[test_mask] = TEST
    rest = np.flatnonzero(roles == TRAIN)
    if validation > 0:
        # Validation is a fraction of the whole, so rescale to what is left after the test part.
        frac = min(validation / max(1e-9, len(rest) / len(y)), 0.9)
        val_mask = holdout_assignment(y[rest], groups[rest], frac, seed + 1)
        roles[rest[val_mask]] = VALIDATION
    return Split(
        paths=tuple(dataset.paths), patients=tuple(groups.tolist()), roles=tuple(roles.tolist()), seed=seed
    )


def keras_tail_split(dataset: Dataset, validation: float, seed: int = 0) -> Split:
    """What ``model.fit(validation_split=...)`` does: the last ``validation`` fraction, unshuffled.

    Only for reproducing the original question's mistake; `ctviewer doctor` flags it.
    """
    n = len(dataset)
    n_val = n - int(np.floor(n * (1.0 - validation)))  # Keras 3: the first floor(n * (1 - f)) train
    roles = [TRAIN] * (n - n_val) + [VALIDATION] * n_val
    return Split(
        paths=tuple(dataset.paths), patients=tuple(dataset.patients.tolist()), roles=tuple(roles),
        seed=seed, method="keras-tail",
    )


def kfold(dataset: Dataset, k: int = 5, seed: int = 0) -> Folds:
    """Patient-grouped, stratified, shuffled k-fold assignment of a labelled dataset."""
    y, groups = _y_and_groups(dataset)
    fold_of = kfold_assignment(y, groups, k, seed)
    return Folds(
        paths=tuple(dataset.paths), patients=tuple(groups.tolist()), fold_of=tuple(fold_of.tolist()), k=k, seed=seed
    )


def smallest_class_patients(dataset: Dataset) -> int:
    """Patients in the class that has fewest: the most patient-grouped folds this dataset allows."""
    y, groups = _y_and_groups(dataset)
    per_class = Counter(_patient_classes(y, groups).values())
    return min(per_class.get(0, 0), per_class.get(1, 0))
