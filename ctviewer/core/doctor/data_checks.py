"""Checks of the data, the split and the training history (no model, no TensorFlow).

Each ``check_*`` function returns a list of `Finding` (empty when all is well), so the GUI
and the CLI can run any one of them alone.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ctviewer.core.doctor.findings import Finding
from ctviewer.core.metrics.evaluation import LARGEST_PATIENT_SHARE, WIDE_INTERVAL, wilson_interval

TAIL_FRACTIONS = (0.1, 0.2)
# Above this share of the majority class, accuracy mostly measures the class balance.
IMBALANCE_SHARE = 0.6
# "Perfect" and "not yet good" for the history check.
PERFECT = 0.999
NOT_YET_GOOD = 0.95
EARLY_EPOCHS = 3


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Assignment:
    """A split or k-fold as one role per image, aligned with a dataset's items where possible.

    ``labels`` and ``pixel_hashes`` come from the dataset (None / "" for a path the dataset
    does not contain). ``evaluated`` lists the roles whose metrics someone reads.
    """

    paths: tuple[str, ...]
    patients: tuple[str, ...]
    roles: tuple[str, ...]
    labels: tuple[str | None, ...]
    pixel_hashes: tuple[str, ...]
    evaluated: tuple[str, ...]
    method: str


def normalise_path(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def assignment_of(split: Any, dataset: Any = None) -> Assignment:
    """Turn a `Split` or `Folds` into an `Assignment`, looking up labels and hashes in ``dataset``."""
    if hasattr(split, "roles"):
        roles = tuple(split.roles)
        evaluated = tuple(r for r in ("validation", "test") if r in roles)
        method = str(getattr(split, "method", "split"))
    elif hasattr(split, "fold_of"):
        roles = tuple(f"fold {int(f) + 1}" for f in split.fold_of)
        evaluated = tuple(sorted(set(roles), key=lambda r: int(r.split()[1])))
        method = "k-fold"
    else:
        raise TypeError(f"expected a Split or Folds, got {type(split).__name__}")
    by_path: dict[str, Any] = {}
    if dataset is not None:
        by_path = {normalise_path(it.path): it for it in dataset.items}
    items = [by_path.get(normalise_path(p)) for p in split.paths]
    return Assignment(
        paths=tuple(split.paths), patients=tuple(split.patients), roles=roles,
        labels=tuple(it.label if it is not None else None for it in items),
        pixel_hashes=tuple(it.pixel_hash if it is not None else "" for it in items),
        evaluated=evaluated, method=method,
    )


def _metric_of(label: str, positive: str | None) -> str:
    if positive is None:
        return f"recall of {label}"
    return "sensitivity" if label == positive else "specificity"


def _both_classes(dataset: Any) -> bool:
    return dataset is not None and sum(1 for n in dataset.class_counts().values() if n > 0) >= 2


# --------------------------------------------------------------------------- tail split


def tail_contents(labels: Sequence[str | None], fraction: float) -> tuple[int, dict[str, int]]:
    """What Keras' ``validation_split=fraction`` holds: the last images and their class counts.

    Keras 3 trains on the first ``floor(n * (1 - fraction))`` samples and validates on the
    rest (``keras/src/trainers/data_adapters/array_slicing.py``), e.g. 5 of 24 at 0.2.
    """
    n_val = len(labels) - int(np.floor(len(labels) * (1.0 - fraction)))
    tail = [lab for lab in labels[len(labels) - n_val:] if lab is not None]
    return n_val, dict(Counter(tail))


def check_tail_split(dataset: Any, split: Any = None, fractions: Sequence[float] = TAIL_FRACTIONS) -> list[Finding]:
    """Would a tail validation split of the data *in its given order* hold one class?

    Keras' ``fit(validation_split=f)`` takes the last ``f`` of the arrays before any
    shuffling. A folder read class by class puts one class last. With a given split whose
    method is ``"keras-tail"`` the finding is an error (it happened); otherwise a warning
    (it will happen if the arrays are fed in this order).
    """
    if dataset is None or not _both_classes(dataset):
        return []
    labels = [it.label for it in dataset.items]
    n = len(labels)
    used = split is not None and getattr(split, "method", "") == "keras-tail"
    findings = []
    one_class: dict[str, Any] = {}
    for fraction in fractions:
        n_val, counts = tail_contents(labels, fraction)
        if n_val and len(counts) == 1:
            one_class[f"{fraction:g}"] = {"n_validation": n_val, "class_counts": counts,
                                         "first_file": dataset.items[n - n_val].path}
    if used:
        n_val = sum(1 for r in split.roles if r == "validation")
        counts = dict(Counter(lab for lab, r in zip(labels, split.roles) if r == "validation" and lab is not None))
        if n_val and len(counts) <= 1:
            only = next(iter(counts), "none")
            findings.append(Finding(
                "tail-split-one-class", "error",
                f"The validation set is the last {n_val} of {n} images in folder order, and all of them are "
                f"{only}: its accuracy and loss say nothing about the other class.",
                {"n_images": n, "n_validation": n_val, "validation_class_counts": counts,
                 "first_validation_file": split.paths[split.roles.index("validation")], "split_method": "keras-tail"},
                "Shuffle before splitting, or better use a patient-grouped stratified split "
                "(ctviewer does this by default) instead of Keras' validation_split.",
            ))
            return findings
    if one_class:
        key = max(one_class, key=float)
        detail = one_class[key]
        only = next(iter(detail["class_counts"]))
        findings.append(Finding(
            "tail-split-one-class", "warning",
            f"The images are ordered by class: Keras' validation_split={key} on arrays in this order "
            f"would validate on the last {detail['n_validation']} images, all {only}.",
            {"n_images": n, "order": "as discovered (class folders in turn)",
             "class_order": list(dict.fromkeys(lab for lab in labels if lab is not None)),
             "tail_splits": one_class},
            "Shuffle images and labels together before model.fit, and split by patient with both classes on "
            "each side instead of using validation_split.",
        ))
    return findings


# --------------------------------------------------------------------------- small classes


def small_class_findings(labels: Sequence[str | None], where: str, classes: Sequence[str],
                         positive: str | None, files: Sequence[str] = ()) -> list[Finding]:
    """One-class or too-small sets, by the best-case Wilson interval of the smaller class.

    The test is deliberately optimistic: even if every image of a class were called right,
    ``k/k`` has a 95% Wilson interval of width about ``3.84 / (k + 3.84)``; above
    `WIDE_INTERVAL` (0.30, i.e. 8 images or fewer) the metric of that class means little.
    """
    counts = Counter(lab for lab in labels if lab is not None)
    n = sum(counts.values())
    if n == 0:
        return []
    full = {c: counts.get(c, 0) for c in classes} if classes else dict(counts)
    present = [c for c, k in full.items() if k > 0]
    if len(present) < 2:
        only = present[0] if present else "none"
        missing = [c for c in full if c not in present]
        lost = ", ".join(_metric_of(c, positive) for c in missing) or "the other class's metric"
        evidence: dict[str, Any] = {"set": where, "n": n, "class_counts": full}
        if files:
            evidence["first_file"] = files[0]
        return [Finding(
            "small-class", "error",
            f"The {where} set has only one class ({n} {only} images): {lost}, AUC and balanced accuracy "
            "cannot be measured on it, and a model that calls everything " f"{only} scores 100% accuracy.",
            evidence,
            "Rebuild the split stratified by class (and grouped by patient) so both classes are in it.",
        )]
    findings = []
    for cls, k in full.items():
        best = wilson_interval(k, k)
        if best.width > WIDE_INTERVAL:
            metric = _metric_of(cls, positive)
            findings.append(Finding(
                "small-class", "warning",
                f"The {where} set has {k} {cls} image(s): even if all {k} were called right, the 95% interval "
                f"of {metric} would be {best.low:.2f}-1.00, too wide to mean much.",
                {"set": where, "n": n, "class_counts": full, "class": cls, "metric": metric,
                 "best_case_ci": [best.low, best.high], "ci_width": best.width, "wide_limit": WIDE_INTERVAL},
                "Use more images of that class in the set, or cross-validation (every image tested once) and "
                "report intervals, not point values.",
            ))
    return findings


def check_small_class(dataset: Any = None, split: Any = None, evaluated_data: bool = False) -> list[Finding]:
    """Small or one-class validation/test sets of ``split``; the whole data too when ``evaluated_data``."""
    findings: list[Finding] = []
    classes = tuple(dataset.classes) if dataset is not None else ()
    positive = dataset.positive if dataset is not None else None
    if split is not None:
        a = assignment_of(split, dataset)
        if not classes:
            classes = tuple(sorted({lab for lab in a.labels if lab is not None}))
        for role in a.evaluated:
            idx = [i for i, r in enumerate(a.roles) if r == role]
            findings += small_class_findings([a.labels[i] for i in idx], role, classes, positive,
                                             [a.paths[i] for i in idx])
    if evaluated_data and dataset is not None and dataset.is_labelled:
        findings += small_class_findings([it.label for it in dataset.items], "evaluated", classes, positive)
    return findings


# --------------------------------------------------------------------------- leaks


def check_patient_leak(split: Any, dataset: Any = None) -> list[Finding]:
    """Patients with images in more than one role (train/validation/test, or more than one fold)."""
    if split is None:
        return []
    a = assignment_of(split, dataset)
    roles_of: dict[str, set[str]] = defaultdict(set)
    images_of: Counter[str] = Counter()
    for patient, role in zip(a.patients, a.roles):
        roles_of[patient].add(role)
        images_of[patient] += 1
    shared = sorted(p for p, r in roles_of.items() if len(r) > 1)
    if not shared:
        return []
    n_images = sum(images_of[p] for p in shared)
    return [Finding(
        "patient-leak", "error",
        f"{len(shared)} patient(s) have images on both sides of the split ({n_images} images): neighbouring "
        "slices of one patient are near-copies, so the held-out score measures memory, not generalisation.",
        {"n_patients_shared": len(shared), "n_images_affected": n_images, "patients": shared[:20],
         "roles_by_patient": {p: sorted(roles_of[p]) for p in shared[:20]}, "split_method": a.method},
        "Split by patient (all of a patient's images on one side), e.g. ctviewer's grouped stratified split.",
    )]


def check_duplicate_leak(dataset: Any, split: Any = None) -> list[Finding]:
    """Identical pixel data on both sides of a split; without a split, copies a split could separate."""
    if dataset is None:
        return []
    if split is not None:
        a = assignment_of(split, dataset)
        groups: dict[str, list[int]] = defaultdict(list)
        for i, h in enumerate(a.pixel_hashes):
            if h:
                groups[h].append(i)
        crossing = [g for g in groups.values() if len({a.roles[i] for i in g}) > 1]
        if crossing:
            example = [a.paths[i] for i in crossing[0]]
            return [Finding(
                "duplicate-leak", "error",
                f"{len(crossing)} identical image(s) are on both sides of the split: the model is tested on "
                "pictures it was trained on.",
                {"n_groups": len(crossing), "n_images": sum(len(g) for g in crossing),
                 "example_group": example, "example_roles": [a.roles[i] for i in crossing[0]]},
                "Remove exact duplicates before splitting (ctviewer scan lists them) or keep each group on one side.",
            )]
        return []
    by_hash: dict[str, list[Any]] = defaultdict(list)
    for it in dataset.items:
        if it.pixel_hash:
            by_hash[it.pixel_hash].append(it)
    groups_items = [g for g in by_hash.values() if len(g) > 1]
    across = [g for g in groups_items if len({it.patient for it in g}) > 1]
    conflicting = [g for g in groups_items if len({it.label for it in g}) > 1]
    if not across and not conflicting:
        return []
    worst = conflicting or across
    example = [it.path for it in worst[0]]
    severity = "error" if conflicting else "warning"
    what = (f"{len(conflicting)} group(s) of identical images carry different labels"
            if conflicting else
            f"{len(across)} group(s) of identical images belong to different patients, so a patient-grouped "
            "split can put copies on both sides")
    return [Finding(
        "duplicate-leak", severity, f"{what}.",
        {"n_groups": len(groups_items), "n_groups_across_patients": len(across),
         "n_groups_conflicting_labels": len(conflicting), "example_group": example,
         "example_labels": [it.label for it in worst[0]], "example_patients": [it.patient for it in worst[0]]},
        "Keep one copy of each image (ctviewer scan lists the groups) and fix the labels of conflicting copies.",
    )]


def check_patient_ids(dataset: Any) -> list[Finding]:
    """Images without a patient id: a split cannot keep a patient's slices together."""
    if dataset is None or not dataset.items:
        return []
    by_file = [it.path for it in dataset.items if it.patient_source == "file"]
    if not by_file:
        return []
    return [Finding(
        "no-patient-ids", "warning",
        f"{len(by_file)} of {len(dataset)} images have no patient id, so each counts as its own patient and "
        "slices of one person may land on both sides of any split.",
        {"n_without_patient": len(by_file), "n_images": len(dataset), "example_files": by_file[:5]},
        "Add a 'patient' column to labels.csv (or use DICOM files with PatientID).",
    )]


