"""Versions and licences of the components ctviewer ships with, for the About dialog.

Everything is read from installed distribution metadata (``importlib.metadata``), so nothing heavy
is imported: asking for TensorFlow's version does not load TensorFlow. The frozen app carries the
same metadata (``packaging/ctviewer.spec`` copies it), so the table reads the same there.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from importlib import metadata

from ctviewer import __version__


@dataclass(frozen=True)
class Component:
    """One bundled component as the About dialog lists it.

    Attributes
    ----------
    name : str
        Display name ("TensorFlow").
    distribution : str or None
        Package distribution that provided it ("tensorflow"), None for Python and Qt.
    version : str or None
        Installed version; None when the component is not installed.
    licence : str
        Licence name or SPDX expression; "unknown" when the metadata does not say.
    url : str
        Project home page.
    note : str
        What the licence asks of someone redistributing the bundle, when it asks more than notice.
    """

    name: str
    distribution: str | None
    version: str | None
    licence: str
    url: str
    note: str = ""

    @property
    def installed(self) -> bool:
        return self.version is not None


@dataclass(frozen=True)
class _Spec:
    name: str
    distributions: tuple[str, ...]  # alternatives, first installed one wins
    url: str
    note: str = ""


_QT_NOTE = (
    "LGPL-3.0: the Qt libraries are separate files in the bundle (PySide6/Qt/lib) that users may "
    "replace; Qt's source is at https://download.qt.io/official_releases/qt/"
)
_SPECS: tuple[_Spec, ...] = (
    _Spec("PySide6 (Qt for Python)", ("PySide6-Essentials", "PySide6"), "https://pyside.org", _QT_NOTE),
    _Spec("shiboken6", ("shiboken6",), "https://pyside.org", _QT_NOTE),
    _Spec("pyqtgraph", ("pyqtgraph",), "https://www.pyqtgraph.org"),
    _Spec(
        "TensorFlow",
        ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tensorflow-intel", "tf-nightly"),
        "https://www.tensorflow.org",
    ),
    _Spec("Keras", ("keras",), "https://keras.io"),
    _Spec("NumPy", ("numpy",), "https://numpy.org"),
    _Spec("SciPy", ("scipy",), "https://scipy.org"),
    _Spec("scikit-learn", ("scikit-learn",), "https://scikit-learn.org"),
    _Spec("h5py", ("h5py",), "https://www.h5py.org"),
    _Spec("pydicom", ("pydicom",), "https://pydicom.github.io"),
    _Spec("pylibjpeg", ("pylibjpeg",), "https://github.com/pydicom/pylibjpeg"),
    _Spec(
        "pylibjpeg-libjpeg",
        ("pylibjpeg-libjpeg",),
        "https://github.com/pydicom/pylibjpeg-libjpeg",
        "GPL-3.0: whoever redistributes a bundle that contains it must offer the bundle's "
        "source under GPL-3.0 terms (ctviewer's MIT licence allows that)",
    ),
    _Spec("pylibjpeg-openjpeg", ("pylibjpeg-openjpeg",), "https://github.com/pydicom/pylibjpeg-openjpeg"),
    _Spec("pylibjpeg-rle", ("pylibjpeg-rle",), "https://github.com/pydicom/pylibjpeg-rle"),
    _Spec("Pillow", ("pillow",), "https://python-pillow.org"),
)
# Shown in the About dialog; ctviewer, Python and Qt are added in front.
COMPONENT_NAMES: tuple[str, ...] = ("ctviewer", "Python", "Qt", *(spec.name for spec in _SPECS))
_LICENCE_FILE_NAMES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "LICENCE.txt", "COPYING", "COPYING.txt")


def _find_distribution(names: tuple[str, ...]) -> metadata.Distribution | None:
    for name in names:
        try:
            return metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def licence_of(dist: metadata.Distribution) -> str:
    """Return the licence a distribution declares, preferring an SPDX expression.

    Order: ``License-Expression``; a one-line ``License`` field; the ``License ::`` trove
    classifiers; else "unknown". Long ``License`` fields (some packages paste the whole
    text there) are skipped because they do not fit a table cell.
    """
    meta = dist.metadata
    expression = (meta.get("License-Expression") or "").strip()
    if expression:
        return expression
    field = (meta.get("License") or "").strip()
    if field and "\n" not in field and len(field) <= 80 and field.upper() != "UNKNOWN":
        return field
    classifiers = [
        c.split("::")[-1].strip()
        for c in meta.get_all("Classifier") or []
        if c.startswith("License ::") and c.split("::")[-1].strip() not in ("OSI Approved",)
    ]
    return " / ".join(classifiers) if classifiers else "unknown"


def _qt_version() -> str | None:
    """Qt's own run-time version (may differ from PySide6's in a patch release)."""
    try:
        from PySide6 import QtCore  # cheap compared with widgets; needs no display
    except ImportError:
        return None
    return QtCore.qVersion()


def _ctviewer_component() -> Component:
    dist = _find_distribution(("ctviewer-cnn",))
    # A source checkout run without `pip install` has no metadata; the package knows its version.
    licence = licence_of(dist) if dist is not None else "MIT"
    url = ""
    if dist is not None:
        urls = dist.metadata.get_all("Project-URL") or []
        url = urls[0].split(",", 1)[-1].strip() if urls else (dist.metadata.get("Home-page") or "")
    return Component("ctviewer", "ctviewer-cnn", __version__, licence, url)


def component_table() -> list[Component]:
    """Return ctviewer, Python, Qt and every bundled library with version and licence.

    Components that are not installed are listed with ``version=None``, so the caller can show
    "not installed" instead of silently dropping a row.
    """
    rows = [
        _ctviewer_component(),
        Component(
            "Python",
            None,
            f"{platform.python_version()} ({platform.python_implementation()})",
            "PSF-2.0",
            "https://www.python.org",
        ),
        Component(
            "Qt",
            None,
            _qt_version(),
            "LGPL-3.0-only OR GPL-2.0-only OR GPL-3.0-only",
            "https://www.qt.io",
            _QT_NOTE,
        ),
    ]
    for spec in _SPECS:
        dist = _find_distribution(spec.distributions)
        if dist is None:
            rows.append(Component(spec.name, spec.distributions[0], None, "unknown", spec.url, spec.note))
        else:
            rows.append(Component(spec.name, dist.metadata["Name"], dist.version, licence_of(dist), spec.url, spec.note))
    return rows


def licence_text(component: Component) -> str | None:
    """Return the full licence text a component's distribution ships, or None if it ships none.

    ctviewer's own text comes from the package data (a source checkout has no metadata).
    """
    if component.name == "ctviewer":
        from ctviewer.resources import resource_path

        return resource_path("licences/LICENSE-ctviewer.txt").read_text(encoding="utf-8")
    if component.distribution is None or not component.installed:
        return None
    dist = _find_distribution((component.distribution,))
    if dist is None:
        return None
    declared = dist.metadata.get_all("License-File") or []
    # Metadata 2.4 keeps licence files under licenses/; older wheels at the dist-info top level.
    candidates = [f"licenses/{name}" for name in declared] + list(declared) + list(_LICENCE_FILE_NAMES)
    for candidate in candidates:
        text = dist.read_text(candidate)
        if text:
            return text
    return None


@dataclass(frozen=True)
class DicomCodec:
    """Which installed plugins can decode one compressed DICOM transfer syntax."""

    transfer_syntax: str  # DICOM keyword, e.g. "JPEGLosslessSV1"
    uid: str
    plugins: tuple[str, ...]


# The compressed transfer syntaxes CT archives use; README promises all of them.
_COMPRESSED_SYNTAXES = (
    "JPEGBaseline8Bit", "JPEGExtended12Bit", "JPEGLossless", "JPEGLosslessSV1", "JPEGLSLossless",
    "JPEGLSNearLossless", "JPEG2000Lossless", "JPEG2000", "HTJ2KLossless", "RLELossless",
)  # fmt: skip


def dicom_codec_table() -> list[DicomCodec]:
    """Return the DICOM pixel-data decoders available here, per compressed transfer syntax.

    In a frozen app an empty ``plugins`` tuple means a decoder plugin or its metadata was left
    out of the bundle (pylibjpeg finds its plugins through entry points).
    """
    from pydicom import uid as uids
    from pydicom.pixels import get_decoder

    table = []
    for name in _COMPRESSED_SYNTAXES:
        syntax = getattr(uids, name)
        table.append(DicomCodec(name, str(syntax), tuple(get_decoder(syntax).available_plugins)))
    return table


def format_component_table(components: list[Component] | None = None) -> str:
    """Return the table as aligned plain text (for a terminal, a log or a bug report)."""
    components = component_table() if components is None else components
    name_width = max(len(c.name) for c in components)
    version_width = max(len(c.version or "not installed") for c in components)
    lines = [
        f"{c.name:<{name_width}}  {c.version or 'not installed':<{version_width}}  {c.licence}"
        for c in components
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_component_table())
    sys.exit(0)
