"""What a model was trained on, so its numbers on those images can be called optimistic.

A model's probability for one of its own training images says little about new images.
Two views of the same record, here in one place:

* per image: every bundle lists its training images by content hash (and path): an ensemble
  in its out-of-fold predictions file (``oof_predictions.csv``: each image's probability from
  the fold model that never saw it), a single model in ``training_images.csv``. `predict`
  marks the rows whose content hash (or, without one, path) is in that list
  (`training_image_marks`), in the session and after the bundle was saved and loaded again;
* per dataset: a model's card records the content hash of its training dataset
  (`dataset_content_hash`) and its split the paths it trained on; `training_overlap` says
  how many images of a dataset the model saw, for captions and the doctor.

No TensorFlow here.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ctviewer.core.data.dataset import Dataset

OOF_FILE = "oof_predictions.csv"
TRAINING_IMAGES_FILE = "training_images.csv"
OOF_COLUMNS = ("path", "content_hash", "patient", "label", "fold", "prob", "threshold", "pred")
TRAINING_COLUMNS = ("path", "content_hash", "patient", "label", "role")


# --------------------------------------------------------------------------- per image


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


# --------------------------------------------------------------------------- per dataset


def dataset_content_hash(dataset: Dataset) -> str:
    """Order-independent hash of the dataset's files (sorted per-file content hashes)."""
    h = hashlib.blake2b(digest_size=16)
    for chash in sorted(item.content_hash for item in dataset.items):
        h.update(chash.encode())
        h.update(b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class TrainingOverlap:
    """How many images of a dataset the model saw in training, and how that is known."""

    n_seen: int
    n_images: int
    how: str  # "" when no overlap is known

    @property
    def any(self) -> bool:
        return self.n_seen > 0

    def describe(self) -> str:
        """Plain words for a results caption; "" when no overlap is known."""
        if not self.any:
            return ""
        if self.n_seen >= self.n_images:
            return "includes the training images: these numbers are optimistic"
        return f"{self.n_seen} of {self.n_images} images were used in training: these numbers are optimistic"


def _normalised(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def trained_paths(split: Any) -> set[str]:
    """The (normalised) paths a model was fitted on: the ``train`` role of a `Split`;
    every path of `Folds` (each image trained all but one of an ensemble's members)."""
    if split is None:
        return set()
    paths = getattr(split, "paths", ())
    roles = getattr(split, "roles", None)
    if roles is None:
        return {_normalised(p) for p in paths}
    return {_normalised(p) for p, role in zip(paths, roles) if role == "train"}


def training_overlap(dataset: Dataset, trained_on: str = "", split: Any = None) -> TrainingOverlap:
    """Compare ``dataset`` with what a model was trained on.

    Parameters
    ----------
    dataset
        The images about to be predicted (or checked).
    trained_on
        The content hash of the model's training dataset (its card's ``dataset.content_hash``);
        "" when unknown.
    split
        The model's recorded `Split` or `Folds`, or None.

    Returns
    -------
    TrainingOverlap
        ``n_seen`` = images of ``dataset`` in the model's training data: all of them when the
        content hash matches (the same files, wherever they lie now), else those whose path
        is a training path of the split.
    """
    n = len(dataset)
    if trained_on and n and trained_on == dataset_content_hash(dataset):
        return TrainingOverlap(n, n, "same dataset content hash as in the model card")
    trained = trained_paths(split)
    if trained:
        seen = sum(1 for item in dataset.items if _normalised(item.path) in trained)
        if seen:
            return TrainingOverlap(seen, n, f"{seen} of {n} images were in its training split")
    return TrainingOverlap(0, n, "")