# --------------------------------------------------------------------------- slices per patient


def check_slices_per_patient(dataset: Any) -> list[Finding]:
    """How many slices each patient contributes, and when image-level intervals mislead.

    Quiet when every patient has the same number of slices and none holds more than
    ``LARGEST_PATIENT_SHARE`` of the images. Otherwise an info finding with the spread; a
    warning when the largest patient holds more than that share (image-level Wilson/DeLong
    intervals then lean on one person); patients with images of two classes are counted too.
    """
    if dataset is None or not dataset.items:
        return []
    per_patient = Counter(it.patient for it in dataset.items)
    counts = np.array(sorted(per_patient.values()))
    largest_patient, largest = per_patient.most_common(1)[0]
    n = len(dataset)
    labels: dict[str, set[str]] = defaultdict(set)
    for it in dataset.items:
        if it.label is not None:
            labels[it.patient].add(it.label)
    mixed = sorted(p for p, names in labels.items() if len(names) > 1)
    too_big = largest > LARGEST_PATIENT_SHARE * n and len(per_patient) > 1
    if counts.min() == counts.max() and not too_big and not mixed:
        return []
    evidence = {"n_images": n, "n_patients": len(per_patient), "min": int(counts.min()),
                "median": float(np.median(counts)), "max": largest, "largest_patient": largest_patient,
                "largest_share": largest / n, "slices_histogram": {str(k): int(v) for k, v in
                                                                   sorted(Counter(counts.tolist()).items())},
                "patients_with_two_classes": mixed[:20], "n_patients_with_two_classes": len(mixed)}
    message = (f"{len(per_patient)} patients contribute {counts.min()} to {largest} slices each (median "
               f"{np.median(counts):g}); image-level numbers count slices, patient-level ones count patients.")
    if too_big:
        message += (f" Patient {largest_patient} holds {largest} of the {n} images ({largest / n:.0%}): image-level "
                    "Wilson/DeLong intervals treat its slices as independent cases and are misleading.")
    if mixed:
        message += (f" {len(mixed)} patients have images of two classes (e.g. {mixed[0]}): a patient-level truth is "
                    "undefined for them; series level counts each scan.")
    return [Finding(
        "slices-per-patient", "warning" if too_big else "info", message, evidence,
        "Quote the patient-bootstrap intervals or the patient/series-level metrics (ctviewer cv writes "
        "patients.csv and series.csv; predict/evaluate --level patient).",
    )]


