"""Tiny bad input files, made on the spot with pydicom, Pillow and numpy (issue 13).

Each maker writes one file into a folder and returns its path; `BAD_FILES` names them
with a word that the skip reason must contain, so one table drives the unit tests and
the end-to-end test of a folder that mixes good images with every bad file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image as PILImage
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian


def ct_dataset(size: int = 32, seed: int = 0) -> pydicom.Dataset:
    """CT_small.dcm cut to ``size`` x ``size`` pixels of random HU-like values (a good CT slice)."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 2000, (size, size)).astype(np.int16)
    ds.Rows, ds.Columns = size, size
    ds.PixelData = arr.tobytes()
    return ds


def good_png(path: Path, seed: int = 0, size: int = 32) -> Path:
    rng = np.random.default_rng(seed)
    PILImage.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(path)
    return path


def nan_float_dicom(folder: Path) -> Path:
    """A float DICOM (BitsAllocated 32, FloatPixelData) with one NaN pixel."""
    ds = ct_dataset()
    arr = np.random.default_rng(1).random((32, 32)).astype(np.float32)
    arr[3, 4] = np.nan
    del ds.PixelData
    for keyword in ("BitsStored", "HighBit", "PixelRepresentation", "RescaleSlope", "RescaleIntercept"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.BitsAllocated = 32
    ds.FloatPixelData = arr.tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = folder / "float_nan.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def nan_float_tiff(folder: Path) -> Path:
    arr = np.random.default_rng(2).random((32, 32)).astype(np.float32)
    arr[8:16, 8:16] = np.nan
    path = folder / "nan_block.tif"
    PILImage.fromarray(arr, mode="F").save(path)
    return path


def _ct_file(folder: Path, name: str, seed: int, **tags: object) -> Path:
    """A good CT slice with ``tags`` set (in the order given), saved as ``folder / name``."""
    ds = ct_dataset(seed=seed)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    path = folder / name
    ds.save_as(path)
    return path


def huge_slope_dicom(folder: Path) -> Path:
    """RescaleSlope 1e39: every pixel overflows float32 to infinity."""
    return _ct_file(folder, "slope_1e39.dcm", 3, RescaleSlope="1e39")


def zero_slope_dicom(folder: Path) -> Path:
    return _ct_file(folder, "slope_0.dcm", 4, RescaleSlope="0")


def palette_without_lut_dicom(folder: Path) -> Path:
    return _ct_file(folder, "palette_no_lut.dcm", 5, PhotometricInterpretation="PALETTE COLOR", BitsAllocated=8,
                    BitsStored=8, HighBit=7, PixelRepresentation=0, PixelData=np.zeros((32, 32), np.uint8).tobytes())


def instance_abc_dicom(folder: Path) -> Path:
    """InstanceNumber "abcd" (an IS that is no number): the image itself is fine."""
    # A unique 4-character value, swapped for letters in the file's bytes.
    path = _ct_file(folder, "instance_abc.dcm", 6, InstanceNumber=7391)
    data = path.read_bytes()
    assert data.count(b"7391") == 1
    path.write_bytes(data.replace(b"7391", b"abcd"))
    return path


def over_budget_dicom(folder: Path) -> Path:
    """A small file that declares 20000 x 20000 pixels (its pixel data is not that big)."""
    return _ct_file(folder, "declares_20000x20000.dcm", 7, Rows=20000, Columns=20000)


def bomb_png(folder: Path) -> Path:
    """80 x 80 pixels: over Pillow's bomb limit once a test lowers ``PIL.Image.MAX_IMAGE_PIXELS`` to 3000."""
    return good_png(folder / "bomb.png", seed=8, size=80)


def animated_gif(folder: Path) -> Path:
    path = folder / "animated.gif"
    frames = [PILImage.fromarray(np.full((16, 16), v, np.uint8)) for v in (0, 128, 255)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def fifo(folder: Path) -> Path:
    path = folder / "pipe.png"
    os.mkfifo(path)
    return path


def random_bytes(folder: Path) -> Path:
    path = folder / "garbage.dcm"
    path.write_bytes(np.random.default_rng(9).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return path


# (maker, a word the skip reason must contain)
BAD_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "nan_float_dicom": (nan_float_dicom, "not finite"),
    "nan_float_tiff": (nan_float_tiff, "not finite"),
    "huge_slope_dicom": (huge_slope_dicom, "not finite"),
    "zero_slope_dicom": (zero_slope_dicom, "RescaleSlope"),
    "palette_without_lut": (palette_without_lut_dicom, "lookup table"),
    "over_budget_dicom": (over_budget_dicom, "pixel limit"),
    "bomb_png": (bomb_png, "pixel limit"),
    "animated_gif": (animated_gif, "GIF"),
    "fifo": (fifo, "not a regular file"),
    "random_bytes": (random_bytes, "not a DICOM file"),
}
# Readable images whose odd details must not abort anything.
ODD_BUT_GOOD: dict[str, Callable[[Path], Path]] = {
    "instance_abc": instance_abc_dicom,
    "non_utf8_name": lambda folder: good_png(Path(os.fsdecode(os.fsencode(folder) + b"/scan_\xff.png")), seed=10),
}
