"""Relabelling and labels.csv: what the GUI saves is what `discover` reads back."""

from __future__ import annotations

from pathlib import Path

from ctviewer.core.data.dataset import discover
from ctviewer.core.data.demo import make_demo_dataset
from ctviewer.core.data.labels import default_labels_path, relabel, write_labels_csv


def test_relabel_a_patient_then_round_trip_through_labels_csv(tmp_path: Path) -> None:
    folder = make_demo_dataset(tmp_path / "d", n_patients=2, slices_per_patient=2, size=32)
    ds = discover(folder)
    patient = ds.items[0].patient
    moved = [it.path for it in ds.items if it.patient == patient]
    changed = relabel(ds, moved, "no_contrast")
    assert changed.class_counts() == {"contrast": 2, "no_contrast": 6}
    assert ds.class_counts() == {"contrast": 4, "no_contrast": 4}  # the original is untouched
    target = write_labels_csv(changed, default_labels_path(changed))
    assert target == folder / "labels.csv"
    back = discover(folder)  # a labels.csv now takes precedence over the class folders
    read_back = {Path(it.path).resolve(): it.label for it in back.items}
    assert read_back == {Path(it.path).resolve(): it.label for it in changed.items}
    assert back.class_counts() == {"contrast": 2, "no_contrast": 6}
    assert {it.patient for it in back.items} == {it.patient for it in ds.items}


def test_unlabelled_images_are_left_out(tmp_path: Path) -> None:
    folder = make_demo_dataset(tmp_path / "d", n_patients=1, slices_per_patient=2, size=32)
    ds = discover(folder)
    cleared = relabel(ds, [ds.items[0].path], None)
    text = write_labels_csv(cleared, tmp_path / "out" / "labels.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "path,label,patient"
    assert len(text.splitlines()) == 1 + len(ds) - 1
