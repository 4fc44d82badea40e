"""Checks of the PyInstaller build in dist/ — run when a build is present, skipped otherwise.

Build first with ``packaging/build.sh`` (about 3-10 minutes on 2 cores); these tests then run
the frozen program itself, so they catch what only freezing breaks: missing hidden imports,
plugin metadata, Qt platform plugins, data files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ctviewer import __version__
from ctviewer.licences import COMPONENT_NAMES

REPO = Path(__file__).resolve().parents[2]
if sys.platform == "darwin":
    APP = REPO / "dist" / "ctviewer.app"
    EXE = APP / "Contents" / "MacOS" / "ctviewer"
    INTERNAL = APP / "Contents" / "Frameworks"
else:
    APP = REPO / "dist" / "ctviewer"
    EXE = APP / ("ctviewer.exe" if sys.platform.startswith("win") else "ctviewer")
    INTERNAL = APP / "_internal"



def _stale_hint() -> str:
    """A note for failure messages when a source file changed after the build."""
    if not EXE.is_file():
        return ""
    sources = [*(REPO / "ctviewer").rglob("*.py"), REPO / "packaging" / "ctviewer.spec"]
    newest = max(sources, key=lambda p: p.stat().st_mtime)
    if newest.stat().st_mtime > EXE.stat().st_mtime:
        return f" [note: {newest.relative_to(REPO)} changed after the build; rebuild with packaging/build.sh]"
    return ""


STALE = _stale_hint()
pytestmark = [
    pytest.mark.skipif(not EXE.is_file(), reason="no built app in dist/ (run packaging/build.sh)"),
    pytest.mark.slow,
]


@pytest.fixture
def app_env(tmp_path: Path) -> dict[str, str]:
    """Offscreen Qt and a private home, so the frozen app touches nothing of the user's."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
    }


def run_app(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXE), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_version_matches_the_source(app_env) -> None:
    result = run_app(["--version"], app_env)
    assert result.returncode == 0, result.stderr[-2000:] + STALE
    assert result.stdout.strip() == f"ctviewer {__version__}", "dist/ holds another version" + STALE


def test_bundle_carries_metadata_and_dicom_plugins(app_env) -> None:
    result = run_app(["about", "--json"], app_env)
    assert result.returncode == 0, result.stderr[-2000:] + STALE
    info = json.loads(result.stdout)
    components = {c["name"]: c for c in info["components"]}
    assert list(components) == list(COMPONENT_NAMES)
    missing = [name for name, c in components.items() if c["version"] is None]
    assert not missing, f"metadata not bundled for {missing}"
    decoders = {d["transfer_syntax"]: d["plugins"] for d in info["dicom_decoders"]}
    # JPEG Lossless, JPEG-LS and HTJ2K have no decoder but pylibjpeg's plugins (found via entry points).
    for syntax in ("JPEGLosslessSV1", "JPEGLSLossless", "HTJ2KLossless", "RLELossless"):
        assert "pylibjpeg" in decoders[syntax], syntax


def test_frozen_app_reads_compressed_dicom(tmp_path: Path, app_env) -> None:
    """End to end through the frozen CLI: RLE and JPEG 2000 compressed CT slices are decoded, not skipped."""
    import numpy as np
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless, generate_uid

    rng = np.random.default_rng(0)
    for label, syntax in (("contrast", RLELossless), ("no_contrast", JPEG2000Lossless)):
        folder = tmp_path / "data" / label
        folder.mkdir(parents=True)
        for k in range(2):
            ds = pydicom.Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.Modality = "CT"
            ds.PatientID = f"{label}-{k}"
            ds.Rows = ds.Columns = 32
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
            ds.PixelData = rng.integers(0, 2000, (32, 32), dtype=np.uint16).tobytes()
            ds.compress(syntax)
            ds.save_as(folder / f"slice{k}.dcm", enforce_file_format=True)
    result = run_app(["scan", str(tmp_path / "data"), "--json"], app_env)
    assert result.returncode == 0, result.stderr[-2000:] + STALE
    summary = json.loads(result.stdout)
    assert summary["skipped"] == []
    assert summary["images"] == 4 and summary["sizes"] == {"32x32": 4}


def test_self_test_passes_offscreen(app_env) -> None:
    """The issue's acceptance check: window opens offscreen, demo data loads, one prediction runs."""
    gui_app = REPO / "ctviewer" / "gui" / "app.py"
    if not gui_app.is_file() or "--self-test" not in gui_app.read_text(encoding="utf-8"):
        pytest.skip("ctviewer/gui/app.py has no --self-test yet")
    result = run_app(["--self-test"], app_env, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:] + STALE


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="desktop entries are Linux-only")
def test_frozen_install_desktop_points_at_the_bundle(tmp_path: Path, app_env) -> None:
    result = run_app(["install-desktop", "--data-dir", str(tmp_path), "--no-refresh"], app_env)
    assert result.returncode == 0, result.stderr[-2000:] + STALE
    entry = (tmp_path / "applications" / "ctviewer.desktop").read_text(encoding="utf-8")
    assert f"Exec={EXE.resolve()} %F" in entry.splitlines()
    assert (tmp_path / "icons" / "hicolor" / "512x512" / "apps" / "ctviewer.png").is_file()


def test_bundle_is_trimmed_but_keeps_what_the_app_needs() -> None:
    qt = INTERNAL / "PySide6" / "Qt"
    platforms = {p.name for p in (qt / "plugins" / "platforms").iterdir()}
    if sys.platform.startswith("linux"):
        assert {"libqxcb.so", "libqoffscreen.so", "libqwayland.so"} <= platforms
        assert not any(name.startswith(("libqeglfs", "libqvnc", "libqlinuxfb")) for name in platforms)
    assert not (qt / "qml").exists()
    assert not (INTERNAL / "tensorflow" / "include").exists()
    assert not list(INTERNAL.rglob("libQt6Quick*")) and not list(INTERNAL.rglob("libQt6Qml*"))
    assert not (INTERNAL / "tensorboard").exists()
    assert (INTERNAL / "ctviewer" / "resources" / "icons" / "ctviewer-256.png").is_file()
    assert (INTERNAL / "ctviewer" / "resources" / "ctviewer.desktop").is_file()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ldd is Linux-only")
def test_qt_platform_plugins_find_their_qt_libraries() -> None:
    """A missing Qt library only shows when a real display is used; ldd finds it without one."""
    for plugin in ("libqxcb.so", "libqoffscreen.so", "libqwayland.so"):
        path = INTERNAL / "PySide6" / "Qt" / "plugins" / "platforms" / plugin
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False).stdout
        missing = [line.split()[0] for line in out.splitlines() if "not found" in line and "Qt6" in line]
        assert not missing, f"{plugin}: {missing}"
