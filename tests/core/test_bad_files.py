"""Issue 13: one bad file is skipped with its reason; bad numbers are refused at load; the cache never
stops a run; labels.csv contradictions are refused naming the rows."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from _badfiles import BAD_FILES, ODD_BUT_GOOD, good_png, instance_abc_dicom

from ctviewer.core.data import cache as cache_module
from ctviewer.core.data import imaging
from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import discover
from ctviewer.core.errors import DatasetError, ImageReadError


@pytest.fixture
def small_bomb_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow's decompression-bomb limit lowered so that an 80 x 80 PNG is over it (32 x 32 is not)."""
    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 3000)


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_each_bad_file_is_refused_with_its_reason(name: str, tmp_path: Path, small_bomb_limit: None) -> None:
    maker, word = BAD_FILES[name]
    path = maker(tmp_path)
    with pytest.raises(ImageReadError) as info:
        imaging.load(path)
    assert word.lower() in info.value.reason.lower()
    assert path.name in str(info.value)


def test_pixel_budget_is_checked_before_decoding_and_names_size_and_limit(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = BAD_FILES["over_budget_dicom"][0](tmp_path)
    monkeypatch.setattr("pydicom.Dataset.pixel_array", property(lambda self: pytest.fail("decoded")))
    with pytest.raises(ImageReadError) as info:
        imaging.load(path)
    assert "20000 x 20000" in info.value.reason and f"{imaging.MAX_PIXELS:,}" in info.value.reason
    # The same budget applies to PNG/TIFF (before Pillow decodes the data).
    monkeypatch.setattr(imaging, "MAX_PIXELS", 500)
    with pytest.raises(ImageReadError, match="32 x 32 pixels"):
        imaging.load(good_png(tmp_path / "p.png"))


def test_memory_error_while_decoding_is_a_reason_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_memory(_im: object) -> np.ndarray:
        raise MemoryError

    monkeypatch.setattr(imaging, "_pil_to_grey", no_memory)
    with pytest.raises(ImageReadError, match="not enough memory"):
        imaging.load(good_png(tmp_path / "big.png"))


def test_odd_headers_and_names_still_load(tmp_path: Path) -> None:
    assert imaging.load(instance_abc_dicom(tmp_path)).meta.instance_number is None
    path = ODD_BUT_GOOD["non_utf8_name"](tmp_path)
    cache = Cache(tmp_path / "cache")
    record = cache.inspect(path)  # the non-UTF-8 name is the cache key
    assert record.meta.rows == 32
    assert cache.inspect(path).content_hash == record.content_hash  # served from the index


def test_window_with_infinity_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown window"):
        imaging.parse_window("0,inf")
    with pytest.raises(ValueError):
        imaging.parse_window("nan,400")


def test_a_folder_of_mixed_files_loads_the_good_and_lists_every_bad(tmp_path: Path, small_bomb_limit: None,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "data"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    for i in range(3):
        good_png(folder / "a" / f"a{i}.png", seed=i)
        good_png(folder / "b" / f"b{i}.png", seed=10 + i)
    bad = {name: maker(folder / ("a" if i % 2 else "b")) for i, (name, (maker, _)) in enumerate(BAD_FILES.items())}
    odd = [maker(folder / "a") for maker in ODD_BUT_GOOD.values()]

    # An unforeseen failure inside one file's reading is that file's reason, not the folder's end.
    real_inspect = Cache.inspect

    def flaky(self: Cache, path: str | Path):
        if Path(path).name == "b2.png":
            raise RuntimeError("decoder crashed")
        return real_inspect(self, path)

    monkeypatch.setattr(Cache, "inspect", flaky)
    ds = discover(folder, cache=Cache(tmp_path / "cache"))
    reasons = {Path(s.path).name: s.reason for s in ds.report.skipped}
    for name, path in bad.items():
        assert BAD_FILES[name][1].lower() in reasons[path.name].lower(), name
    assert "decoder crashed" in reasons["b2.png"]
    assert len(ds) == 5 + len(odd)
    assert {Path(p).name for p in ds.paths} >= {p.name for p in odd}


# --------------------------------------------------------------------------- modality / HU notes


def test_non_ct_and_mixed_hounsfield_sets_are_noted(tmp_path: Path) -> None:
    from _badfiles import ct_dataset

    folder = tmp_path / "data"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(2):
            ct_dataset(seed=i).save_as(folder / label / f"ct{i}.dcm")
    mr = ct_dataset(seed=5)
    mr.Modality = "MR"
    mr.save_as(folder / "a" / "mr.dcm")
    good_png(folder / "b" / "photo.png")
    notes = " ".join(discover(folder, cache=Cache(tmp_path / "c")).report.notes)
    assert "1 DICOM images are not CT (MR: 1)" in notes
    assert "4 images are in Hounsfield units and 2 are not" in notes


# --------------------------------------------------------------------------- cache faults


def _one_png(tmp_path: Path) -> Path:
    return good_png(tmp_path / "x.png")


def test_damaged_index_is_rebuilt_and_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    (root / cache_module._INDEX_FILE).write_bytes(b"this is not a database" * 100)
    cache = Cache(root)
    assert cache.inspect(_one_png(tmp_path)).meta.rows == 32
    assert cache.root == root and "damaged" in " ".join(cache.notes)
    assert "damaged" in caplog.text


def test_a_file_where_the_cache_folder_should_be_falls_back_to_a_temporary_cache(tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    cache = Cache(blocker)
    assert cache.root != blocker and "temporary cache" in cache.notes[0] and str(blocker) in cache.notes[0]
    assert cache.array(_one_png(tmp_path), imaging.Preprocessing(size=16)).shape == (16, 16)
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_an_unwritable_cache_folder_falls_back_to_a_temporary_cache(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    root.chmod(0o500)
    try:
        cache = Cache(root)
        assert cache.root != root and "temporary cache" in cache.notes[0]
    finally:
        root.chmod(0o700)


def test_index_uses_a_crash_safe_journal(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    assert cache._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert cache._db.execute("PRAGMA synchronous").fetchone()[0] >= 1  # NORMAL or FULL, never OFF
    cache.close()


def test_an_index_that_fails_later_does_not_stop_inspection(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    cache._db.close()  # any later SQL fails with ProgrammingError
    assert cache.inspect(_one_png(tmp_path)).meta.rows == 32
    assert "going on without it" in cache.notes[-1]


@pytest.mark.parametrize("foreign", [np.zeros((8, 8), np.float32), np.full((16, 16), 7.0, np.float32),
                                     np.full((16, 16), np.nan, np.float32), np.zeros((16, 16), np.float64)])
def test_a_cached_array_that_does_not_match_its_entry_is_rebuilt(tmp_path: Path, foreign: np.ndarray) -> None:
    cache = Cache(tmp_path / "c")
    path = _one_png(tmp_path)
    prep = imaging.Preprocessing(window="minmax", size=16)
    good = np.array(cache.array(path, prep))
    np.save(cache.array_path(cache.inspect(path).content_hash, prep), foreign)
    np.testing.assert_array_equal(cache.array(path, prep), good)


def test_sqlite_connect_errors_other_than_damage_fall_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = sqlite3.connect

    def refuse(index: object, *args: object, **kwargs: object):
        if "refused" in str(index):
            raise sqlite3.OperationalError("unable to open database file")
        return real(index, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", refuse)
    cache = Cache(tmp_path / "refused")
    assert cache.root != tmp_path / "refused" and "temporary cache" in cache.notes[0]


# --------------------------------------------------------------------------- labels.csv


def _labelled_folder(tmp_path: Path, rows: str) -> Path:
    folder = tmp_path / "set"
    folder.mkdir()
    for i in range(4):
        good_png(folder / f"img{i}.png", seed=i)
    (folder / "labels.csv").write_text(rows, encoding="utf-8")
    return folder


def test_labels_row_with_more_fields_than_the_header_is_skipped_naming_the_line(tmp_path: Path) -> None:
    folder = _labelled_folder(tmp_path, "path,label\nimg0.png,a,extra\nimg1.png,b\nimg2.png,a\nimg3.png,b\n")
    ds = discover(folder, cache=Cache(tmp_path / "c"))
    assert len(ds) == 3
    assert any(s.path.endswith("labels.csv:2") and "3 fields" in s.reason for s in ds.report.skipped)


def test_same_path_twice_with_different_labels_is_refused_naming_the_rows(tmp_path: Path) -> None:
    folder = _labelled_folder(tmp_path, "path,label\nimg0.png,a\nimg1.png,b\n./img0.png,b\nimg2.png,a\n")
    with pytest.raises(DatasetError) as info:
        discover(folder, cache=Cache(tmp_path / "c"))
    assert "img0.png: line 2 says a, line 4 says b" in str(info.value)


def test_same_path_twice_with_the_same_label_is_used_once(tmp_path: Path) -> None:
    folder = _labelled_folder(tmp_path, "path,label\nimg0.png,a\nimg1.png,b\nimg0.png,a\nimg2.png,a\n")
    ds = discover(folder, cache=Cache(tmp_path / "c"))
    assert len(ds) == 3 and "lines 2, 4" in " ".join(ds.report.notes)
