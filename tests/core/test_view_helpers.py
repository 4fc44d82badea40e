"""Pure computations the GUI draws with: series grouping and slice order, the model's square
on the original image, heat-map scaling, and whether a dataset holds a model's training images."""

from __future__ import annotations

import numpy as np
import pytest

from ctviewer.core.data.dataset import Dataset, Item
from ctviewer.core.data.imaging import fit_square, model_square
from ctviewer.core.data.series import UNLABELLED, group_items, series_of, slice_key
from ctviewer.core.data.splits import Split
from ctviewer.core.explain.gradcam import normalise_heatmap
from ctviewer.core.model.provenance import dataset_content_hash, training_overlap


def _item(path: str, label: str | None, patient: str, series: str = "S1", instance: int | None = None,
          position: float | None = None) -> Item:
    return Item(path=path, label=label, patient=patient, patient_source="dicom", series=series, instance=instance,
                slice_position=position, content_hash=f"c-{path}")


def _dataset(items: list[Item]) -> Dataset:
    return Dataset(items=items, classes=("contrast", "no_contrast"), positive="contrast", source="fake")


def test_images_group_by_class_patient_series_in_instance_order():
    ds = _dataset([
        _item("/d/b.dcm", "contrast", "P1", instance=3),
        _item("/d/a.dcm", "contrast", "P1", instance=10),
        _item("/d/c.dcm", "contrast", "P1", instance=1),
        _item("/d/x.dcm", "contrast", "P1", series="S2"),
        _item("/d/u.png", None, "P9", series=""),
    ])
    tree = group_items(ds)
    assert set(tree) == {"contrast", UNLABELLED}
    # 1, 3, 10: numeric instance order, not the order of the file names.
    assert [it.path for it in tree["contrast"]["P1"]["S1"]] == ["/d/c.dcm", "/d/b.dcm", "/d/a.dcm"]
    assert [it.path for it in tree[UNLABELLED]["P9"][""]] == ["/d/u.png"]
    assert series_of(ds)["/d/b.dcm"] == ["/d/c.dcm", "/d/b.dcm", "/d/a.dcm"]
    assert series_of(ds)["/d/x.dcm"] == ["/d/x.dcm"]


def test_slice_key_puts_unnumbered_images_last_then_by_position():
    numbered = _item("/z.dcm", "a", "P", instance=99)
    low, high = _item("/b.dcm", "a", "P", position=-5.0), _item("/a.dcm", "a", "P", position=2.5)
    assert sorted([high, low, numbered], key=slice_key) == [numbered, low, high]


@pytest.mark.parametrize("mode", ["pad", "crop"])
@pytest.mark.parametrize("shape", [(40, 60), (60, 40), (50, 50)])
def test_model_square_is_where_fit_square_took_its_pixels(shape, mode):
    h, w = shape
    left, top, side = model_square(shape, mode)
    # A marker pixel in the image lands where the square's geometry says it does.
    pixels = np.zeros(shape, dtype=np.float32)
    y, x = h // 2 + 3, w // 2 - 4
    pixels[y, x] = 1.0
    square = fit_square(pixels, side, mode)  # no resampling at the square's own size
    assert square.shape == (side, side)
    assert square[y - top, x - left] == 1.0 and square.sum() == 1.0
    if mode == "pad":
        assert side == max(h, w) and left <= 0 and top <= 0
    else:
        assert side == min(h, w) and left >= 0 and top >= 0


def test_normalise_heatmap_scales_to_one_and_keeps_empty_maps_empty():
    heat = normalise_heatmap(np.array([[0.0, 2.0], [4.0, np.nan]]))
    assert heat.dtype == np.float32 and float(heat.max()) == 1.0
    np.testing.assert_allclose(heat, [[0.0, 0.5], [1.0, 0.0]])
    assert not normalise_heatmap(np.zeros((3, 3))).any()
    assert not normalise_heatmap(np.full((2, 2), -1.0)).any()
    again = normalise_heatmap(heat)
    np.testing.assert_array_equal(again, heat)  # scaling a scaled map changes nothing


def _trained_split(ds: Dataset, validation: set[str]) -> Split:
    return Split(paths=tuple(ds.paths), patients=tuple(it.patient for it in ds.items),
                 roles=tuple("validation" if p in validation else "train" for p in ds.paths), seed=0)


def test_training_overlap_by_content_hash_and_by_recorded_split():
    ds = _dataset([_item(f"/d/{i}.dcm", "contrast" if i % 2 else "no_contrast", f"P{i}") for i in range(6)])
    # The same files (by content) as the card recorded: every image was in the training data.
    same = training_overlap(ds, dataset_content_hash(ds))
    assert same.any and same.n_seen == 6 and "content hash" in same.how
    assert "training images" in same.describe()
    # Only a split recorded: its training-role images count, validation ones do not.
    split = _trained_split(ds, {"/d/0.dcm", "/d/1.dcm"})
    part = training_overlap(ds, "another-hash", split)
    assert part.n_seen == 4 and part.describe().startswith("4 of 6 images")
    # New images: nothing is said.
    new = _dataset([_item("/new/a.dcm", "contrast", "Q1")])
    nothing = training_overlap(new, dataset_content_hash(ds), split)
    assert not nothing.any and nothing.describe() == ""
