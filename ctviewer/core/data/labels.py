"""Relabelling: change the class of images or patients and save a ``labels.csv``.

Used by the GUI browser; the file follows the dataset contract:
columns ``path,label,patient``, paths relative to the CSV's folder where possible, so
``discover(folder)`` picks the corrected labels up next time.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from ctviewer.core.data.dataset import LABELS_FILE, Dataset


def relabel(dataset: Dataset, paths: Iterable[str], label: str | None) -> Dataset:
    """A copy of ``dataset`` where the images at ``paths`` have class ``label`` (None = unlabelled)."""
    chosen = set(paths)
    items = [replace(it, label=label) if it.path in chosen else it for it in dataset.items]
    classes = tuple(sorted({it.label for it in items if it.label is not None}))
    positive = dataset.positive if dataset.positive in classes else None
    if positive is None and len(classes) == 2:
        positive = classes[1]
    return replace(dataset, items=items, classes=classes, positive=positive)


def default_labels_path(dataset: Dataset) -> Path:
    """``<dataset folder>/labels.csv`` when the dataset came from one folder, else the current folder."""
    source = Path(dataset.source)
    if source.is_file() and source.name.lower() == LABELS_FILE:
        return source
    if source.is_dir():
        return source / LABELS_FILE
    return Path.cwd() / LABELS_FILE


def write_labels_csv(dataset: Dataset, path: str | Path) -> Path:
    """Write every labelled image as ``path,label,patient``; returns the file written.

    Images without a label are left out (a labels.csv lists what has a class). Patients that
    were only guessed from the file name are written empty, so nothing invented is stored.
    """
    target = Path(path)
    base = target.parent.resolve()
    rows = []
    for it in dataset.items:
        if it.label is None:
            continue
        file_path = Path(it.path).resolve()
        try:
            shown = file_path.relative_to(base).as_posix()
        except ValueError:
            shown = str(file_path)
        patient = it.patient if it.patient_source != "file" else ""
        rows.append((shown, it.label, patient))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "patient"])
        writer.writerows(rows)
    os.replace(tmp, target)
    return target
