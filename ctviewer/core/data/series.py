"""Series and slice order: how a dataset's images group into class > patient > series, each
series in the order a radiologist scrolls it. Used by the GUI's browser and viewer."""

from __future__ import annotations

from collections import defaultdict

from ctviewer.core.data.dataset import Dataset, Item

UNLABELLED = "(unlabelled)"
_NO_INSTANCE = 1 << 30  # images without an instance number go after the numbered ones


def slice_key(item: Item) -> tuple[int, float, str]:
    """Sort key of an image in its series: DICOM instance number, then slice position, then path."""
    return (item.instance if item.instance is not None else _NO_INSTANCE,
            item.slice_position if item.slice_position is not None else 0.0, item.path)


def group_items(dataset: Dataset) -> dict[str, dict[str, dict[str, list[Item]]]]:
    """class -> patient -> series UID ("" when none) -> images in slice order.

    Unlabelled images are grouped under :data:`UNLABELLED`.
    """
    tree: dict[str, dict[str, dict[str, list[Item]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for item in dataset.items:
        tree[item.label or UNLABELLED][item.patient][item.series or ""].append(item)
    for patients in tree.values():
        for series in patients.values():
            for images in series.values():
                images.sort(key=slice_key)
    return {label: {patient: dict(series) for patient, series in patients.items()} for label, patients in tree.items()}


def series_of(dataset: Dataset) -> dict[str, list[str]]:
    """Each image path -> the paths of its series (same class, patient and series UID), in slice order."""
    out: dict[str, list[str]] = {}
    for patients in group_items(dataset).values():
        for series in patients.values():
            for images in series.values():
                paths = [it.path for it in images]
                for path in paths:
                    out[path] = paths
    return out
