"""Issue 13: Open on a folder with bad files loads the good ones and lists each bad one by name."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))

from _badfiles import instance_abc_dicom, palette_without_lut_dicom  # noqa: E402


def test_open_skips_a_palette_dicom_without_lut_naming_it(window, open_folder, demo_folder, tmp_path: Path):
    folder = tmp_path / "mixed"
    shutil.copytree(demo_folder, folder)
    bad = palette_without_lut_dicom(folder / "contrast")
    odd = instance_abc_dicom(folder / "no_contrast")

    open_folder(window, folder)

    dataset = window.session.dataset
    reasons = {Path(s.path).name: s.reason for s in dataset.report.skipped}
    assert "lookup table" in reasons[bad.name]
    assert len(dataset) == 13 and str(odd) in dataset.paths
    assert not window.error_boxes
