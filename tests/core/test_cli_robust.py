"""Issue 13 through the CLI: a real folder never breaks a run, outputs are checked before the work,
bad numbers never reach a CSV or a card, and TensorFlow's start-up lines stay hidden."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _badfiles import BAD_FILES, ODD_BUT_GOOD, good_png

from ctviewer.cli import main

TINY = ["--size", "32", "--epochs", "1", "--batch-size", "8", "-q"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_bomb_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 3000)


def _mixed_folder(root: Path) -> tuple[Path, dict[str, Path]]:
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
    for i in range(5):
        good_png(root / "a" / f"a{i}.png", seed=i)
        good_png(root / "b" / f"b{i}.png", seed=100 + i)
    bad = {name: maker(root / ("a" if i % 2 else "b")) for i, (name, (maker, _)) in enumerate(BAD_FILES.items())}
    for maker in ODD_BUT_GOOD.values():
        maker(root / "b")
    return root, bad


def _assert_every_bad_file_listed(err: str, bad: dict[str, Path]) -> None:
    for name, path in bad.items():
        line = next((line for line in err.splitlines() if path.name in line), "")
        assert BAD_FILES[name][1].lower() in line.lower(), (name, err)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _finite_json(text: str) -> None:
    """No NaN/Infinity anywhere in a JSON text (json.loads would accept them)."""
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))


@pytest.mark.slow
def test_a_folder_mixing_good_and_every_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                 small_bomb_limit: None) -> None:
    data, bad = _mixed_folder(tmp_path / "data")
    n_good = 10 + len(ODD_BUT_GOOD)

    assert main(["scan", str(data)]) == 0
    out, err = capsys.readouterr()
    assert f"{n_good} images" in out
    _assert_every_bad_file_listed(out, bad)

    bundle = tmp_path / "bundle"
    assert main(["train", str(data), "--out", str(bundle), "--positive", "b", "--folds", "1", *TINY]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err and f"{n_good} images" in out
    _assert_every_bad_file_listed(err, bad)
    card_text = (bundle / "model_card.json").read_text()
    _finite_json(card_text)
    assert all(isinstance(v, float) and math.isfinite(v) for v in json.loads(card_text)["history"]["loss"])

    # Training again onto the bundle: refused without --overwrite, and a user's files survive it.
    (bundle / "gradcam").mkdir()
    (bundle / "gradcam" / "mine.png").write_bytes(b"png")
    assert main(["train", str(data), "--out", str(bundle), "--positive", "b", "--folds", "1", *TINY]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["train", str(data), "--out", str(bundle), "--positive", "b", "--overwrite", "--seed", "2",
                 "--folds", "1", *TINY]) == 0
    capsys.readouterr()
    assert (bundle / "gradcam" / "mine.png").read_bytes() == b"png"
    assert json.loads((bundle / "model_card.json").read_text())["seed"] == 2

    predictions = tmp_path / "p.csv"
    assert main(["predict", str(bundle), str(data), "--csv", str(predictions), "-q"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    _assert_every_bad_file_listed(err, bad)
    rows = _rows(predictions)
    assert len(rows) == n_good and all(math.isfinite(float(r["prob"])) for r in rows)
    assert any("scan_\\xff.png" in r["path"] for r in rows)  # the non-UTF-8 name, escaped

    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    for maker, _ in BAD_FILES.values():
        maker(only_bad)
    assert main(["predict", str(bundle), str(only_bad), "--csv", str(tmp_path / "none.csv"), "-q"]) == 1
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "error:" in line] == [
        f"ctviewer predict: error: {only_bad}: no readable images"] and "Traceback" not in err
    assert not (tmp_path / "none.csv").exists()

    cv_out = tmp_path / "cv"
    assert main(["cv", str(data), "--folds", "2", "--out", str(cv_out), "--positive", "b", *TINY]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    _assert_every_bad_file_listed(err, bad)
    assert len(_rows(cv_out / "predictions.csv")) == n_good
    assert all(math.isfinite(float(r["prob"])) for r in _rows(cv_out / "predictions.csv"))
    _finite_json((cv_out / "metrics.json").read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "cv", "data", "only_bad", "p.csv"]  # no leftovers


def test_nothing_usable_left_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                    small_bomb_limit: None) -> None:
    data = tmp_path / "data"
    for label in ("a", "b"):
        (data / label).mkdir(parents=True)
    for i, (maker, _) in enumerate(BAD_FILES.values()):
        maker(data / ("a" if i % 2 else "b"))
    for command in (["scan", str(data)], ["train", str(data), "--out", str(tmp_path / "m"), *TINY],
                    ["cv", str(data), "--out", str(tmp_path / "cv"), *TINY]):
        assert main(command) == 1
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if "error:" in line]
        assert len(errors) == 1 and "no readable images" in errors[0], err
        assert "Traceback" not in err
    assert not (tmp_path / "m").exists() and not (tmp_path / "cv").exists()


# --------------------------------------------------------------------------- outputs checked first


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any scan, training or cross-validation fails the test: the output check must come first."""
    def forbidden(*args: object, **kwargs: object) -> None:
        pytest.fail("work started before the output was checked")

    monkeypatch.setattr("ctviewer.cli._data.scan_images", forbidden)
    monkeypatch.setattr("ctviewer.core.training.fit.fit", forbidden)
    monkeypatch.setattr("ctviewer.core.training.cv.cross_validate", forbidden)
    monkeypatch.setattr("ctviewer.core.model.bundle.load_bundle", forbidden)


