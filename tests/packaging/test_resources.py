"""The icon set, the desktop entry and their package-data copies are complete and consistent."""

from __future__ import annotations

import configparser
import importlib.util
import sys
from pathlib import Path

import pytest
from PIL import Image

from ctviewer.resources import DESKTOP_FILE_NAME, ICON_SIZES, icon_path, icon_paths, resource_path

REPO = Path(__file__).resolve().parents[2]
RESOURCES = REPO / "resources"


def _load_make_icons():
    spec = importlib.util.spec_from_file_location("make_icons", RESOURCES / "make_icons.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_icons"] = module
    spec.loader.exec_module(module)
    return module


def _desktop_entry(path: Path) -> configparser.SectionProxy:
    # Desktop keys are case-sensitive, and values may contain '%' and ';'.
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#",))
    parser.optionxform = str
    parser.read_string(path.read_text(encoding="utf-8"))
    assert parser.sections()[0] == "Desktop Entry", "the first group must be [Desktop Entry]"
    return parser["Desktop Entry"]


@pytest.mark.parametrize("size", ICON_SIZES)
def test_each_icon_size_exists_square_with_transparent_corners(size: int) -> None:
    for folder in (RESOURCES / "icons", icon_path(size).parent):
        with Image.open(folder / f"ctviewer-{size}.png") as image:
            assert image.size == (size, size)
            assert image.mode == "RGBA"
            # Rounded corners: the outermost pixel is transparent, the centre is opaque.
            assert image.getpixel((0, 0))[3] == 0
            assert image.getpixel((size // 2, size // 2))[3] == 255


def test_package_icons_are_byte_copies_of_the_generated_ones() -> None:
    for size, packaged in icon_paths().items():
        assert packaged.read_bytes() == (RESOURCES / "icons" / f"ctviewer-{size}.png").read_bytes(), size


def test_windows_and_macos_icons_hold_several_sizes() -> None:
    with Image.open(RESOURCES / "ctviewer.ico") as ico:
        assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= set(ico.info["sizes"])
    with Image.open(RESOURCES / "ctviewer.icns") as icns:
        assert icns.format == "ICNS"
        assert {(16, 16, 2), (512, 512, 2)} <= set(icns.info["sizes"])  # 32px and 1024px retina variants


def test_committed_icons_are_what_the_script_draws(tmp_path: Path) -> None:
    """A changed drawing without re-running make_icons.py (or a hand-edited PNG) fails here."""
    make_icons = _load_make_icons()
    make_icons.write_icons(tmp_path, package_dir=None)
    for size in (16, 64, 256):
        with Image.open(tmp_path / "icons" / f"ctviewer-{size}.png") as fresh, Image.open(
            RESOURCES / "icons" / f"ctviewer-{size}.png"
        ) as committed:
            fresh_px, committed_px = fresh.tobytes(), committed.tobytes()
            # Allow resampling differences between Pillow versions, not a different picture.
            mean_diff = sum(abs(a - b) for a, b in zip(fresh_px, committed_px)) / len(fresh_px)
            assert mean_diff < 2.0, (size, mean_diff)


def test_small_icons_use_the_simple_variant() -> None:
    make_icons = _load_make_icons()
    detailed, simple = make_icons.draw_icon(simple=False), make_icons.draw_icon(simple=True)
    # The teal viewfinder corner exists only in the detailed variant.
    corner = (int(0.094 * make_icons.CANVAS) + 40, int(0.094 * make_icons.CANVAS) + 2)
    assert detailed.getpixel(corner)[:3] == make_icons.ACCENT
    assert simple.getpixel(corner)[:3] != make_icons.ACCENT


def test_desktop_entry_keys() -> None:
    entry = _desktop_entry(RESOURCES / DESKTOP_FILE_NAME)
    assert entry["Type"] == "Application"
    assert entry["Name"] == "ctviewer"
    assert entry["Icon"] == "ctviewer"
    assert entry["Terminal"] == "false"
    exec_words = entry["Exec"].split()
    assert exec_words[0] == "ctviewer" and exec_words[-1] == "%F"  # several files or folders at once
    assert entry["TryExec"] == "ctviewer"
    mime_types = entry["MimeType"].rstrip(";").split(";")
    assert "application/dicom" in mime_types and "inode/directory" in mime_types
    categories = entry["Categories"].rstrip(";").split(";")
    # MedicalSoftware is an "additional" category: it needs the main category Science with it.
    assert "Science" in categories and "MedicalSoftware" in categories
    for key in ("MimeType", "Categories", "Keywords"):
        assert entry[key].endswith(";"), f"{key} is a list and must end with ';'"


def test_desktop_entry_has_only_known_keys() -> None:
    known = {
        "Type", "Version", "Name", "GenericName", "Comment", "Exec", "TryExec", "Icon", "Terminal",
        "Categories", "MimeType", "Keywords", "StartupNotify", "StartupWMClass",
    }  # fmt: skip
    entry = _desktop_entry(RESOURCES / DESKTOP_FILE_NAME)
    assert set(entry) <= known, set(entry) - known


def test_package_desktop_entry_is_a_copy() -> None:
    assert resource_path(DESKTOP_FILE_NAME).read_bytes() == (RESOURCES / DESKTOP_FILE_NAME).read_bytes()


def test_missing_resource_names_the_file() -> None:
    with pytest.raises(FileNotFoundError, match="nonexistent.png"):
        resource_path("icons/nonexistent.png")
    with pytest.raises(ValueError, match="no 20px icon"):
        icon_path(20)
