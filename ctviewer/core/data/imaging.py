"""Read one image file into pixels + metadata; window/level; resize to a model input.

DICOM pixels come out in Hounsfield units (RescaleSlope/Intercept applied) when the
modality is CT; PNG/JPEG/TIFF come out as one grey float32 channel in their own units.
An *array image* (``.npz`` with a 2-D ``pixels`` array and a boolean ``is_hu``, as
`ctviewer.core.data.arrays.from_arrays` writes them) comes out as stored.

A file is refused (`ImageReadError`, with the reason) rather than half-read when its pixels
are not finite (NaN/Inf: they would poison training and every prediction), when its
RescaleSlope is 0 (a constant image), or when it declares more than `MAX_PIXELS` pixels
(rows x columns x frames, checked from the header before anything is decoded).
"""

from __future__ import annotations

import math
import stat
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ctviewer.core.data.hashing import digest
from ctviewer.core.errors import ImageReadError

RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
DICOM_SUFFIXES = {".dcm", ".dicom", ".dic", ".ima"}
ARRAY_SUFFIX = ".npz"

# Magic numbers, so a file's extension is never trusted on its own.
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*")
_ZIP_MAGIC = b"PK\x03\x04"  # an .npz is a ZIP of .npy files

# The pixel budget: rows x columns x frames of one file, checked before decoding. 2**27 pixels
# (a 512 x 512 x 512 volume) is 512 MiB as float32; a larger file is refused, not decoded.
MAX_PIXELS = 2**27


@dataclass(frozen=True)
class ImageMeta:
    """What we keep of a file's header: enough to group, window and report."""

    path: str
    format: str  # "dicom", "png", "jpeg", "tiff"
    modality: str = ""
    patient_id: str = ""
    study_uid: str = ""
    series_uid: str = ""
    instance_number: int | None = None
    slice_position: float | None = None  # z of ImagePositionPatient, else SliceLocation
    window_center: float | None = None
    window_width: float | None = None
    pixel_spacing: tuple[float, float] | None = None
    rows: int = 0
    columns: int = 0
    frames: int = 1
    is_hu: bool = False  # pixels are Hounsfield units (a CT with a rescale)
    photometric: str = ""
    bits_stored: int | None = None
    transfer_syntax: str = ""
    source_mode: str = ""  # e.g. Pillow mode "RGBA", "I;16", "P"
    tags: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Image:
    """Decoded pixels (float32; (H, W), or (F, H, W) for multi-frame) and their metadata."""

    pixels: np.ndarray
    meta: ImageMeta
    stored_hash: str = ""  # `stored_pixel_hash` of a monochrome DICOM's stored values ("" for other images)

    @property
    def frame_count(self) -> int:
        return 1 if self.pixels.ndim == 2 else int(self.pixels.shape[0])

    def frame(self, index: int | None = None) -> np.ndarray:
        """One 2-D frame; the middle one of a multi-frame image by default."""
        if self.pixels.ndim == 2:
            return self.pixels
        if index is None:
            index = self.pixels.shape[0] // 2
        return self.pixels[index]


@dataclass(frozen=True)
class RawPixels:
    """Where an uncompressed monochrome DICOM keeps its stored values in the file, and how they become
    pixels: enough to decode them with numpy alone, without parsing the header again."""

    offset: int  # of the Pixel Data value in the file
    dtype: str  # of the stored values, e.g. "<u2"
    rows: int
    columns: int
    unused_bits: int  # BitsAllocated - BitsStored: shifted out as pydicom does
    slope: float | None
    intercept: float | None
    monochrome1: bool

    @property
    def nbytes(self) -> int:
        return self.rows * self.columns * np.dtype(self.dtype).itemsize


@dataclass
class Probe:
    """One file read once: its bytes, its metadata, and either its decoded image or, for an uncompressed
    monochrome DICOM, where its pixels lie (`raw`; nothing decoded)."""

    data: bytes
    meta: ImageMeta
    image: Image | None = None
    raw: RawPixels | None = None