def _hand_made_bundle(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"old")
    (folder / "model_card.json").write_text("{}")
    return folder


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_outputs_are_checked_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture, no_work: None) -> None:
    data = tmp_path / "data"
    data.mkdir()
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "thesis.txt").write_text("precious")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    bundle = _hand_made_bundle(tmp_path / "bundle")
    cases = [
        (["train", str(data), "--out", "/proc/b", *TINY], "/proc"),
        (["train", str(data), "--out", str(documents), *TINY], "not a ctviewer model bundle"),
        (["train", str(data), "--out", str(a_file), *TINY], "not a folder"),
        (["train", str(data), "--out", str(bundle), *TINY], "--overwrite"),
        (["cv", str(data), "--out", "/proc/cv", *TINY], "/proc"),
        (["cv", str(data), "--out", str(a_file), *TINY], "not a folder"),
        (["predict", str(bundle), str(data), "--csv", "/proc/x.csv", "-q"], "/proc"),
        (["predict", str(bundle), str(data), "--csv", str(documents), "-q"], "is a folder"),
        (["gradcam", str(bundle), str(data), "--out", "/proc/g", "-q"], "/proc"),
    ]
    for command, reason in cases:
        assert main(command) == 1, command
        err = capsys.readouterr().err
        assert reason in err and "Traceback" not in err, (command, err)
    assert (documents / "thesis.txt").read_text() == "precious" and (bundle / "model.keras").read_bytes() == b"old"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_export_checks_its_folder_before_loading_the_model(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                           no_work: None) -> None:
    from ctviewer.core.model.contract import CONTRACT_FILE, CONTRACT_FORMAT
    from ctviewer.core.model.export import check_export_target

    bundle = _hand_made_bundle(tmp_path / "bundle")
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "thesis.txt").write_text("precious")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    earlier = tmp_path / "earlier_export"
    earlier.mkdir()
    (earlier / CONTRACT_FILE).write_text(json.dumps({"format": CONTRACT_FORMAT}))
    (earlier / "model.onnx").write_bytes(b"old")
    cases = [
        ("/proc/e", "cannot write in /proc"),
        (str(a_file), "exists and is not a folder"),
        (str(documents), "is not a ctviewer export"),
        (str(earlier), "--overwrite"),
    ]
    for out, reason in cases:
        assert main(["export", str(bundle), "--format", "onnx", "--out", out, "-q"]) == 1, out
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and reason in err and "Traceback" not in err, (out, err)
    assert (documents / "thesis.txt").read_text() == "precious" and (earlier / "model.onnx").read_bytes() == b"old"
    assert check_export_target(earlier, overwrite=True) == earlier  # --overwrite: an earlier export may go
    assert check_export_target(tmp_path / "new" / "export", overwrite=False) == tmp_path / "new" / "export"


