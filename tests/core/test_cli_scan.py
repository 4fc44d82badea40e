"""`ctviewer scan` and `ctviewer demo` through the real CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ctviewer.cli import main
from ctviewer.core.data.demo import make_demo_dataset


def test_scan_json_on_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_demo_dataset(tmp_path / "d", n_patients=2, slices_per_patient=2, size=32)
    (folder / "contrast" / "broken.dcm").write_bytes(b"DICM? no")
    assert main(["scan", str(folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 8 and out["classes"] == {"contrast": 4, "no_contrast": 4}
    assert out["patients"] == 4 and out["duplicates"] == []
    assert [Path(s["path"]).name for s in out["skipped"]] == ["broken.dcm"]
    assert out["skipped"][0]["reason"]


def test_scan_table_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_demo_dataset(tmp_path / "d", n_patients=1, slices_per_patient=1, size=32)
    assert main(["scan", str(folder)]) == 0
    assert "contrast" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["scan", str(empty)]) == 1
    err = capsys.readouterr().err
    assert "empty folder" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    assert main(["scan", str(tmp_path / "junk")]) == 1
    assert "no readable images" in capsys.readouterr().err


def test_demo_command_writes_dicom(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", str(tmp_path / "x"), "--patients", "1", "--slices", "2", "--size", "32"]) == 0
    assert len(list((tmp_path / "x").rglob("*.dcm"))) == 4


def test_python_m_ctviewer_scan_subprocess(tmp_path: Path) -> None:
    folder = make_demo_dataset(tmp_path / "d", n_patients=1, slices_per_patient=1, size=32)
    done = subprocess.run(
        [sys.executable, "-m", "ctviewer", "scan", str(folder), "--json"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["images"] == 2


def test_scan_siim_json(siim_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", str(siim_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 100 and out["classes"] == {"contrast": 50, "no_contrast": 50}
    assert out["patients"] == 54 and out["skipped"] == []