# --------------------------------------------------------------------------- detection


def sniff_format(path: str | Path) -> str | None:
    """Return "dicom", "png", "jpeg", "tiff" (or "npz" for an array image) from the file's first bytes, or None."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(132)
    return _sniff(head, path.suffix)


def _sniff(head: bytes, suffix: str) -> str | None:
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if head.startswith(_TIFF_MAGICS):
        return "tiff"
    if head.startswith(_ZIP_MAGIC) and suffix.lower() == ARRAY_SUFFIX:
        return "npz"
    # DICOM written without the 128-byte preamble ("raw" datasets): trust the
    # extension only, pydicom will be asked to read it with force=True.
    if suffix.lower() in DICOM_SUFFIXES and head:
        return "dicom"
    return None


def load(path: str | Path) -> Image:
    """Read an image file: DICOM (with or without .dcm), PNG, JPEG or TIFF.

    Raises
    ------
    ImageReadError
        With the file and a reason a user can act on (not an image, truncated,
        no pixel data, unsupported transfer syntax, ...).
    """
    path = Path(path)
    data, kind = _read(path)
    return _decode(path, data, kind, _parse_dicom(path, data) if kind == "dicom" else None)


def probe(path: str | Path) -> Probe:
    """Read a file once and check it as `load` does, decoding its pixels only where the header cannot
    vouch for them: an uncompressed monochrome DICOM is parsed, not decoded (see `RawPixels`).

    Raises ImageReadError for the same files, with the same reasons, as `load`.
    """
    path = Path(path)
    data, kind = _read(path)
    ds = _parse_dicom(path, data) if kind == "dicom" else None
    raw = _raw_pixels(ds) if ds is not None else None
    if raw is None:
        image = _decode(path, data, kind, ds)
        return Probe(data=data, meta=image.meta, image=image)
    return Probe(data=data, meta=_dicom_meta(path, ds, raw.rows, raw.columns), raw=raw)


def _read(path: Path) -> tuple[bytes, str]:
    """The bytes of an image file (one open, one read) and its format; ImageReadError otherwise."""
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise ImageReadError(path, "is a folder, not an image")
        if not stat.S_ISREG(st.st_mode):
            # Opening a FIFO would block and a device may never end: never read them.
            raise ImageReadError(path, "not a regular file (a device, FIFO or socket), not an image")
        if st.st_size == 0:
            raise ImageReadError(path, "empty file (0 bytes)")
        with open(path, "rb") as fh:
            head = fh.read(132)
            kind = _sniff(head, path.suffix)
            if kind is None:
                raise ImageReadError(path, f"not an image ({_describe_non_image(head)})")
            data = head + fh.read()  # only an image is read whole
    except PermissionError:
        raise ImageReadError(path, "permission denied (file not readable)") from None
    except FileNotFoundError:
        raise ImageReadError(path, "file not found (broken link or moved)") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot be read ({exc.strerror or exc})") from None
    return data, kind


def _decode(path: Path, data: bytes, kind: str, ds: object | None) -> Image:
    try:
        if kind == "dicom":
            with warnings.catch_warnings():
                # pydicom warns about each invalid header value (InstanceNumber "abc"...); bad values
                # are read as missing below, and a warning turned into an error must not lose the image.
                warnings.simplefilter("ignore")
                image = _decode_dicom(path, ds)
        elif kind == "npz":
            image = _load_array_image(path, data)
        else:
            image = _load_raster(path, kind, data)
    except MemoryError:
        raise ImageReadError(path, "not enough memory to decode this image") from None
    _check_finite(path, image.pixels)
    return image


def decode_raw(path: str | Path, raw: RawPixels, meta: ImageMeta) -> Image:
    """The image of a file `probe` found uncompressed: its pixel bytes read and rescaled as `load` would."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            fh.seek(raw.offset)
            buf = fh.read(raw.nbytes)
    except OSError as exc:
        raise ImageReadError(path, f"cannot be read ({exc.strerror or exc})") from None
    if len(buf) < raw.nbytes:
        raise ImageReadError(path, "DICOM pixel data cannot be decoded (truncated or corrupt): the file is shorter "
                             "than when it was inspected")
    stored = _stored_values(buf, raw)
    slope, intercept = raw.slope, raw.intercept
    if slope is None and intercept is None:
        pixels = stored.astype(np.float32)
    elif _exact_in_float32(raw):
        # Integer slope and intercept, every value below 2**24: float32 arithmetic is exact, so this equals
        # load's float64 rescale bit for bit, at a fraction of the cost.
        pixels = stored.astype(np.float32)
        if slope is not None and slope != 1.0:
            pixels *= np.float32(slope)
        pixels += np.float32(intercept or 0.0)
    else:
        pixels = (stored.astype(np.float64) * (slope if slope is not None else 1.0) + (intercept or 0.0)).astype(
            np.float32)
    if raw.monochrome1:
        pixels = pixels.max() + pixels.min() - pixels
    return Image(pixels=np.ascontiguousarray(pixels), meta=meta)