def test_a_report_in_a_new_folder_gets_its_folder_before_the_work(tmp_path: Path) -> None:
    from ctviewer.cli._outputs import OutputError, check_output_file

    target = tmp_path / "reports" / "2026" / "p.csv"
    assert check_output_file(target, "--csv") == target and target.parent.is_dir() and not target.exists()
    (tmp_path / "blocker").write_text("a file")
    with pytest.raises(OutputError, match="blocker"):
        check_output_file(tmp_path / "blocker" / "p.csv", "--csv")


def test_a_non_finite_loss_stops_training_at_once_and_saves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from ctviewer.core.data.cache import Cache

    data, _ = _mixed_folder(tmp_path / "data")
    real_array = Cache.array

    def poisoned(self: Cache, path: object, prep: object, frame: object = None, into: object = None) -> np.ndarray:
        arr = np.array(real_array(self, path, prep, frame))  # a new array: the stack gets this copy
        arr[0, 0] = np.nan  # what the load-time check keeps out, as a second guard's test
        return arr

    monkeypatch.setattr(Cache, "array", poisoned)
    bundle = tmp_path / "bundle"
    assert main(["train", str(data), "--out", str(bundle), "--positive", "b", "--size", "32", "--epochs", "3",
                 "--folds", "1", "-q"]) == 1
    err = capsys.readouterr().err
    assert "loss became nan at epoch 1, batch 1" in err and "Nothing was saved" in err
    assert "Traceback" not in err and not bundle.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


# --------------------------------------------------------------------------- messages


def test_evaluate_refuses_a_threshold_that_is_no_probability(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    report = tmp_path / "p.csv"
    report.write_text("path,prob,label\na.png,0.2,neg\nb.png,0.9,pos\n")
    assert main(["evaluate", str(report), "--threshold", "7", "--positive", "pos"]) == 1
    assert "between 0 and 1" in capsys.readouterr().err


def test_scan_summarises_many_image_sizes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "figures"
    folder.mkdir()
    for i in range(9):
        good_png(folder / f"f{i}.png", size=16 + i)
    good_png(folder / "again.png", size=20)
    assert main(["scan", str(folder)]) == 0
    sizes = next(line for line in capsys.readouterr().out.splitlines() if "sizes:" in line)
    assert sizes.strip() == ("sizes:   9 different sizes, from 16x16 to 24x24; "
                             "most common: 20x20 (2), 16x16 (1), 17x17 (1)")


def test_random_bytes_keras_file_is_called_damaged_not_missing(tmp_path: Path) -> None:
    from ctviewer.core.doctor.model_source import load_plain_model
    from ctviewer.core.errors import ModelError

    path = tmp_path / "model.keras"
    path.write_bytes(os.urandom(2000))
    with pytest.raises(ModelError) as info:
        load_plain_model(path)
    assert "not a zip file" in str(info.value) and "not found" not in str(info.value).lower()


# --------------------------------------------------------------------------- TensorFlow's start-up lines

_TF_NOISE = ("oneDNN", "cuInit", "cuda drivers", "absl::InitializeLog")


def _ctviewer(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run([sys.executable, "-m", "ctviewer", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)


def test_tensorflow_start_up_lines_are_hidden_unless_verbose(tmp_path: Path) -> None:
    command = ["predict", str(tmp_path / "no_bundle"), str(tmp_path), "--csv", str(tmp_path / "p.csv"), "-q"]
    quiet = _ctviewer(*command, tmp_path=tmp_path)
    assert quiet.returncode == 1
    assert not any(noise in quiet.stderr for noise in _TF_NOISE), quiet.stderr
    assert quiet.stderr.strip().splitlines() == [f"ctviewer predict: error: {tmp_path / 'no_bundle'}: no such model "
                                                 "bundle folder"]
    verbose = _ctviewer("--verbose", *command, tmp_path=tmp_path)
    assert verbose.returncode == 1 and any(noise in verbose.stderr for noise in _TF_NOISE), verbose.stderr
