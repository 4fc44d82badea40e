"""`ctviewer train / predict / cv` end to end on a tiny demo set, and one-line errors for bad input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from ctviewer.cli import main

TINY = ["--size", "32", "--epochs", "1", "--batch-size", "8", "-q"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ctviewer.core.data.demo import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("cli") / "data", n_patients=3, slices_per_patient=2, size=48)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.timeout(1800)  # the default train is a 3-fold ensemble here
def test_train_then_predict_labelled_and_unlabelled(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    bundle = tmp_path / "bundle"
    assert main(["train", str(data), "--out", str(bundle), "--positive", "contrast", "--seed", "3", *TINY]) == 0
    out = capsys.readouterr().out
    assert "trained default" in out and "threshold" in out and str(bundle) in out
    card = json.loads((bundle / "model_card.json").read_text())
    assert card["positive"] == "contrast" and card["seed"] == 3 and card["preprocessing"]["size"] == 32
    # The default is a k-fold ensemble: 3 patients per class make 3 folds (said), and the
    # expected performance printed is the card's pooled out-of-fold one.
    assert card["kind"] == "ensemble" and len(card["members"]) == 3
    assert "3 folds instead of 5" in out and "expected on new images from the same source" in out
    assert f"threshold:  {card['threshold']:.4f}" in out
    assert len(_rows(bundle / "oof_predictions.csv")) == 12

    labelled_csv = tmp_path / "labelled.csv"
    assert main(["predict", str(bundle), str(data), "--csv", str(labelled_csv), "-q"]) == 0
    out = capsys.readouterr().out
    rows = _rows(labelled_csv)
    assert len(rows) == 12 and {r["label"] for r in rows} == {"contrast", "no_contrast"}
    assert all(r["model_id"] == card["model_id"] for r in rows)
    assert "12 labelled images: AUC" in out
    # Its own training images are marked as such, and the members' spread is a column.
    assert all(r["training_image"] == "1" for r in rows) and "12 of 12 images are this model's own" in out
    assert all(float(r["uncertainty"]) >= 0.0 for r in rows) and "expected on new images" in out

    # An unlabelled folder (no class subfolders), with TTA.
    loose = tmp_path / "loose"
    loose.mkdir()
    for i, src in enumerate(sorted((data / "contrast").rglob("*.dcm"))[:3]):
        shutil.copy(src, loose / f"scan{i}.dcm")
    loose_csv = tmp_path / "loose.csv"
    assert main(["predict", str(bundle), str(loose), "--csv", str(loose_csv), "--tta", "-q"]) == 0
    rows = _rows(loose_csv)
    assert len(rows) == 3 and all(r["label"] == "" and r["correct"] == "" for r in rows)
    assert all(0.0 <= float(r["prob"]) <= 1.0 for r in rows)


def test_cv_writes_predictions_and_metrics_in_the_contract_format(data: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture):
    out_dir = tmp_path / "cv"
    assert main(["cv", str(data), "--folds", "3", "--out", str(out_dir), "--keep-models", *TINY]) == 0
    out = capsys.readouterr().out
    assert "3-fold patient-grouped cross-validation" in out and "pooled out-of-fold" in out
    rows = _rows(out_dir / "predictions.csv")
    assert len(rows) == 12 and {r["fold"] for r in rows} == {"0", "1", "2"}
    for column in ("path", "patient", "label", "prob", "pred", "correct"):
        assert all(r[column] != "" for r in rows), column
    folds_by_patient: dict[str, set[str]] = {}
    for r in rows:
        folds_by_patient.setdefault(r["patient"], set()).add(r["fold"])
    assert all(len(f) == 1 for f in folds_by_patient.values())
    metrics = json.loads((out_dir / "metrics.json").read_text())
    for key in ("n", "tp", "tn", "fp", "fn", "sensitivity", "specificity", "accuracy", "balanced_accuracy", "auc",
                "threshold"):
        assert key in metrics, key
    for key in ("sensitivity", "specificity", "accuracy", "balanced_accuracy", "auc"):
        assert len(metrics[f"{key}_ci"]) == 2
    assert metrics["n"] == 12 and len(metrics["fold_thresholds"]) == 3
    assert (out_dir / "ensemble" / "model_card.json").is_file()
    assert sorted(p.name for p in (out_dir / "models").iterdir()) == ["fold_1", "fold_2", "fold_3"]
    # Patient level beside the image level: one row per patient, its images' out-of-fold mean.
    assert metrics["unit"] == "image" and metrics["n_patients"] == 6
    patients = _rows(out_dir / "patients.csv")
    assert len(patients) == 6 and sum(int(r["n_images"]) for r in patients) == 12
    probs: dict[str, list[float]] = {}
    for r in rows:
        probs.setdefault(r["patient"], []).append(float(r["prob"]))
    for r in patients:
        assert float(r["prob"]) == pytest.approx(sum(probs[r["unit"]]) / len(probs[r["unit"]]), abs=1e-12)
        assert {r["fold"]} == folds_by_patient[r["unit"]] and r["level"] == "patient" and r["rule"] == "mean"
    level = metrics["levels"]["patient"]
    assert level["unit"] == "patient" and level["n"] == 6 and level["rule"] == "mean"
    assert len(_rows(out_dir / "series.csv")) == 6
    assert "patient level (6 patient units" in out
    card = json.loads((out_dir / "ensemble" / "model_card.json").read_text())
    assert "out-of-fold" in card["levels"]["patient"]["chosen_on"]


def _one_line_error(capsys: pytest.CaptureFixture, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error message"
    last = err[-1]
    assert last.startswith(f"ctviewer {command}: error: ") and "Traceback" not in "\n".join(err)
    return last


def test_bad_input_gives_one_line_errors(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    one_class = tmp_path / "one_class"
    shutil.copytree(data / "contrast", one_class / "contrast")
    assert main(["train", str(one_class), "--out", str(tmp_path / "b1"), *TINY]) == 1
    assert "one class" in _one_line_error(capsys, "train")

    three = tmp_path / "three"
    files = sorted((data / "contrast").rglob("*.dcm"))[:2] + sorted((data / "no_contrast").rglob("*.dcm"))[:1]
    for f in files:
        target = three / f.relative_to(data)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, target)
    assert main(["train", str(three), "--out", str(tmp_path / "b2"), *TINY]) == 1
    assert "too few" in _one_line_error(capsys, "train")

    assert main(["train", str(data), "--out", str(tmp_path / "b3"), "--model", "vgg99", *TINY]) == 1
    assert "unknown model 'vgg99'" in _one_line_error(capsys, "train")

    assert main(["train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b4"), *TINY]) == 1
    assert "no such file or folder" in _one_line_error(capsys, "train")

    assert main(["train", str(data), "--out", str(tmp_path / "b5"), "--positive", "tumour", *TINY]) == 1
    assert "positive class 'tumour' not found" in _one_line_error(capsys, "train")

    assert main(["cv", str(data), "--folds", "4", "--out", str(tmp_path / "cv"), *TINY]) == 1
    assert "patients" in _one_line_error(capsys, "cv")

    assert main(["cv", str(data), "--folds", "1", "--out", str(tmp_path / "cv"), *TINY]) == 1
    assert "--folds must be at least 2" in _one_line_error(capsys, "cv")

    assert main(["predict", str(data), str(data), "--csv", str(tmp_path / "p.csv"), "-q"]) == 1
    assert "not a ctviewer model bundle" in _one_line_error(capsys, "predict")


def test_ctrl_c_once_stops_gracefully_and_saves_the_best_epoch(data: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture):
    import os
    import signal

    from ctviewer.cli import _progress
    from ctviewer.core.events import BatchEnded

    original = _progress.ProgressBars.__call__

    def press_ctrl_c_in_epoch_2(self, event):
        original(self, event)
        if isinstance(event, BatchEnded) and event.epoch == 1 and event.batch == 0:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(_progress.ProgressBars, "__call__", press_ctrl_c_in_epoch_2)
    bundle = tmp_path / "bundle"
    args = ["train", str(data), "--out", str(bundle), "--folds", "1", "--size", "32", "--epochs", "5",
            "--batch-size", "4", "-q"]
    before = signal.getsignal(signal.SIGINT)
    assert main(args) == 0
    card = json.loads((bundle / "model_card.json").read_text())
    assert card["kind"] == "single"  # --folds 1: today's single model with a validation hold-out
    assert card["cancelled"] is True and card["epochs_run"] == 1 and card["best_epoch"] == 0
    assert "stopping after this batch" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before  # the handler found is restored


def test_interrupt_to_stop_second_ctrl_c_aborts():
    import os
    import signal

    from ctviewer.cli._progress import InterruptToStop

    with InterruptToStop() as stop:
        assert not stop()
        os.kill(os.getpid(), signal.SIGINT)
        assert stop()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
