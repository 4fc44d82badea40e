"""Dataset discovery: layouts, labels, patients, duplicates and every kind of bad input."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.data import get_testdata_file

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import discover
from ctviewer.core.data.demo import make_demo_dataset
from ctviewer.core.errors import Cancelled, DatasetError
from ctviewer.core.events import ImageFound, Progress

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))


def _ct(path: Path, patient: str, shift: int = 0) -> Path:
    """A copy of pydicom's CT with its own patient id and (shifted) pixels."""
    ds = pydicom.dcmread(CT_SMALL)
    ds.PatientID = patient
    arr = ds.pixel_array.copy()
    ds.PixelData = np.roll(arr, shift, axis=1).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return path


def _png(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((16, 16), value, dtype=np.uint8)
    arr[0, 0] = 255 - value
    PILImage.fromarray(arr).save(path)
    return path


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    return make_demo_dataset(tmp_path / "demo", n_patients=3, slices_per_patient=2, size=32)


def test_class_folders_with_nested_series(demo: Path) -> None:
    ds = discover(demo)
    assert ds.classes == ("contrast", "no_contrast")
    assert ds.positive == "contrast"  # "no_contrast" reads as the negative class
    assert ds.class_counts() == {"contrast": 6, "no_contrast": 6}
    assert len(set(ds.patients)) == 6
    assert all(it.patient_source == "dicom" and it.is_hu for it in ds.items)
    assert ds.y.sum() == 6 and not ds.report.skipped


def test_explicit_positive_and_unknown_positive(demo: Path) -> None:
    assert discover(demo, positive="no_contrast").y.sum() == 6
    with pytest.raises(DatasetError, match="positive class 'tumour' not found"):
        discover(demo, positive="tumour")


def test_labels_csv_with_patient_column_and_missing_rows(tmp_path: Path) -> None:
    a = _png(tmp_path / "img" / "a.png", 10)
    b = _png(tmp_path / "img" / "b.png", 20)
    (tmp_path / "labels.csv").write_text(
        "path,label,patient\nimg/a.png,sick,P1\nimg/b.png,well,P2\nimg/missing.png,well,P3\n"
    )
    ds = discover(tmp_path)
    assert [it.label for it in ds.items] == ["sick", "well"]
    assert [it.patient for it in ds.items] == ["P1", "P2"]
    assert all(it.patient_source == "labels" for it in ds.items)
    assert [s.reason for s in ds.report.skipped] == ["listed in labels.csv (line 4) but not found"]
    assert str(a) in ds.paths and str(b) in ds.paths


def test_labels_csv_without_required_columns(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,class\na.png,x\n")
    with pytest.raises(DatasetError, match="needs columns 'path' and 'label'"):
        discover(tmp_path)


def test_dropped_files_are_unlabelled_and_patients_default_per_file(tmp_path: Path) -> None:
    files = [_png(tmp_path / f"p{i}.png", i * 40) for i in range(3)]
    ds = discover(files)
    assert len(ds) == 3 and ds.classes == () and not ds.is_labelled
    assert len(set(ds.patients)) == 3
    assert any("no patient id" in note for note in ds.report.notes)
    with pytest.raises(DatasetError, match="no label"):
        ds.require_binary()


def test_duplicates_detected_by_pixels_not_names(tmp_path: Path) -> None:
    a = _ct(tmp_path / "x" / "one.dcm", "P1")
    shutil.copy(a, tmp_path / "x" / "copy of one.dcm")
    _ct(tmp_path / "y" / "two.dcm", "P2", shift=3)
    ds = discover(tmp_path)
    assert len(ds.report.duplicates) == 1
    assert sorted(Path(p).name for p in ds.report.duplicates[0]) == ["copy of one.dcm", "one.dcm"]


def test_bad_files_are_skipped_with_reasons_and_nothing_else_lost(tmp_path: Path) -> None:
    good = [_ct(tmp_path / "a" / "good ü 1.dcm", "P1"), _ct(tmp_path / "b" / "good 2.dcm", "P2", shift=5)]
    (tmp_path / "a" / "report.pdf").write_bytes(b"%PDF-1.5 something")
    (tmp_path / "a" / "notes.txt").write_text("hello")
    (tmp_path / "a" / "zero.dcm").write_bytes(b"")
    data = CT_SMALL.read_bytes()
    (tmp_path / "b" / "truncated.dcm").write_bytes(data[: len(data) // 3])
    shutil.copy(get_testdata_file("rtplan.dcm"), tmp_path / "b" / "plan.dcm")
    ds = discover(tmp_path)
    assert sorted(ds.paths) == sorted(str(p) for p in good)
    reasons = {Path(s.path).name: s.reason for s in ds.report.skipped}
    assert "PDF" in reasons["report.pdf"]
    assert "text" in reasons["notes.txt"]
    assert "empty" in reasons["zero.dcm"]
    assert "truncated" in reasons["truncated.dcm"] or "corrupt" in reasons["truncated.dcm"]
    assert "no pixel data" in reasons["plan.dcm"]


def test_found_reports_each_readable_image_as_it_is_read_and_never_a_skipped_one(tmp_path: Path) -> None:
    _ct(tmp_path / "a" / "1.dcm", "P1")
    (tmp_path / "a" / "2.pdf").write_bytes(b"%PDF-1.5 something")
    _ct(tmp_path / "b" / "3.dcm", "P2", shift=5)
    found: list[str] = []
    seen_at_progress: list[int] = []

    def on_event(event) -> None:
        if isinstance(event, ImageFound):
            found.append(event.path)
        elif isinstance(event, Progress):
            seen_at_progress.append(len(found))

    ds = discover(tmp_path, on_event=on_event)
    assert sorted(found) == sorted(ds.paths)
    assert len(ds.report.skipped) == 1 and not any(p.endswith(".pdf") for p in found)
    assert seen_at_progress[0] == 1  # the first image was reported before the scan went on
    assert len(seen_at_progress) == 3  # one Progress per file, the skipped one too


def test_discover_stops_when_asked_and_raises_cancelled_itself(tmp_path: Path) -> None:
    for i in range(4):
        _ct(tmp_path / "a" / f"{i}.dcm", f"P{i}", shift=i)
    found: list[str] = []

    def on_event(event) -> None:
        if isinstance(event, ImageFound):
            found.append(event.path)

    with pytest.raises(Cancelled):
        discover(tmp_path, on_event=on_event, should_stop=lambda: len(found) >= 2)
    assert len(found) == 2  # checked before each file: no file read after the stop


def test_unreadable_file_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _ct(tmp_path / "a" / "ok.dcm", "P1")
    locked = _ct(tmp_path / "a" / "locked.dcm", "P2", shift=1)
    os.chmod(locked, 0)
    if os.geteuid() == 0:  # root reads anything: simulate the permission error
        import builtins

        real_open = builtins.open

        def guarded_open(file, *args, **kwargs):
            if Path(file) == locked:
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", guarded_open)
    ds = discover(tmp_path)
    assert [Path(p).name for p in ds.paths] == ["ok.dcm"]
    assert "permission denied" in ds.report.skipped[0].reason


def test_one_class_folder_scans_but_cannot_train(tmp_path: Path) -> None:
    _ct(tmp_path / "only" / "a.dcm", "P1")
    _ct(tmp_path / "only" / "b.dcm", "P2", shift=2)
    ds = discover(tmp_path)
    assert ds.classes == ("only",) and len(ds) == 2
    with pytest.raises(DatasetError, match="only one class"):
        ds.require_binary()


def test_empty_folder_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="empty folder"):
        discover(tmp_path)
    with pytest.raises(DatasetError, match="no such file"):
        discover(tmp_path / "nope")


def test_symlink_loop_is_reported_not_followed(tmp_path: Path) -> None:
    _ct(tmp_path / "cls" / "series" / "a.dcm", "P1")
    os.symlink(tmp_path / "cls", tmp_path / "cls" / "series" / "loop")
    ds = discover(tmp_path)
    assert len(ds) == 1
    assert any("loop" in s.reason for s in ds.report.skipped)


def test_side_files_next_to_class_folders_are_noted_not_skipped(demo: Path) -> None:
    (demo / "README.md").write_text("about")
    ds = discover(demo)
    assert not ds.report.skipped and any("README.md" in n for n in ds.report.notes)


def test_cached_rediscovery_is_the_same_and_sees_edits(tmp_path: Path) -> None:
    path = _ct(tmp_path / "c" / "a.dcm", "P1")
    _ct(tmp_path / "d" / "b.dcm", "P2", shift=2)
    cache = Cache(tmp_path / "cache")
    first = discover(tmp_path, cache=cache)
    assert discover(tmp_path, cache=cache).items == first.items
    _ct(path, "P9", shift=7)  # edit the file: new content, new size/mtime
    os.utime(path, ns=(1, 1))
    changed = discover(tmp_path, cache=cache)
    assert {it.patient for it in changed.items} == {"P9", "P2"}


def test_require_binary_messages(demo: Path) -> None:
    ds = discover(demo)
    ds.require_binary()
    tiny = ds.subset([0, len(ds) - 1])
    with pytest.raises(DatasetError, match="too few images per class"):
        tiny.require_binary()


def test_siim_scan(siim_dir: Path) -> None:
    ds = discover(siim_dir)
    assert len(ds) == 100 and ds.class_counts() == {"contrast": 50, "no_contrast": 50}
    assert len(set(ds.patients)) == 54 and not ds.report.skipped
    assert ds.positive == "contrast"
