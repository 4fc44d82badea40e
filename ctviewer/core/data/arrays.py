"""Numpy arrays as a dataset: what a Keras user has in a notebook (``x``, ``y``, maybe patients).

Two forms, for two needs:

`array_index`
    An in-memory `Dataset` describing the arrays (labels, patients, pixel hashes) in their
    given order, with item paths ``x[0]``, ``x[1]``... that are names, not files. Enough for
    the data checks of the doctor (tail split, class balance, duplicates, patient leaks).
`from_arrays`
    A real `Dataset` on disk: each image written once as an *array image* (``.npz``, see
    `ctviewer.core.data.imaging`) in a folder with a ``labels.csv``, then read by `discover`
    like any folder. Training, cross-validation, prediction and the CLI/GUI all work on it
    (``ctviewer train <folder>`` too). The folder is named by the content, so the same
    arrays reuse the same files.

Labels ``y`` may be 0/1 (ints or bools), one-hot / softmax rows ``(N, 2)``, or class names.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ctviewer.core.data.cache import Cache, default_cache_dir
from ctviewer.core.data.dataset import LABELS_FILE, Dataset, Item, LoadReport, _choose_positive, discover
from ctviewer.core.data.imaging import ARRAY_SUFFIX

DEFAULT_CLASSES = ("class 0", "class 1")
# Below this minimum the arrays are taken as Hounsfield units: air is -1000 HU, and no
# photo-like or normalised image goes this negative.
HU_MINIMUM = -500.0


def as_grey_images(x: Any) -> np.ndarray:
    """``x`` as (N, H, W) float32: accepts (N, H, W), (N, H, W, 1), (N, H, W, 3) and (N, 1, H, W).

    Three channels (a grey image repeated for an ImageNet backbone) are averaged.

    Raises
    ------
    ValueError
        Another shape, or NaN / infinite values (with the first bad index).
    """
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 4 and arr.shape[-1] in (1, 3):
        arr = arr[..., 0] if arr.shape[-1] == 1 else arr.mean(axis=-1)
    elif arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3 or min(arr.shape) == 0:
        raise ValueError(f"x has shape {np.shape(x)}: expected images (N, H, W), (N, H, W, 1) or (N, H, W, 3)")
    bad = ~np.isfinite(arr).reshape(len(arr), -1).all(axis=1)
    if bad.any():
        raise ValueError(f"x holds NaN or infinite values ({int(bad.sum())} images, first x[{int(np.argmax(bad))}])")
    return arr


def label_names(y: Any, n: int, classes: Sequence[str] | None = None,
                positive: str | None = None) -> tuple[list[str | None], tuple[str, ...], str | None]:
    """(one class name per image, the class names, the positive class) from ``y``.

    ``y`` of 0/1 (or one-hot rows) takes its names from ``classes`` (for 0 and 1; default
    ``"class 0"``, ``"class 1"``) and class 1 is positive. ``y`` of names keeps them; the
    positive class is ``positive`` or `discover`'s default rule. ``y=None``: unlabelled.

    Raises
    ------
    ValueError
        Wrong length, labels other than two classes, or an unknown ``positive``.
    """
    if y is None:
        return [None] * n, tuple(classes or ()), None
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 2:
        arr = arr.argmax(axis=1)  # one-hot or softmax rows: the Keras to_categorical form
    elif arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"y has shape {np.shape(y)} for {n} images: expected ({n},) labels or ({n}, 2) one-hot rows")
    if arr.dtype.kind in "biuf":
        values = set(np.unique(arr).tolist())
        if not values <= {0, 1}:
            raise ValueError(f"y holds {sorted(values)[:5]}: expected 0/1 labels (a binary classifier)")
        names = tuple(classes) if classes is not None else DEFAULT_CLASSES
        if len(names) != 2 or names[0] == names[1]:
            raise ValueError(f"classes must be two different names for 0 and 1, got {classes!r}")
        if positive is not None and positive != names[1]:
            raise ValueError(f"with 0/1 labels class 1 ({names[1]!r}) is positive; got positive={positive!r}")
        return [names[int(v)] for v in arr], names, names[1]
    labels = [str(v) for v in arr.tolist()]
    found = tuple(sorted(set(labels)))
    if len(found) > 2:
        raise ValueError(f"y holds {len(found)} classes ({', '.join(found[:5])}): expected two")
    from ctviewer.core.errors import DatasetError

    try:
        chosen = _choose_positive(found, positive, "y", LoadReport())
    except DatasetError as exc:
        raise ValueError(str(exc)) from None
    return list(labels), found, chosen


def _patient_list(patients: Any, n: int) -> list[str] | None:
    if patients is None:
        return None
    values = [str(p) for p in np.asarray(patients).reshape(-1).tolist()]
    if len(values) != n:
        raise ValueError(f"patients has {len(values)} entries for {n} images")
    if any(not v.strip() for v in values):
        raise ValueError("patients holds an empty id")
    return values


def array_index(x: Any, y: Any = None, patients: Any = None, classes: Sequence[str] | None = None,
                positive: str | None = None) -> Dataset:
    """An in-memory `Dataset` describing the arrays in their order (item paths ``x[i]`` are names, not files).

    For the data checks only: training and prediction need files, see `from_arrays`.
    """
    rows = np.asarray(x)  # any (N, ...) rows: the checks need labels and hashes, not images (no float copy)
    if rows.ndim < 2 or len(rows) == 0:
        raise ValueError(f"x has shape {np.shape(x)}: expected one row per sample, (N, ...)")
    n = len(rows)
    labels, names, chosen = label_names(y, n, classes, positive)
    ids = _patient_list(patients, n)
    shape = (int(rows.shape[1]), int(rows.shape[2])) if rows.ndim >= 3 else (1, int(rows.shape[1]))
    items = []
    for i, row in enumerate(rows):
        digest = hashlib.blake2b(np.ascontiguousarray(row).tobytes(), digest_size=16).hexdigest()
        items.append(Item(path=f"x[{i}]", label=labels[i], patient=ids[i] if ids else f"x[{i}]",
                          patient_source="labels" if ids else "file", format="array",
                          shape=shape, content_hash=digest, pixel_hash=digest))
    return Dataset(items=items, classes=names, positive=chosen, source=f"arrays ({n} images)")


def _digest(images: np.ndarray, labels: Sequence[str | None], ids: Sequence[str] | None, is_hu: bool) -> str:
    h = hashlib.blake2b(digest_size=12)
    h.update(str(images.shape).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(repr((list(labels), list(ids or []), is_hu)).encode())
    return h.hexdigest()


def from_arrays(x: Any, y: Any = None, patients: Any = None, *, classes: Sequence[str] | None = None,
                positive: str | None = None, hu: bool | None = None, window: str | None = None,
                folder: str | Path | None = None, cache: Cache | None = None) -> Dataset:
    """Write the arrays as array images with a ``labels.csv`` and return them as a `Dataset`.

    Parameters
    ----------
    x
        Images (N, H, W[, 1 or 3]) in any intensity scale.
    y
        0/1 labels, one-hot rows or class names (see `label_names`); None for unlabelled images.
    patients
        One patient id per image; without it each image is its own patient (and the dataset
        says so), so no split can keep a patient's slices together.
    classes, positive
        Class names for 0 and 1 / the positive class (see `label_names`).
    hu
        Whether the values are Hounsfield units, so the recipes' HU windows apply. Default:
        yes when the minimum is below -500 (air); otherwise the images are windowed like a
        PNG (each by its own 0.5-99.5 percentile range, which drops absolute brightness).
    window
        For arrays already mapped to [0, 1] by a HU window (e.g. ``"wide"``, ``"40,400"``):
        that window, so they are stored back as HU and the recipes window them as DICOMs
        (values clipped by the window stay at its ends).
    folder
        Where to write (default: ``<ctviewer cache>/from_arrays/<content hash>``). A folder
        that already holds a ``labels.csv`` is reused as it is.
    cache
        Inspection cache passed to `discover`.

    Returns
    -------
    Dataset
        In the arrays' order (item ``i`` is ``x[i]``), with the folder as its source.
    """
    images = as_grey_images(x)
    n = len(images)
    labels, names, chosen = label_names(y, n, classes, positive)
    ids = _patient_list(patients, n)
    if window is not None:
        images = _unit_to_hu(images, window)
        hu = True
    is_hu = bool(images.min() < HU_MINIMUM) if hu is None else bool(hu)
    target = Path(folder) if folder is not None else (
        default_cache_dir() / "from_arrays" / _digest(images, labels, ids, is_hu))
    if not (target / LABELS_FILE).is_file():
        _write_folder(target, images, labels, ids, is_hu)
    dataset = discover(target, positive=chosen if y is not None and len(set(labels)) == 2 else None, cache=cache)
    if y is not None and names and tuple(dataset.classes) != tuple(sorted(set(labels))):
        raise ValueError(f"{target}: holds classes {dataset.classes}, not those of y; give another folder")
    if len(dataset) != n:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in dataset.report.skipped[:3])
        raise ValueError(f"{target}: {len(dataset)} of {n} images could be read back ({reasons})")
    return dataset


def _unit_to_hu(images: np.ndarray, window: str) -> np.ndarray:
    """Undo a HU window: [0, 1] -> [center - width / 2, center + width / 2]."""
    from ctviewer.core.data.imaging import parse_window

    w = parse_window(window)
    if w.center is None or w.width is None:
        raise ValueError(f"window {window!r} has no fixed HU range; give a preset such as 'wide' or 'CENTER,WIDTH'")
    low, high = float(images.min()), float(images.max())
    if low < -0.01 or high > 1.01:
        raise ValueError(f"window={window!r} is for arrays in [0, 1], but x spans {low:.4g} to {high:.4g}")
    return (np.float32(w.center - w.width / 2.0) + images * np.float32(w.width)).astype(np.float32)


def _write_folder(target: Path, images: np.ndarray, labels: Sequence[str | None], ids: Sequence[str] | None,
                  is_hu: bool) -> None:
    """Write into a temporary sibling, then rename: a half-written folder is never used."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".writing-", dir=target.parent))
    try:
        rows = []
        for i, image in enumerate(images):
            name = f"x{i:06d}{ARRAY_SUFFIX}"
            np.savez(tmp / name, pixels=image, is_hu=np.bool_(is_hu))
            rows.append({"path": name, "label": labels[i] or "", "patient": ids[i] if ids else ""})
        with open(tmp / LABELS_FILE, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["path", "label", "patient"])
            writer.writeheader()
            writer.writerows(rows)
        if target.exists() and not any(target.iterdir()):
            target.rmdir()
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / LABELS_FILE).is_file():
            raise
