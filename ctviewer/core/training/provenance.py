"""What a model was trained on, compared with a dataset: are its numbers on that dataset optimistic?

A model's card records the content hash of its training dataset, and its split (or folds)
the paths it trained on. Predictions on images the model trained on look better than they
will on new patients; every place that shows such numbers says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ctviewer.core.data.dataset import Dataset
from ctviewer.core.training.results import dataset_content_hash


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
