"""Labels given per patient: a ``labels.csv`` with columns ``patient,label`` (no ``path`` column).

Every image found under the CSV's folder gets the label of its patient: the DICOM PatientID,
or else the name of the folder directly below the CSV's folder that holds it (the patient
folder, for PNG/JPEG sets). A patient listed twice with two labels is an error naming both
lines; images whose patient is not listed stay unlabelled (said in the notes).
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

from ctviewer.core.errors import DatasetError


def is_patient_labels(header: list[str]) -> bool:
    """A ``patient,label`` file: it names patients and labels but no image paths."""
    names = {h.strip().lower() for h in header}
    return "path" not in names and {"patient", "label"} <= names


def read_patient_labels(csv_path: Path) -> dict[str, str]:
    """``{patient: label}`` from a patient-label CSV.

    Raises
    ------
    DatasetError
        Unreadable file, no rows, or a patient given two different labels (both lines named).
    """
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{csv_path}: cannot be read as CSV ({exc})") from None
    labels: dict[str, tuple[str, int]] = {}
    for line, raw in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k}
        patient, label = row.get("patient", ""), row.get("label", "")
        if not patient or not label:
            continue
        if patient in labels and labels[patient][0] != label:
            first_label, first_line = labels[patient]
            raise DatasetError(f"{csv_path}: patient {patient!r} has two labels: {first_label!r} (line {first_line}) "
                               f"and {label!r} (line {line}); a patient-level label must be one class")
        labels.setdefault(patient, (label, line))
    if not labels:
        raise DatasetError(f"{csv_path}: no rows with both a patient and a label")
    return {patient: label for patient, (label, _) in labels.items()}


def patient_folder(root: Path, path: Path) -> str | None:
    """The first folder below ``root`` on the way to ``path`` (None for a file directly in ``root``)."""
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else None


def apply_patient_labels(items: list, labels: dict[str, str], root: Path, csv_path: Path,
                         notes: list[str]) -> list:
    """Give each item the label of its patient (its id, else its patient folder's name).

    Raises DatasetError when an image's patient id and its patient folder name are both listed
    with different labels: its images would carry two labels.
    """
    out, unlisted, used = [], 0, set()
    for it in items:
        keys = [k for k in (it.patient, patient_folder(root, Path(it.path))) if k and k in labels]
        found = {labels[k] for k in keys}
        if len(found) > 1:
            raise DatasetError(f"{csv_path}: {it.path} belongs to patient {keys[0]!r} ({labels[keys[0]]}) and to "
                               f"patient folder {keys[1]!r} ({labels[keys[1]]}): its images would carry two labels")
        if not keys:
            unlisted += 1
            out.append(it)
            continue
        used.update(keys)
        out.append(replace(it, label=found.pop()))
    if unlisted:
        notes.append(f"{unlisted} images belong to patients not listed in {csv_path.name}: left unlabelled")
    missing = sorted(set(labels) - used)
    if missing:
        notes.append(f"{len(missing)} patients of {csv_path.name} have no images here (e.g. {missing[0]})")
    return out
