"""Thumbnails: a small windowed grey QImage per file, safe to build off the GUI thread."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.imaging import Preprocessing

THUMBNAIL_WINDOW = "dicom"  # the scanner's own window; falls back to a percentile window


def array_to_qimage(grey01: np.ndarray) -> QImage:
    """(H, W) floats in [0, 1] -> an 8-bit grey QImage that owns its pixels."""
    data = np.ascontiguousarray(np.clip(np.asarray(grey01) * 255.0 + 0.5, 0, 255).astype(np.uint8))
    h, w = data.shape
    # copy(): the QImage must not point into a numpy buffer that Python may free.
    return QImage(data.data, w, h, w, QImage.Format.Format_Grayscale8).copy()


def make_thumbnail(cache: Cache, path: str, size: int = 48) -> QImage:
    """The thumbnail of ``path`` (raises ImageReadError for an unreadable file)."""
    prep = Preprocessing(window=THUMBNAIL_WINDOW, size=size, resize="pad")
    return array_to_qimage(cache.array(path, prep))
