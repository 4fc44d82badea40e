"""`predict/evaluate/gradcam --level`: the CSV contract per level, and a multi-frame file as one unit."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from ctviewer.cli import main
from ctviewer.core.metrics.report import PREDICTION_COLUMNS
from ctviewer.core.metrics.unit_report import UNIT_COLUMNS


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _header(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()[0].split(",")


def write_multiframe(path: Path, frames: list[np.ndarray], patient: str = "VOL-1") -> Path:
    """A multi-frame CT DICOM (stored uint16, intercept -1024) holding ``frames`` in Hounsfield units."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.PatientName = "CT", patient, patient
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.NumberOfFrames = len(frames)
    ds.Rows, ds.Columns = frames[0].shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    stack = np.stack([np.clip(np.round(f + 1024.0), 0, 4095).astype(np.uint16) for f in frames])
    ds.PixelData = stack.tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    from ctviewer.core.data.demo import make_demo_dataset, phantom_slice

    root = tmp_path_factory.mktemp("levels")
    data = make_demo_dataset(root / "data", n_patients=4, slices_per_patient=3, size=48)
    bundle = root / "bundle"
    assert main(["train", str(data), "--out", str(bundle), "--positive", "contrast", "--size", "32",
                 "--epochs", "1", "--batch-size", "8", "--folds", "1", "-q"]) == 0
    rng = np.random.default_rng(1)
    frames = [phantom_slice(rng, 48, contrast=k % 2 == 0, z=0.2 + 0.1 * k) for k in range(5)]
    volume = write_multiframe(root / "volume.dcm", frames)
    return data, bundle, volume


def test_a_multiframe_file_is_predicted_as_one_unit_from_every_frame(trained, tmp_path: Path) -> None:
    from ctviewer.core.data.cache import Cache
    from ctviewer.core.model.bundle import load_bundle
    from ctviewer.core.model.inference import predict_arrays

    _, bundle_dir, volume = trained
    cache_dir = tmp_path / "c"
    out = tmp_path / "series.csv"
    assert main(["predict", str(bundle_dir), str(volume), "--csv", str(out), "--level", "series",
                 "--cache-dir", str(cache_dir), "-q"]) == 0
    rows = _rows(out)
    assert _header(out) == list(UNIT_COLUMNS)
    assert len(rows) == 1 and rows[0]["level"] == "series" and rows[0]["n_images"] == "5"
    bundle, cache = load_bundle(bundle_dir), Cache(cache_dir)
    frames = np.stack([np.asarray(cache.array(volume, bundle.preprocessing, f)) for f in range(5)])
    per_frame = predict_arrays(bundle.model, frames, batch_size=32, tta=bundle.tta)
    assert float(rows[0]["prob"]) == pytest.approx(per_frame.mean(), abs=1e-6)
    assert rows[0]["top_image"] == f"{volume}#frame={int(np.argmax(per_frame)) + 1}"
    assert rows[0]["rule"] == "mean" and rows[0]["label"] == ""
    # A documented sample: 2 evenly spaced frames are the first and the last.
    assert main(["predict", str(bundle_dir), str(volume), "--csv", str(out), "--level", "series",
                 "--max-slices", "2", "--rule", "max", "--cache-dir", str(cache_dir), "-q"]) == 0
    rows = _rows(out)
    assert rows[0]["n_images"] == "2"
    assert float(rows[0]["prob"]) == pytest.approx(max(per_frame[0], per_frame[4]), abs=1e-6)


def test_gradcam_of_a_volume_is_drawn_on_the_slice_that_drove_the_call(trained, tmp_path: Path, capsys) -> None:
    _, bundle_dir, volume = trained
    assert main(["gradcam", str(bundle_dir), str(volume), "--out", str(tmp_path / "cam"), "--level", "series",
                 "-q"]) == 0
    assert len(list((tmp_path / "cam").glob("*_gradcam.png"))) == 1
    assert f"drove the call: {volume}#frame=" in capsys.readouterr().out


def test_csv_contract_per_level_and_evaluate_counts_units(trained, tmp_path: Path, capsys) -> None:
    data, bundle_dir, _ = trained
    image_csv, patient_csv, series_csv = tmp_path / "i.csv", tmp_path / "p.csv", tmp_path / "s.csv"
    for level, target in (("image", image_csv), ("patient", patient_csv), ("series", series_csv)):
        assert main(["predict", str(bundle_dir), str(data), "--csv", str(target), "--level", level, "-q"]) == 0
    assert _header(image_csv) == list(PREDICTION_COLUMNS)
    images = _rows(image_csv)
    patients, series = _rows(patient_csv), _rows(series_csv)
    assert _header(patient_csv) == _header(series_csv) == list(UNIT_COLUMNS)
    assert len(images) == 24 and len(patients) == len(series) == 8  # the demo: one series per patient
    assert sum(int(r["n_images"]) for r in patients) == 24
    import json

    card = json.loads((bundle_dir / "model_card.json").read_text(encoding="utf-8"))
    level = card["levels"]["patient"]
    assert level["rule"] == "mean" and level["chosen_on"] == "validation hold-out"
    image_threshold = float(images[0]["threshold"])
    expected = image_threshold if level["threshold"] is None else level["threshold"]
    assert {float(r["threshold"]) for r in patients} == {expected}
    by_patient: dict[str, list[float]] = {}
    for r in images:
        by_patient.setdefault(r["patient"], []).append(float(r["prob"]))
    for r in patients:
        assert float(r["prob"]) == pytest.approx(np.mean(by_patient[r["unit"]]), abs=1e-9)
        assert r["label"] in ("contrast", "no_contrast") and r["correct"] in ("0", "1")
        assert r["pred"] == ("contrast" if float(r["prob"]) >= float(r["threshold"]) else "no_contrast")
    capsys.readouterr()
    assert main(["evaluate", str(patient_csv), "--json"]) == 0

    payload = json.loads(capsys.readouterr().out)
    assert payload["unit"] == "patient" and payload["n"] == 8
    # The per-image report aggregated at evaluation gives the same patient counts.
    threshold = float(patients[0]["threshold"])
    assert main(["evaluate", str(image_csv), "--level", "patient", "--threshold", repr(threshold), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert {k: again[k] for k in ("n", "tp", "tn", "fp", "fn")} == {k: payload[k] for k in ("n", "tp", "tn", "fp", "fn")}
    # Image level: the patient bootstrap sits beside Wilson/DeLong, and the unit is said.
    assert main(["evaluate", str(image_csv), "--json"]) == 0
    image_payload = json.loads(capsys.readouterr().out)
    assert image_payload["unit"] == "image" and image_payload["n_patients"] == 8
    assert "sensitivity" in image_payload["patient_bootstrap_ci"]
    assert main(["evaluate", str(patient_csv), "--level", "image"]) == 1
    assert "cannot be evaluated at image level" in capsys.readouterr().err