def stored_pixel_hash(data: bytes | np.ndarray, raw: RawPixels | None = None, *, slope: float | None = None,
                      intercept: float | None = None, monochrome1: bool = False) -> str:
    """Hash of a monochrome DICOM's stored values and of what turns them into pixels.

    The same for the same image in another file or transfer syntax: from a file's pixel bytes
    (``data`` and its `RawPixels`) without decoding, or from pydicom's decoded stored values.
    """
    if raw is not None:
        stored = _stored_values(memoryview(data)[raw.offset : raw.offset + raw.nbytes], raw)
        slope, intercept, monochrome1 = raw.slope, raw.intercept, raw.monochrome1
    else:
        stored = np.asarray(data)
    canonical = np.ascontiguousarray(stored, dtype=stored.dtype.newbyteorder("<"))
    return digest(f"stored;{canonical.shape};{canonical.dtype.str};{slope!r};{intercept!r};{monochrome1}",
                  canonical.data)


def _stored_values(buf: bytes | memoryview, raw: RawPixels) -> np.ndarray:
    stored = np.frombuffer(buf, dtype=raw.dtype, count=raw.rows * raw.columns).reshape(raw.rows, raw.columns)
    if raw.unused_bits:
        # As pydicom: the bits above BitsStored are not part of the value (sign-extended when signed).
        stored = np.right_shift(np.left_shift(stored, raw.unused_bits), raw.unused_bits)
    return stored


def _exact_in_float32(raw: RawPixels) -> bool:
    slope = 1.0 if raw.slope is None else raw.slope
    intercept = 0.0 if raw.intercept is None else raw.intercept
    bits = np.dtype(raw.dtype).itemsize * 8 - raw.unused_bits
    return (slope.is_integer() and intercept.is_integer()
            and 2.0**bits * abs(slope) + abs(intercept) < 2.0**24)


def _check_finite(path: Path, pixels: np.ndarray) -> None:
    finite = np.isfinite(pixels)
    if not finite.all():
        n_nan = int(np.isnan(pixels).sum())
        n_inf = int(pixels.size - finite.sum()) - n_nan
        raise ImageReadError(path, f"pixel values are not finite ({n_nan} NaN, {n_inf} infinite of {pixels.size}): "
                             "such an image cannot be a model input")


def _check_pixel_budget(path: Path, what: str, rows: int, columns: int, frames: int) -> None:
    total = rows * columns * max(frames, 1)
    if total > MAX_PIXELS:
        raise ImageReadError(path, f"{what} declares {columns} x {rows} pixels x {frames} frames = {total:,} pixels, "
                             f"over the pixel limit of {MAX_PIXELS:,} (ctviewer.core.data.imaging.MAX_PIXELS)")


