"""Per-image predictions: one row per image, the table every report and metric is built from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Predictions:
    """Columnar predictions for N images.

    ``probs`` is the probability of the positive class. ``labels`` holds class names
    (None for an unlabelled image). ``folds`` is set for out-of-fold cross-validation.
    """

    paths: list[str]
    probs: np.ndarray  # float, shape (N,)
    threshold: float
    classes: tuple[str, str]  # (negative, positive)
    labels: list[str | None] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    studies: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    folds: np.ndarray | None = None
    model_id: str = ""
    # Out-of-fold predictions: each row is called at its own fold's threshold, chosen on that
    # fold's validation data, so no image's call depends on a threshold tuned with it.
    row_thresholds: np.ndarray | None = None
    # 0-based frame of a multi-frame file each row predicts (-1: the file's default frame); set
    # when a volume is predicted slice by slice, None otherwise.
    frames: np.ndarray | None = None
    # Ensembles: standard deviation of the members' probabilities (how much they disagree).
    uncertainty: np.ndarray | None = None
    # True where the image was among the model's own training images (its probability is
    # then optimistic); None when the model does not say what it was trained on.
    in_training: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.paths)
        self.probs = np.asarray(self.probs, dtype=np.float64).reshape(-1)
        for name in ("labels", "patients", "studies", "series"):
            values = getattr(self, name)
            if not values:
                setattr(self, name, [None if name == "labels" else "" for _ in range(n)])
            elif len(values) != n:
                raise ValueError(f"{name} has {len(values)} entries for {n} images")
        if self.probs.shape[0] != n:
            raise ValueError(f"probs has {self.probs.shape[0]} entries for {n} images")
        if self.row_thresholds is not None:
            self.row_thresholds = np.asarray(self.row_thresholds, dtype=np.float64).reshape(-1)
            if self.row_thresholds.shape[0] != n:
                raise ValueError(f"row_thresholds has {self.row_thresholds.shape[0]} entries for {n} images")
        if self.frames is not None:
            self.frames = np.asarray(self.frames, dtype=np.int64).reshape(-1)
            if self.frames.shape[0] != n:
                raise ValueError(f"frames has {self.frames.shape[0]} entries for {n} images")
        if self.uncertainty is not None:
            self.uncertainty = np.asarray(self.uncertainty, dtype=np.float64).reshape(-1)
            if self.uncertainty.shape[0] != n:
                raise ValueError(f"uncertainty has {self.uncertainty.shape[0]} entries for {n} images")
        if self.in_training is not None:
            self.in_training = np.asarray(self.in_training, dtype=bool).reshape(-1)
            if self.in_training.shape[0] != n:
                raise ValueError(f"in_training has {self.in_training.shape[0]} entries for {n} images")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def n_in_training(self) -> int:
        """How many rows are the model's own training images (0 when unknown)."""
        return 0 if self.in_training is None else int(self.in_training.sum())

    @property
    def positive(self) -> str:
        return self.classes[1]

    @property
    def negative(self) -> str:
        return self.classes[0]

    @property
    def is_labelled(self) -> np.ndarray:
        return np.array([label is not None for label in self.labels], dtype=bool)

    @property
    def y_true(self) -> np.ndarray:
        """1 for the positive class, 0 for the negative, -1 where unlabelled."""
        return np.array(
            [-1 if lab is None else int(lab == self.positive) for lab in self.labels], dtype=np.int64
        )

    def thresholds(self, threshold: float | None = None) -> np.ndarray:
        """The threshold each row is called at: ``threshold`` if given, else its own or the common one."""
        if threshold is not None:
            return np.full(len(self), float(threshold))
        if self.row_thresholds is not None:
            return self.row_thresholds
        return np.full(len(self), float(self.threshold))

    def y_pred(self, threshold: float | None = None) -> np.ndarray:
        return (self.probs >= self.thresholds(threshold)).astype(np.int64)

    def pred_names(self, threshold: float | None = None) -> list[str]:
        return [self.classes[int(p)] for p in self.y_pred(threshold)]

    def correct(self, threshold: float | None = None) -> list[bool | None]:
        preds = self.y_pred(threshold)
        return [None if y < 0 else bool(y == p) for y, p in zip(self.y_true, preds)]
