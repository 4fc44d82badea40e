"""Which images a model was trained on, so its predictions on them can be marked as optimistic.

A model's probability for one of its own training images says little about new images.
Every bundle lists its training images by content hash (and path): an ensemble in its
out-of-fold predictions file (``oof_predictions.csv``: each image's probability from the
fold model that never saw it), a single model in ``training_images.csv``. `predict` then
marks the rows whose content hash (or, without one, path) is in that list, in the session
and after the bundle was saved and loaded again.

No TensorFlow here.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from ctviewer.core.data.dataset import Dataset

OOF_FILE = "oof_predictions.csv"
TRAINING_IMAGES_FILE = "training_images.csv"
OOF_COLUMNS = ("path", "content_hash", "patient", "label", "fold", "prob", "threshold", "pred")
TRAINING_COLUMNS = ("path", "content_hash", "patient", "label", "role")


def _key(path: str, content_hash: str) -> str:
    return f"sha:{content_hash}" if content_hash else f"path:{path}"


def write_oof_file(folder: Path, cv: Any) -> Path:
    """``oof_predictions.csv`` of a `CVResult`: one row per out-of-fold image (floats written exactly)."""
    pred = cv.predictions
    hashes = dict(cv.dataset.images)
    called = pred.y_pred()
    path = folder / OOF_FILE
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(OOF_COLUMNS)
        for i, image in enumerate(pred.paths):
            writer.writerow([image, hashes.get(image, ""), pred.patients[i], pred.labels[i] or "",
                             int(pred.folds[i]) if pred.folds is not None else "", repr(float(pred.probs[i])),
                             repr(float(pred.threshold)), pred.classes[int(called[i])]])
    return path


def write_training_images_file(folder: Path, trained: Any) -> Path:
    """``training_images.csv`` of a single model: every image it saw, with its split role."""
    roles = dict(zip(trained.split.paths, trained.split.roles))
    patients = dict(zip(trained.split.paths, trained.split.patients))
    path = folder / TRAINING_IMAGES_FILE
    with open(path, "w", encoding="utf-8", newline="", errors="backslashreplace") as handle:  # non-UTF-8 names
        writer = csv.writer(handle)
        writer.writerow(TRAINING_COLUMNS)
        for image, content_hash in trained.dataset.images:
            writer.writerow([image, content_hash, patients.get(image, ""), "", roles.get(image, "")])
    return path


def read_training_keys(folder: Path) -> frozenset[str] | None:
    """The training images listed in a bundle folder, or None when it lists none (older bundles)."""
    for name in (OOF_FILE, TRAINING_IMAGES_FILE):
        path = Path(folder) / name
        if not path.is_file():
            continue
        try:
            with open(path, encoding="utf-8", newline="") as handle:
                return frozenset(_key(row.get("path") or "", row.get("content_hash") or "")
                                 for row in csv.DictReader(handle))
        except (OSError, UnicodeDecodeError, csv.Error):
            return None
    return None


def training_keys(model: Any) -> frozenset[str] | None:
    """The training images of a TrainedModel, Ensemble or loaded Bundle (None when unknown)."""
    dataset = getattr(model, "dataset", None)
    images = getattr(dataset, "images", None)
    if images:
        return frozenset(_key(path, content_hash) for path, content_hash in images)
    folder = getattr(model, "folder", None)
    if folder is not None:
        return read_training_keys(Path(folder))
    return None


def training_image_marks(model: Any, dataset: Dataset) -> np.ndarray | None:
    """Per image of ``dataset``: True where it is one of ``model``'s training images; None if unknown."""
    keys = training_keys(model)
    if keys is None:
        return None
    return np.array([_key(str(it.path), str(it.content_hash)) in keys or f"path:{it.path}" in keys
                     for it in dataset.items], dtype=bool)
