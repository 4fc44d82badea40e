"""Reading every supported format into grey float32 pixels + metadata; windowing; resizing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.data import get_testdata_file

from ctviewer.core.data import imaging
from ctviewer.core.errors import ImageReadError


def _testfile(name: str) -> Path:
    path = get_testdata_file(name)
    if path is None:  # pragma: no cover - pydicom always bundles these
        pytest.skip(f"pydicom test file {name} not bundled")
    return Path(path)


# --------------------------------------------------------------------------- DICOM


def test_ct_dicom_is_in_hounsfield_units_with_metadata() -> None:
    img = imaging.load(_testfile("CT_small.dcm"))
    ds = pydicom.dcmread(_testfile("CT_small.dcm"))
    expected = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(img.pixels, expected)
    assert img.meta.is_hu and img.meta.modality == "CT"
    assert img.meta.patient_id == str(ds.PatientID)
    assert img.meta.series_uid == str(ds.SeriesInstanceUID)
    assert img.meta.study_uid == str(ds.StudyInstanceUID)
    assert img.meta.instance_number == int(ds.InstanceNumber)
    assert img.meta.slice_position == pytest.approx(float(ds.ImagePositionPatient[2]))
    assert img.meta.pixel_spacing == pytest.approx(tuple(float(v) for v in ds.PixelSpacing))
    assert img.pixels.dtype == np.float32


def test_dicom_window_tags_first_of_multivalue_is_kept(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_testfile("CT_small.dcm"))
    ds.WindowCenter, ds.WindowWidth = [40, -600], [400, 1500]
    path = tmp_path / "win.dcm"
    ds.save_as(path)
    meta = imaging.load(path).meta
    assert (meta.window_center, meta.window_width) == (40.0, 400.0)


def test_dicom_without_extension_is_detected_by_preamble(tmp_path: Path) -> None:
    target = tmp_path / "IM0001"
    shutil.copy(_testfile("CT_small.dcm"), target)
    assert imaging.sniff_format(target) == "dicom"
    np.testing.assert_array_equal(imaging.load(target).pixels, imaging.load(_testfile("CT_small.dcm")).pixels)


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_testfile("CT_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    path = tmp_path / "mono1.dcm"
    ds.save_as(path)
    normal = imaging.load(_testfile("CT_small.dcm")).pixels
    inverted = imaging.load(path).pixels
    # Inversion maps the brightest pixel to the darkest and keeps the range.
    np.testing.assert_allclose(inverted, normal.max() + normal.min() - normal)
    assert np.corrcoef(inverted.ravel(), normal.ravel())[0, 1] < -0.99


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline (RGB -> grey)
        "JPGExtended.dcm",  # JPEG extended 12-bit
        "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
        "JPEG2000.dcm",  # JPEG 2000
        "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
        "MR_small_RLE.dcm",  # RLE lossless
    ],
)
def test_compressed_transfer_syntaxes_decode(name: str) -> None:
    img = imaging.load(_testfile(name))
    assert img.pixels.ndim == 2 and img.pixels.dtype == np.float32
    assert np.isfinite(img.pixels).all() and img.pixels.std() > 0
    assert img.meta.transfer_syntax not in ("", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


def test_lossless_compressed_equals_uncompressed() -> None:
    plain = imaging.load(_testfile("MR_small.dcm")).pixels
    for name in ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"):
        np.testing.assert_array_equal(imaging.load(_testfile(name)).pixels, plain)


def test_jpeg_lossless_decoder_is_installed() -> None:
    # No bundled JPEG Lossless (Process 14) file: check the plugin that decodes it is present.
    from pydicom.pixels.decoders import JPEGLosslessSV1Decoder

    assert JPEGLosslessSV1Decoder.is_available


def test_multiframe_keeps_frames_and_picks_middle() -> None:
    img = imaging.load(_testfile("SC_rgb_rle_2frame.dcm"))
    assert img.frame_count == 2 and img.pixels.shape[0] == 2
    assert img.frame().shape == img.pixels.shape[1:]
    prep = imaging.preprocess(img, imaging.Preprocessing(window="minmax", size=16))
    assert prep.shape == (16, 16)


def test_dicom_without_pixel_data_is_refused_with_reason() -> None:
    with pytest.raises(ImageReadError, match="no pixel data"):
        imaging.load(_testfile("rtplan.dcm"))


def test_truncated_dicom_is_refused_with_reason(tmp_path: Path) -> None:
    data = _testfile("CT_small.dcm").read_bytes()
    path = tmp_path / "truncated.dcm"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as info:
        imaging.load(path)
    assert "truncated.dcm" in str(info.value)
    assert "truncated" in info.value.reason or "corrupt" in info.value.reason


# --------------------------------------------------------------------------- PNG / JPEG / TIFF


def _save(arr: np.ndarray, path: Path, mode: str | None = None) -> Path:
    PILImage.fromarray(arr, mode=mode).save(path) if mode else PILImage.fromarray(arr).save(path)
    return path


def test_png_8bit_grey(tmp_path: Path) -> None:
    arr = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    img = imaging.load(_save(arr, tmp_path / "g8.png"))
    np.testing.assert_array_equal(img.pixels, arr.astype(np.float32))
    assert img.meta.format == "png" and not img.meta.is_hu


def test_png_16bit_grey_keeps_depth(tmp_path: Path) -> None:
    arr = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    path = tmp_path / "g16.png"
    PILImage.fromarray(arr).save(path)
    img = imaging.load(path)
    np.testing.assert_array_equal(img.pixels, arr.astype(np.float32))
    assert img.pixels.max() > 255


def test_rgb_and_rgba_become_luma_alpha_ignored(tmp_path: Path) -> None:
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    expected = 200 * 0.299 + 100 * 0.587 + 50 * 0.114
    assert imaging.load(_save(rgb, tmp_path / "rgb.png")).pixels == pytest.approx(np.full((4, 4), expected))
    rgba = np.dstack([rgb, np.full((4, 4), 7, np.uint8)])
    out = imaging.load(_save(rgba, tmp_path / "rgba.png")).pixels
    assert out.shape == (4, 4) and out == pytest.approx(np.full((4, 4), expected))


def test_16bit_rgba_png(tmp_path: Path) -> None:
    # Pillow cannot write 16-bit RGBA, so write the PNG by hand (zlib + CRC chunks).
    import struct
    import zlib

    h, w = 3, 5
    rgba = np.zeros((h, w, 4), dtype=">u2")
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 60000, 30000, 1000, 65535
    raw = b"".join(b"\x00" + rgba[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path = tmp_path / "rgba16.png"
    path.write_bytes(png)
    img = imaging.load(path)
    assert img.pixels.shape == (h, w)
    # Either 16-bit luma or its 8-bit reduction (Pillow may reduce 16-bit RGBA): the ranking of channels holds.
    value = float(img.pixels[0, 0])
    full = 60000 * 0.299 + 30000 * 0.587 + 1000 * 0.114
    assert value == pytest.approx(full, rel=0.01) or value == pytest.approx(full / 257, rel=0.02)


def test_palette_png_uses_palette_colours_not_indices(tmp_path: Path) -> None:
    im = PILImage.new("P", (4, 4))
    im.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    im.putpixel((0, 0), 1)
    path = tmp_path / "pal.png"
    im.save(path)
    pixels = imaging.load(path).pixels
    assert pixels[0, 0] == pytest.approx(255.0) and pixels[1, 1] == pytest.approx(0.0)


def test_jpeg_and_tiff(tmp_path: Path) -> None:
    arr = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
    jpg = imaging.load(_save(arr, tmp_path / "a.jpg"))
    assert jpg.meta.format == "jpeg" and np.abs(jpg.pixels - arr).mean() < 3
    tif16 = tmp_path / "a.tif"
    PILImage.fromarray(arr.astype(np.uint16) * 200).save(tif16)
    tif = imaging.load(tif16)
    assert tif.meta.format == "tiff" and tif.pixels.max() == pytest.approx(255 * 200)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"%PDF-1.4\n%...", "PDF"), (b"patient notes\n", "text"), (b"", "empty")],
)
def test_non_images_are_refused_naming_the_file(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "not an image ü.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError) as info:
        imaging.load(path)
    assert reason in info.value.reason and "not an image ü.png" in str(info.value)


def test_corrupt_png_is_refused(tmp_path: Path) -> None:
    good = _save(np.zeros((32, 32), np.uint8), tmp_path / "g.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(good[:40])
    with pytest.raises(ImageReadError, match="cut.png"):
        imaging.load(path)


# --------------------------------------------------------------------------- window / resize


def test_presets_and_window_mapping() -> None:
    assert set(imaging.WINDOW_PRESETS) >= {"lung", "mediastinum", "soft_tissue", "abdomen", "bone", "brain", "stroke"}
    c, w = imaging.WINDOW_PRESETS["soft_tissue"]
    hu = np.array([c - w, c - w / 2, c, c + w / 2, c + w], dtype=np.float32)
    np.testing.assert_allclose(imaging.apply_window(hu, c, w), [0, 0, 0.5, 1, 1])


def test_parse_window_specs() -> None:
    assert imaging.parse_window("lung").center == -600
    assert imaging.parse_window("40,400") == imaging.Window("manual", 40.0, 400.0)
    assert imaging.parse_window("dicom").name == "dicom"
    with pytest.raises(ValueError, match="unknown window"):
        imaging.parse_window("sharp")


def test_dicom_window_and_non_hu_fallback(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_testfile("CT_small.dcm"))
    ds.WindowCenter, ds.WindowWidth = 50, 350
    ds.save_as(tmp_path / "w.dcm")
    ct = imaging.load(tmp_path / "w.dcm")
    assert imaging.resolve_window(imaging.parse_window("dicom"), ct) == (ct.meta.window_center, ct.meta.window_width)
    photo = imaging.Image(np.linspace(0, 255, 100, dtype=np.float32).reshape(10, 10), imaging.ImageMeta("x", "png"))
    c, w = imaging.resolve_window(imaging.parse_window("lung"), photo)  # HU preset on a PNG: percentiles
    assert 0 <= c - w / 2 < 5 and 250 < c + w / 2 <= 255
    assert imaging.resolve_window(imaging.parse_window("minmax"), photo) == (127.5, 255.0)


def test_fit_square_pad_and_crop_keep_aspect() -> None:
    wide = np.ones((50, 100), dtype=np.float32)
    padded = imaging.fit_square(wide, 20, "pad")
    assert padded.shape == (20, 20)
    assert padded[0].max() == 0 and padded[10].min() == pytest.approx(1.0)  # letterbox bands top/bottom
    cropped = imaging.fit_square(wide, 20, "crop")
    assert cropped.shape == (20, 20) and cropped.min() == pytest.approx(1.0)


def test_preprocess_range_and_dtype() -> None:
    ct = imaging.load(_testfile("CT_small.dcm"))
    out = imaging.preprocess(ct, imaging.Preprocessing(window="soft_tissue", size=32))
    assert out.shape == (32, 32) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0 and out.std() > 0


def test_siim_hounsfield_values_are_right(siim_dir: Path) -> None:
    img = imaging.load(sorted((siim_dir / "contrast").glob("*.dcm"))[0])
    hu = img.pixels
    assert img.meta.is_hu
    # Air outside the body sits near -1000 HU; the body's soft tissue near +40 HU.
    assert -1050 < float(np.percentile(hu, 5)) < -950
    body = hu[(hu > -200) & (hu < 200)]
    assert 0 < float(np.median(body)) < 80