def _describe_non_image(head: bytes) -> str:
    head = head[:12]
    unsupported = "an image format ctviewer does not read; convert it to PNG, TIFF or DICOM"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return f"a GIF image: {unsupported}"
    if head.startswith(b"BM"):
        return f"a BMP image: {unsupported}"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return f"a WebP image: {unsupported}"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive"
    try:
        head.decode("utf-8")
        return "looks like text"
    except UnicodeDecodeError:
        return "unknown binary format"


# --------------------------------------------------------------------------- array images


def _load_array_image(path: Path, raw: bytes) -> Image:
    """An ``.npz`` holding ``pixels`` (2-D, finite) and ``is_hu``; never unpickles anything."""
    import io
    import zipfile

    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            if "pixels" not in data.files:
                raise ImageReadError(path, "an .npz without a 'pixels' array (not a ctviewer array image)")
            pixels = np.asarray(data["pixels"], dtype=np.float32)
            is_hu = bool(data["is_hu"]) if "is_hu" in data.files else False
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ImageReadError(path, f"array image cannot be read (truncated or corrupt): {exc}") from None
    if pixels.ndim != 2 or min(pixels.shape) == 0:
        raise ImageReadError(path, f"array image 'pixels' has shape {pixels.shape}, expected a 2-D image")
    if not np.isfinite(pixels).all():
        raise ImageReadError(path, "array image holds NaN or infinite values")
    meta = ImageMeta(path=str(path), format="npz", rows=int(pixels.shape[0]), columns=int(pixels.shape[1]),
                     is_hu=is_hu, modality="CT" if is_hu else "")
    return Image(pixels=pixels, meta=meta)


# --------------------------------------------------------------------------- DICOM


def _float_or_none(value: object) -> float | None:
    if value is None or value == "":
        return None
    try:
        # Multi-valued WindowCenter/Width: the first pair is the primary window.
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = list(value)[0]  # type: ignore[arg-type]
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, IndexError):
        return None
    return result if math.isfinite(result) else None


def _int_or_none(value: object) -> int | None:
    """An IS/US value as int; None when absent or not a number (e.g. InstanceNumber "abc")."""
    number = _float_or_none(value)
    return int(number) if number is not None and number.is_integer() else None


def _parse_dicom(path: Path, data: bytes) -> object:
    """The parsed dataset (its Pixel Data kept as bytes, not decoded), checked for pixels and the pixel budget."""
    import io

    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except InvalidDicomError as exc:
        raise ImageReadError(path, f"corrupt DICOM ({exc})") from None
    except (EOFError, OSError, ValueError, struct.error, TypeError, KeyError) as exc:
        raise ImageReadError(path, f"corrupt or truncated DICOM ({type(exc).__name__}: {exc})") from None

    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        if data[128:132] != b"DICM":
            raise ImageReadError(path, "not a DICOM file (no DICM marker and no pixel data: damaged or another format)")
        raise ImageReadError(path, "DICOM has no pixel data (e.g. a report, RT structure or DICOMDIR)")
    frames = _int_or_none(getattr(ds, "NumberOfFrames", 1)) or 1
    rows, columns = _int_or_none(getattr(ds, "Rows", None)), _int_or_none(getattr(ds, "Columns", None))
    if rows and columns:
        _check_pixel_budget(path, "DICOM", rows, columns, frames)
    return ds


# Transfer syntaxes whose Pixel Data is the stored values as they lie in the file.
_NATIVE_LITTLE_ENDIAN = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


