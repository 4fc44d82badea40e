"""The About dialog's component table lists every bundled component with version and licence."""

from __future__ import annotations

import importlib.metadata
import platform
import sys

import pytest

from ctviewer import __version__, licences
from ctviewer.licences import (
    COMPONENT_NAMES,
    Component,
    component_table,
    format_component_table,
    licence_of,
    licence_text,
)

REQUIRED = {
    "ctviewer", "Python", "Qt", "PySide6 (Qt for Python)", "pyqtgraph", "TensorFlow", "Keras", "NumPy",
    "pydicom", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle", "Pillow", "scikit-learn",
}  # fmt: skip


def test_table_is_complete_with_versions_and_licences() -> None:
    table = component_table()
    names = [c.name for c in table]
    assert REQUIRED <= set(names)
    assert names == list(COMPONENT_NAMES)
    for component in table:
        # All of them are dependencies of ctviewer, so in this environment all are installed.
        assert component.installed, component.name
        assert component.licence and component.licence != "unknown", component.name
        assert component.url.startswith("https://") or component.name == "ctviewer", component.name


def test_versions_match_the_installed_packages_and_interpreter() -> None:
    rows = {c.name: c for c in component_table()}
    assert rows["ctviewer"].version == __version__
    assert rows["Python"].version.startswith(platform.python_version())
    assert rows["TensorFlow"].version == importlib.metadata.version(rows["TensorFlow"].distribution)
    assert rows["pydicom"].version == importlib.metadata.version("pydicom")
    pyside6 = pytest.importorskip("PySide6.QtCore")
    assert rows["Qt"].version == pyside6.qVersion()


def test_reading_the_table_does_not_import_tensorflow() -> None:
    """The About dialog must open instantly: versions come from metadata, not from importing TF."""
    import subprocess

    code = "import sys, ctviewer.licences as l; l.component_table(); print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False"


def test_copyleft_components_carry_a_redistribution_note() -> None:
    rows = {c.name: c for c in component_table()}
    assert "GPL" in rows["pylibjpeg-libjpeg"].licence.upper()
    assert "source" in rows["pylibjpeg-libjpeg"].note
    assert "LGPL" in rows["Qt"].note and "replace" in rows["Qt"].note
    assert rows["NumPy"].note == ""


def _fake_dist(fields: list[tuple[str, str]]) -> importlib.metadata.Distribution:
    # Core metadata is RFC 822: continuation lines of a long field are indented.
    text = "".join(f"{key}: " + value.replace("\n", "\n        ") + "\n" for key, value in fields)

    class _Dist(importlib.metadata.Distribution):
        def read_text(self, filename: str) -> str | None:
            return text if filename in ("METADATA", "PKG-INFO") else None

        def locate_file(self, path):  # pragma: no cover - not used
            raise NotImplementedError

    return _Dist()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ([("License-Expression", "BSD-3-Clause"), ("License", "BSD")], "BSD-3-Clause"),
        ([("License", "Apache 2.0"), ("Classifier", "License :: OSI Approved :: MIT License")], "Apache 2.0"),
        # A whole licence text pasted into License is skipped in favour of the classifier.
        ([("License", "Copyright (c) 2001\n" + "x" * 200), ("Classifier", "License :: OSI Approved :: BSD License")], "BSD License"),
        ([("License", "UNKNOWN")], "unknown"),
        ([("Classifier", "License :: OSI Approved :: MIT License"), ("Classifier", "License :: Other/Proprietary License")], "MIT License / Other/Proprietary License"),
    ],
)  # fmt: skip
def test_licence_of_prefers_spdx_then_short_field_then_classifiers(fields, expected) -> None:
    assert licence_of(_fake_dist(fields)) == expected


def test_missing_component_is_listed_not_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    real = licences._find_distribution
    monkeypatch.setattr(licences, "_find_distribution", lambda names: None if "pyqtgraph" in names else real(names))
    rows = {c.name: c for c in component_table()}
    assert rows["pyqtgraph"].version is None and not rows["pyqtgraph"].installed
    assert "not installed" in format_component_table(list(rows.values()))


def test_licence_texts_are_the_real_files() -> None:
    rows = {c.name: c for c in component_table()}
    assert "Permission is hereby granted" in licence_text(rows["ctviewer"])
    assert "GNU GENERAL PUBLIC LICENSE" in licence_text(rows["pylibjpeg-libjpeg"]).upper()
    assert licence_text(rows["Python"]) is None  # no distribution to read it from
    assert licence_text(Component("x", "no-such-dist-ctviewer", None, "unknown", "")) is None


def test_plain_text_table_has_one_aligned_line_per_component() -> None:
    text = format_component_table()
    lines = text.splitlines()
    assert len(lines) == len(COMPONENT_NAMES)
    version_columns = {line.index(row.version) for line, row in zip(lines, component_table())}
    assert len(version_columns) == 1