# --------------------------------------------------------------------------- class balance


def check_class_imbalance(dataset: Any) -> list[Finding]:
    """The majority share and the accuracy of always answering the majority class."""
    if dataset is None or not _both_classes(dataset):
        return []
    counts = dataset.class_counts()
    n = sum(counts.values())
    majority = max(counts, key=lambda c: counts[c])
    share = counts[majority] / n
    if share < IMBALANCE_SHARE:
        return []
    return [Finding(
        "class-imbalance", "warning",
        f"{counts[majority]} of {n} images are {majority}: a model that always answers {majority} scores "
        f"{share:.0%} accuracy while finding nothing.",
        {"class_counts": counts, "majority": majority, "majority_share": share, "always_majority_accuracy": share},
        "Judge models by sensitivity, specificity, balanced accuracy and AUC (with intervals), and weight the "
        "classes in training (ctviewer's default) or collect more of the minority class.",
    )]


# --------------------------------------------------------------------------- training history

_ACCURACY_KEYS = ("accuracy", "acc", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy", "auc")


def history_dict(history: Any) -> dict[str, list[float]]:
    """A Keras ``History`` (``.history``) or a plain dict of per-epoch lists, as floats."""
    raw = getattr(history, "history", history)
    if not isinstance(raw, Mapping):
        raise TypeError(f"expected a Keras History or a dict of per-epoch lists, got {type(history).__name__}")
    out: dict[str, list[float]] = {}
    for key, values in raw.items():
        try:
            out[str(key)] = [float(v) for v in (values if isinstance(values, (list, tuple, np.ndarray)) else [values])]
        except (TypeError, ValueError):
            continue
    return out


def check_history(history: Any) -> list[Finding]:
    """Perfect validation metrics from the first epochs while training ones are not; 0/1-only accuracy."""
    if history is None:
        return []
    h = history_dict(history)
    findings: list[Finding] = []
    for key in _ACCURACY_KEYS:
        val, train = h.get(f"val_{key}"), h.get(key)
        if not val or not train:
            continue
        early = min(EARLY_EPOCHS, len(val), len(train))
        hits = [e for e in range(early) if val[e] >= PERFECT and train[e] < NOT_YET_GOOD]
        if hits:
            findings.append(Finding(
                "perfect-validation", "warning",
                f"Validation {key} is {val[hits[0]]:.3f} at epoch {hits[0] + 1} while training {key} is "
                f"{train[hits[0]]:.3f}: a model that has not learnt the training set cannot be perfect on new "
                "data, so the validation set leaks training images or holds one class.",
                {"metric": key, "epochs": [e + 1 for e in hits], f"val_{key}": val[:max(early, 1)],
                 key: train[:max(early, 1)], "n_epochs": len(val)},
                "Check the split: patients or identical images on both sides, or a validation set of one class "
                "(Keras' validation_split on class-sorted data).",
            ))
            break
    for key in _ACCURACY_KEYS[:-1]:  # accuracies only: Keras reports AUC 0 for a one-class set anyway
        val = h.get(f"val_{key}")
        # All 1.0 may be a perfect model; a 0.0 among only 0s and 1s cannot happen on a two-class set
        # unless every image flips together.
        if val and len(val) >= EARLY_EPOCHS and all(v in (0.0, 1.0) for v in val) and 0.0 in val:
            findings.append(Finding(
                "validation-all-or-nothing", "warning",
                f"Validation {key} is only ever 0 or 1 over {len(val)} epochs: every validation image gets the "
                "same answer and the validation set almost certainly holds one class.",
                {"metric": f"val_{key}", "values": val[:20], "n_epochs": len(val),
                 "epochs_at_1": sum(1 for v in val if v == 1.0)},
                "Validate on a set with both classes (stratified, patient-grouped split).",
            ))
            break
    return findings