def _raw_pixels(ds: object) -> RawPixels | None:
    """Where the stored values of a single-frame, uncompressed, monochrome DICOM lie, when the header alone
    shows that decoding them cannot fail and gives finite pixels; None for any other file (decoded instead)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tsyntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
        photometric = str(getattr(ds, "PhotometricInterpretation", "") or "")
        if tsyntax not in _NATIVE_LITTLE_ENDIAN or photometric not in ("MONOCHROME1", "MONOCHROME2"):
            return None
        if _int_or_none(getattr(ds, "NumberOfFrames", 1)) != 1:
            return None  # several frames, or a value pydicom's decoder refuses ("1A")
        if _int_or_none(getattr(ds, "SamplesPerPixel", None)) != 1:
            return None
        rows, columns = _int_or_none(getattr(ds, "Rows", None)), _int_or_none(getattr(ds, "Columns", None))
        allocated = _int_or_none(getattr(ds, "BitsAllocated", None))
        stored = _int_or_none(getattr(ds, "BitsStored", None))
        signed = _int_or_none(getattr(ds, "PixelRepresentation", None))
        if not rows or not columns or allocated not in (8, 16, 32) or signed not in (0, 1):
            return None
        if stored is None or not 1 <= stored <= allocated:
            return None
        element = ds.get_item("PixelData")  # type: ignore[attr-defined]
        value = getattr(element, "value", None)
        offset = getattr(element, "value_tell", None)
        if not isinstance(value, bytes) or offset is None or len(value) < rows * columns * allocated // 8:
            return None  # decoding says what is wrong
        slope = _float_or_none(getattr(ds, "RescaleSlope", None))
        intercept = _float_or_none(getattr(ds, "RescaleIntercept", None))
    if slope == 0.0 or 2.0**stored * abs(slope or 1.0) + abs(intercept or 0.0) > 1e38:
        return None  # refused by decoding (a constant image, or values that overflow float32)
    return RawPixels(offset=int(offset), dtype=f"<{'i' if signed else 'u'}{allocated // 8}", rows=rows,
                     columns=columns, unused_bits=allocated - stored, slope=slope, intercept=intercept,
                     monochrome1=photometric == "MONOCHROME1")


def _decode_dicom(path: Path, ds: object) -> Image:
    tsyntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    frames = _int_or_none(getattr(ds, "NumberOfFrames", 1)) or 1
    photometric = str(getattr(ds, "PhotometricInterpretation", "") or "")
    rows, columns = _int_or_none(getattr(ds, "Rows", None)), _int_or_none(getattr(ds, "Columns", None))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = ds.pixel_array  # type: ignore[attr-defined]
            pixels = np.asarray(raw)
            if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "PALETTE COLOR"):
                pixels = _dicom_colour_to_grey(ds, pixels, photometric)
    except NotImplementedError as exc:
        raise ImageReadError(
            path, f"unsupported DICOM transfer syntax {tsyntax or '?'}: no installed decoder ({exc})"
        ) from None
    except (RuntimeError, ValueError, EOFError, AttributeError, KeyError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if photometric == "PALETTE COLOR" and "lookup table" in reason.lower():
            raise ImageReadError(path, f"PALETTE COLOR DICOM without a usable colour lookup table ({reason})") from None
        raise ImageReadError(path, f"DICOM pixel data cannot be decoded (truncated or corrupt): {reason}") from None

    if pixels.ndim == 3 and frames == 1:
        pixels = pixels[..., 0]

    slope = _float_or_none(getattr(ds, "RescaleSlope", None))
    intercept = _float_or_none(getattr(ds, "RescaleIntercept", None))
    if slope == 0.0:
        raise ImageReadError(path, "RescaleSlope is 0: every pixel would have the same value (a damaged header)")
    stored_hash = ""
    if photometric in ("MONOCHROME1", "MONOCHROME2") and pixels.ndim == 2 and pixels.dtype.kind in "iu":
        stored_hash = stored_pixel_hash(pixels, slope=slope, intercept=intercept,
                                        monochrome1=photometric == "MONOCHROME1")
    if slope is not None or intercept is not None:
        # In float64, so a slope like 1e39 gives inf (refused below) instead of an overflow warning.
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = pixels.astype(np.float64) * (slope if slope is not None else 1.0) + (intercept or 0.0)
            pixels = scaled.astype(np.float32)
    else:
        pixels = pixels.astype(np.float32)
    if photometric == "MONOCHROME1":
        # MONOCHROME1 displays low values as white: invert so brighter = denser, as in MONOCHROME2.
        pixels = pixels.max() + pixels.min() - pixels
    meta = _dicom_meta(path, ds, rows or int(pixels.shape[-2]), columns or int(pixels.shape[-1]))
    return Image(pixels=np.ascontiguousarray(pixels), meta=meta, stored_hash=stored_hash)


def _dicom_meta(path: Path, ds: object, rows: int, columns: int) -> ImageMeta:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slope = _float_or_none(getattr(ds, "RescaleSlope", None))
        intercept = _float_or_none(getattr(ds, "RescaleIntercept", None))
        modality = str(getattr(ds, "Modality", "") or "")
        spacing = getattr(ds, "PixelSpacing", None)
        position = getattr(ds, "ImagePositionPatient", None)
        slice_position = _float_or_none(position[2]) if position is not None and len(position) == 3 else None
        if slice_position is None:
            slice_position = _float_or_none(getattr(ds, "SliceLocation", None))
        return ImageMeta(
            path=str(path),
            format="dicom",
            modality=modality,
            patient_id=str(getattr(ds, "PatientID", "") or "").strip(),
            study_uid=str(getattr(ds, "StudyInstanceUID", "") or ""),
            series_uid=str(getattr(ds, "SeriesInstanceUID", "") or ""),
            instance_number=_int_or_none(getattr(ds, "InstanceNumber", None)),
            slice_position=slice_position,
            window_center=_float_or_none(getattr(ds, "WindowCenter", None)),
            window_width=_float_or_none(getattr(ds, "WindowWidth", None)),
            pixel_spacing=_spacing_or_none(spacing),
            rows=rows,
            columns=columns,
            frames=_int_or_none(getattr(ds, "NumberOfFrames", 1)) or 1,
            is_hu=modality == "CT" and (slope is not None or intercept is not None),
            photometric=str(getattr(ds, "PhotometricInterpretation", "") or ""),
            bits_stored=_int_or_none(getattr(ds, "BitsStored", None)) or None,
            transfer_syntax=str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or ""),
            tags=_summary_tags(ds),
        )


def _spacing_or_none(spacing: object) -> tuple[float, float] | None:
    try:
        values = [_float_or_none(v) for v in spacing]  # type: ignore[attr-defined]
    except TypeError:
        return None
    if len(values) != 2 or None in values:
        return None
    return (values[0], values[1])  # type: ignore[return-value]


def _dicom_colour_to_grey(ds: object, pixels: np.ndarray, photometric: str) -> np.ndarray:
    from pydicom.pixels import apply_color_lut, convert_color_space

    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    elif photometric.startswith("YBR"):
        pixels = convert_color_space(pixels, photometric, "RGB")
    return _rgb_to_grey(pixels.astype(np.float32))


_SUMMARY_TAGS = (
    "PatientID", "PatientSex", "PatientAge", "StudyDate", "StudyDescription", "SeriesDescription",
    "Modality", "Manufacturer", "ManufacturerModelName", "BodyPartExamined", "KVP", "SliceThickness",
    "ContrastBolusAgent", "ConvolutionKernel", "InstanceNumber", "Rows", "Columns",
    "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth", "PixelSpacing",
    "ImagePositionPatient", "PhotometricInterpretation", "BitsStored",
)


def _summary_tags(ds: object) -> dict[str, str]:
    tags: dict[str, str] = {}
    for keyword in _SUMMARY_TAGS:
        value = getattr(ds, keyword, None)
        if value not in (None, ""):
            tags[keyword] = str(value)[:200]
    return tags


# --------------------------------------------------------------------------- PNG / JPEG / TIFF


def _rgb_to_grey(rgb: np.ndarray) -> np.ndarray:
    # ITU-R BT.601 luma, the weights Pillow's "L" conversion uses, kept in float.
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _load_raster(path: Path, kind: str, data: bytes) -> Image:
    import io

    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow's own bomb warning: our pixel budget below is the rule that applies.
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as im:
                frames = getattr(im, "n_frames", 1)
                _check_pixel_budget(path, kind.upper(), im.height, im.width, 1)
                im.load()
                mode = im.mode
                pixels = _pil_to_grey(im)
    except PILImage.DecompressionBombError as exc:
        raise ImageReadError(path, f"{kind.upper()} is over Pillow's pixel limit, refused as a possible "
                             f"decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageReadError(path, f"{kind.upper()} cannot be identified (corrupt file)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(path, f"{kind.upper()} cannot be decoded (truncated or corrupt): {exc}") from None
    meta = ImageMeta(
        path=str(path),
        format=kind,
        rows=int(pixels.shape[0]),
        columns=int(pixels.shape[1]),
        frames=int(frames),
        source_mode=mode,
    )
    return Image(pixels=pixels, meta=meta)


def _pil_to_grey(im: object) -> np.ndarray:
    """Any Pillow mode -> one float32 grey channel, keeping 16-bit depth where there is one."""
    from PIL import Image as PILImage

    assert isinstance(im, PILImage.Image)
    mode = im.mode
    if mode == "P":
        # A palette index is not an intensity: expand it through the palette first.
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("1", "L", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(im)
        return np.ascontiguousarray(arr.astype(np.float32))
    if mode in ("LA", "La"):
        return np.asarray(im.getchannel("L")).astype(np.float32)
    arr = np.asarray(im)
    if arr.ndim == 3 and arr.shape[2] >= 3:
        # RGB/RGBA (8- or 16-bit per channel): alpha is transparency, not intensity; drop it.
        return np.ascontiguousarray(_rgb_to_grey(arr[..., :3].astype(np.float32)))
    return np.asarray(im.convert("L")).astype(np.float32)


# --------------------------------------------------------------------------- window / level

# Centre and width in Hounsfield units (common radiology presets).
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft_tissue": (40.0, 400.0),
    "abdomen": (60.0, 400.0),
    "liver": (30.0, 150.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "stroke": (40.0, 40.0),
    "wide": (0.0, 2000.0),
}

WindowMode = Literal["preset", "dicom", "manual", "minmax", "percentile"]


@dataclass(frozen=True)
class Window:
    """A display/model window. ``center``/``width`` are None for data-driven windows."""

    name: str
    center: float | None = None
    width: float | None = None

    def to_spec(self) -> str:
        if self.name == "manual":
            return f"{self.center:g},{self.width:g}"
        return self.name


def parse_window(spec: str | Window | tuple[float, float]) -> Window:
    """Turn "lung", "dicom", "minmax", "percentile", "40,400" or (40, 400) into a Window."""
    if isinstance(spec, Window):
        return spec
    if isinstance(spec, tuple):
        return Window("manual", float(spec[0]), float(spec[1]))
    text = spec.strip().lower().replace("-", "_").replace(" ", "_")
    if text in WINDOW_PRESETS:
        c, w = WINDOW_PRESETS[text]
        return Window(text, c, w)
    if text in ("dicom", "minmax", "percentile"):
        return Window(text)
    if "," in text:
        try:
            c, w = (float(part) for part in text.split(","))
        except ValueError:
            pass
        else:
            if math.isfinite(c) and math.isfinite(w) and w > 0:
                return Window("manual", c, w)
    names = ", ".join([*WINDOW_PRESETS, "dicom", "minmax", "percentile", "CENTER,WIDTH"])
    raise ValueError(f"unknown window {spec!r}; use one of {names}")


def resolve_window(window: Window, image: Image) -> tuple[float, float]:
    """Centre/width in the image's units. HU presets on a non-HU image fall back to percentiles."""
    if window.center is not None and window.width is not None and (image.meta.is_hu or window.name == "manual"):
        return float(window.center), float(window.width)
    if window.name == "dicom" and image.meta.window_center is not None and image.meta.window_width:
        return image.meta.window_center, image.meta.window_width
    if window.name == "minmax":
        lo, hi = float(np.min(image.pixels)), float(np.max(image.pixels))
    else:
        # An HU preset makes no sense on a photo-like PNG: use a robust data window instead.
        lo, hi = (float(v) for v in np.percentile(image.pixels, [0.5, 99.5]))
    width = max(hi - lo, 1e-6)
    return lo + width / 2.0, width


