"""labels.csv with one label per patient (``patient,label``), applied to all that patient's images."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctviewer.core.data.dataset import discover
from ctviewer.core.data.demo import make_demo_dataset
from ctviewer.core.errors import DatasetError


def _png_patients(root: Path, counts: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    for patient, n in counts.items():
        (root / patient).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(root / patient / f"s{i}.png")


def test_patient_labels_apply_to_every_image_of_the_patient_folder(tmp_path: Path) -> None:
    _png_patients(tmp_path, {"P1": 3, "P2": 2, "P3": 1})
    (tmp_path / "labels.csv").write_text("patient,label\nP1,covid\nP2,normal\nP9,covid\n", encoding="utf-8")
    ds = discover(tmp_path)
    by_patient = {(it.patient, it.label) for it in ds.items}
    assert by_patient == {("P1", "covid"), ("P2", "normal"), ("P3", None)}
    assert ds.class_counts() == {"covid": 3, "normal": 2}
    assert any("not listed" in note for note in ds.report.notes)
    assert any("no images here" in note and "P9" in note for note in ds.report.notes)


def test_patient_labels_match_the_dicom_patient_id(tmp_path: Path) -> None:
    folder = make_demo_dataset(tmp_path / "demo", n_patients=2, slices_per_patient=2, size=32)
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, path in enumerate(sorted(folder.rglob("*.dcm"))):
        shutil.copy(path, flat / f"im{i}.dcm")  # no class folders, no patient folders: ids from DICOM
    ids = sorted({it.patient for it in discover(flat).items})
    (flat / "labels.csv").write_text("patient,label\n" + "".join(f"{p},{'yes' if k % 2 else 'no'}\n"
                                                                  for k, p in enumerate(ids)), encoding="utf-8")
    ds = discover(flat / "labels.csv")
    assert ds.is_labelled and len(ds) == 8
    for it in ds.items:
        assert it.label == ("yes" if ids.index(it.patient) % 2 else "no")


def test_a_patient_with_two_labels_is_a_clear_error(tmp_path: Path) -> None:
    _png_patients(tmp_path, {"P1": 2})
    (tmp_path / "labels.csv").write_text("patient,label\nP1,covid\nP1,normal\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"labels\.csv: patient 'P1' has two labels: 'covid' \(line 2\) "
                                           r"and 'normal' \(line 3\)"):
        discover(tmp_path)


def test_path_labels_still_work_beside_a_patient_column(tmp_path: Path) -> None:
    _png_patients(tmp_path, {"P1": 2})
    (tmp_path / "labels.csv").write_text("path,label,patient\nP1/s0.png,covid,P1\nP1/s1.png,covid,P1\n",
                                         encoding="utf-8")
    ds = discover(tmp_path)
    assert [it.label for it in ds.items] == ["covid", "covid"]