def apply_window(pixels: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map [center - width/2, center + width/2] linearly to [0, 1], clipping outside (float32)."""
    width = max(float(width), 1e-6)
    low = float(center) - width / 2.0
    out = (pixels.astype(np.float32, copy=False) - np.float32(low)) / np.float32(width)
    return np.clip(out, 0.0, 1.0, out=out)


# --------------------------------------------------------------------------- resize

ResizeMode = Literal["pad", "crop", "stretch"]


def model_square(shape: tuple[int, int], mode: ResizeMode = "pad") -> tuple[int, int, int]:
    """Where the square the model sees lies on an image of ``shape`` (H, W): ``(left, top, side)``.

    The inverse of `fit_square`'s geometry, for drawing a model-sized map (Grad-CAM) back
    over the original image: ``pad`` gives a square larger than the image (negative offsets,
    the letterbox), ``crop`` the centred square inside it.
    """
    h, w = int(shape[0]), int(shape[1])
    if mode == "crop":
        side = min(h, w)
        return (w - side) // 2, (h - side) // 2, side
    side = max(h, w)
    return -((side - w) // 2), -((side - h) // 2), side


def model_rect(shape: tuple[int, int], mode: ResizeMode = "pad") -> tuple[int, int, int, int]:
    """Where the model's square lies on an image of ``shape``: ``(left, top, width, height)``.

    As `model_square`, plus ``stretch`` (the square is the whole image, scaled per axis).
    """
    if mode == "stretch":
        return 0, 0, int(shape[1]), int(shape[0])
    left, top, side = model_square(shape, mode)
    return left, top, side, side


def fit_square(pixels: np.ndarray, size: int, mode: ResizeMode = "pad") -> np.ndarray:
    """Resize a 2-D float image to ``size`` x ``size``.

    ``pad`` letterboxes the whole image (padding with 0, i.e. the window's black);
    ``crop`` takes the centred square; ``stretch`` scales each axis on its own (the whole image,
    no letterbox, aspect not kept). Downsampling is area-weighted (antialiased).
    """
    from PIL import Image as PILImage

    if pixels.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {pixels.shape}")
    h, w = pixels.shape
    left, top, side = model_square((h, w), mode)
    if mode == "stretch":
        pass
    elif mode == "crop":
        pixels = pixels[top : top + side, left : left + side]
    elif h != w:
        canvas = np.zeros((side, side), dtype=np.float32)
        canvas[-top : -top + h, -left : -left + w] = pixels
        pixels = canvas
    if pixels.shape == (size, size):
        return np.ascontiguousarray(pixels, dtype=np.float32)
    resized = PILImage.fromarray(np.ascontiguousarray(pixels, dtype=np.float32), mode="F").resize(
        (size, size), PILImage.Resampling.BILINEAR
    )
    return np.asarray(resized, dtype=np.float32)


@dataclass(frozen=True)
class Preprocessing:
    """How a file becomes a model input; stored in every model card."""

    window: str = "wide"  # a parse_window spec
    size: int = 256
    resize: ResizeMode = "pad"

    def key(self) -> str:
        return f"w={parse_window(self.window).to_spec()};s={self.size};r={self.resize};v=1"


def preprocess(image: Image, prep: Preprocessing, frame: int | None = None) -> np.ndarray:
    """Window, then resize: a (size, size) float32 array in [0, 1]."""
    window = parse_window(prep.window)
    single = Image(image.frame(frame), image.meta)
    center, width = resolve_window(window, single)
    return fit_square(apply_window(single.pixels, center, width), prep.size, prep.resize)
