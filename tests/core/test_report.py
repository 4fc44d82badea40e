"""Prediction CSV and metrics JSON of ctviewer.core.metrics.report, and its atomic writes."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from ctviewer.core.errors import CTViewerError
from ctviewer.core.metrics import report
from ctviewer.core.metrics.evaluation import compute_metrics, metrics_from_predictions
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.core.metrics.report import ReportError, read_predictions_csv, write_metrics_json, write_predictions_csv

CLASSES = ("no_contrast", "contrast")


def _predictions(n: int = 30, seed: int = 0, folds: bool = False) -> Predictions:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    probs = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0.0, 1.0)  # full-precision floats
    labels: list[str | None] = [CLASSES[v] for v in y]
    labels[3] = None  # one unlabelled image
    return Predictions(
        paths=[f"/data/Ærø, \"scan\" {i}/img{i}.dcm" for i in range(n)],  # non-ASCII, comma and quotes
        probs=probs, threshold=0.4375, classes=CLASSES, labels=labels,
        patients=[f"PAT{i // 3:03d}" for i in range(n)],
        studies=[f"1.2.840.{i // 3}" for i in range(n)],
        series=[f"1.2.840.{i // 3}.{i % 2}" for i in range(n)],
        folds=np.arange(n) % 5 if folds else None, model_id="seed-2024",
    )


def test_header_columns_and_utf8(tmp_path: Path) -> None:
    pred = _predictions()
    out = write_predictions_csv(pred, tmp_path / "p.csv")
    raw = out.read_bytes()
    assert raw.decode("utf-8").splitlines()[0] == ",".join(report.PREDICTION_COLUMNS)
    assert "Ærø".encode() in raw and not raw.startswith(b"\xef\xbb\xbf")
    with open(out, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(pred) and list(rows[0]) == list(report.PREDICTION_COLUMNS)  # no index column
    assert rows[0]["path"] == pred.paths[0] and rows[0]["fold"] == "" and rows[0]["model_id"] == "seed-2024"
    assert rows[3]["label"] == "" and rows[3]["correct"] == ""
    assert {r["correct"] for i, r in enumerate(rows) if i != 3} <= {"0", "1"}


def test_round_trip_is_exact(tmp_path: Path) -> None:
    pred = _predictions(folds=True)
    back = read_predictions_csv(write_predictions_csv(pred, tmp_path / "p.csv"))
    assert np.array_equal(back.probs, pred.probs)  # bit-identical, not just close
    assert back.threshold == pred.threshold and back.classes == pred.classes
    assert back.paths == pred.paths and back.labels == pred.labels
    assert back.patients == pred.patients and back.studies == pred.studies and back.series == pred.series
    assert np.array_equal(back.folds, pred.folds) and back.model_id == pred.model_id
    a, b = metrics_from_predictions(pred), metrics_from_predictions(back)
    assert a.to_json_dict() == b.to_json_dict()


def test_csv_module_reads_the_same_numbers(tmp_path: Path) -> None:
    pred = _predictions(n=50, seed=4)
    path = write_predictions_csv(pred, tmp_path / "p.csv")
    with open(path, encoding="utf-8", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["label"]]
    y = np.array([int(r["label"] == "contrast") for r in rows])
    probs = np.array([float(r["prob"]) for r in rows])
    called = np.array([int(r["pred"] == "contrast") for r in rows])
    threshold = float(rows[0]["threshold"])
    expected = metrics_from_predictions(pred)
    from_csv = compute_metrics(y, probs, threshold)
    # Counts straight from the pred/label columns, and every metric recomputed from prob.
    assert int(((called == 1) & (y == 1)).sum()) == expected.tp
    assert int(((called == 0) & (y == 0)).sum()) == expected.tn
    assert sum(int(r["correct"]) for r in rows) == expected.tp + expected.tn
    for name in ("sensitivity", "specificity", "accuracy", "balanced_accuracy", "f1", "auc", "brier"):
        assert getattr(from_csv, name) == getattr(expected, name)
    assert from_csv.auc_ci == expected.auc_ci and from_csv.specificity_ci == expected.specificity_ci


def test_pseudonymised_ids(tmp_path: Path) -> None:
    pred = _predictions()
    path = write_predictions_csv(pred, tmp_path / "p.csv", pseudonymise_salt="s3cret")
    text = path.read_text(encoding="utf-8")
    assert "PAT0" not in text and "1.2.840." not in text
    back = read_predictions_csv(path)
    # Same id -> same pseudonym; different ids -> different pseudonyms; row order kept.
    mapping = dict(zip(pred.patients, back.patients))
    assert len(set(mapping.values())) == len(set(pred.patients)) == len(mapping)
    assert all(mapping[p] == q for p, q in zip(pred.patients, back.patients))
    assert np.array_equal(back.probs, pred.probs) and back.paths == pred.paths
    other = read_predictions_csv(write_predictions_csv(pred, tmp_path / "q.csv", pseudonymise_salt="other"))
    assert other.patients[0] != back.patients[0]
    again = read_predictions_csv(write_predictions_csv(pred, tmp_path / "r.csv", pseudonymise_salt="s3cret"))
    assert again.patients == back.patients
    # Patient "1" and study "1" do not share a pseudonym.
    assert report.pseudonym("1", "k", "patient") != report.pseudonym("1", "k", "study")
    hidden = write_predictions_csv(pred, tmp_path / "h.csv", pseudonymise_salt="s3cret", pseudonymise_paths=True)
    hidden_back = read_predictions_csv(hidden)
    assert "Ærø" not in hidden.read_text(encoding="utf-8")
    assert all(p.endswith(".dcm") for p in hidden_back.paths) and len(set(hidden_back.paths)) == len(pred)
    with pytest.raises(ValueError, match="non-empty"):
        write_predictions_csv(pred, tmp_path / "x.csv", pseudonymise_salt="")


def test_reader_tolerates_extra_columns_bom_and_missing_optionals(tmp_path: Path) -> None:
    path = tmp_path / "hand.csv"
    path.write_text(
        "\ufeffid,path,prob,label,pred,notes\n"
        "1,a.png,0.9,sick,sick,x\n2,b.png,0.2,well,well,\n3,c.png,0.6,well,sick,\n",
        encoding="utf-8",
    )
    pred = read_predictions_csv(path)
    assert pred.classes == ("well", "sick") and pred.threshold == report.DEFAULT_THRESHOLD
    assert pred.labels == ["sick", "well", "well"] and pred.patients == ["", "", ""] and pred.folds is None
    # No pred column: the caller names the positive class.
    bare = tmp_path / "bare.csv"
    bare.write_text("path,prob,label\na,0.9,sick\nb,0.2,well\n", encoding="utf-8")
    assert read_predictions_csv(bare, positive="sick").classes == ("well", "sick")
    assert read_predictions_csv(bare, positive="well").classes == ("sick", "well")
    with pytest.raises(ReportError, match="which class is positive"):
        read_predictions_csv(bare)
    only_one = tmp_path / "one.csv"
    only_one.write_text("path,prob,label,pred\na,0.9,sick,sick\n", encoding="utf-8")
    assert read_predictions_csv(only_one).classes == ("not sick", "sick")


@pytest.mark.parametrize(
    "content,match",
    [
        ("", "empty file"),
        ("path,label\na,x\n", "missing column.*prob"),
        ("path,prob\n", "no rows"),
        ("path,prob,label\na,0.3,x\nb,abc,y\n", "line 3: prob 'abc' is not a number"),
        ("path,prob,label\na,nan,x\n", "line 2: prob is nan"),
        ("path,prob,label\na,1.5,x\n", "not a probability"),
        ("path,prob,label,pred\na,0.9,x,x\nb,0.1,y,y\nc,0.5,z,z\n", "more than two classes"),
        ("path,prob,label,pred\na,0.9,x,x\nb,0.1,y,x\n", "does not follow"),
        ("path,prob,label,pred,fold\na,0.9,x,x,one\n", "fold 'one'"),
    ],
)
def test_bad_csv_names_file_and_reason(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ReportError, match=match) as info:
        read_predictions_csv(path)
    assert str(path) in str(info.value) and isinstance(info.value, CTViewerError)


def test_reader_errors_for_files_and_contradicting_positive(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no such file"):
        read_predictions_csv(tmp_path / "missing.csv")
    with pytest.raises(ReportError, match="not a file"):
        read_predictions_csv(tmp_path)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("path,prob\nÆ,0.5\n".encode("latin-1"))
    with pytest.raises(ReportError, match="not UTF-8"):
        read_predictions_csv(latin)
    path = write_predictions_csv(_predictions(), tmp_path / "p.csv")
    with pytest.raises(ReportError, match="not the probability of 'no_contrast'"):
        read_predictions_csv(path, positive="no_contrast")
    # Mixed thresholds are fine once the caller picks one.
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("path,prob,label,pred,threshold\na,0.9,x,x,0.5\nb,0.1,y,y,0.3\n", encoding="utf-8")
    assert read_predictions_csv(mixed, threshold=0.4).threshold == 0.4


# --------------------------------------------------------------------------- atomic writes


def test_a_write_that_fails_midway_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "report.txt"
    target.write_text("good old content\n", encoding="utf-8")
    with pytest.raises(RuntimeError), report.atomic_open(target) as handle:
        handle.write("half of the new")
        handle.flush()
        raise RuntimeError("disk pulled out")
    assert target.read_text(encoding="utf-8") == "good old content\n"
    assert os.listdir(tmp_path) == ["report.txt"]  # no temporary file left behind


def test_a_csv_export_that_fails_midway_leaves_the_old_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pred = _predictions()
    target = write_predictions_csv(pred, tmp_path / "p.csv")
    before = target.read_bytes()
    real_row = report._prediction_row

    def failing_row(p: Predictions, i: int, *args: object) -> list[str]:
        if i == 10:
            raise OSError("no space left on device")
        return real_row(p, i, *args)

    monkeypatch.setattr(report, "_prediction_row", failing_row)
    changed = Predictions(paths=pred.paths, probs=pred.probs[::-1], threshold=0.5, classes=CLASSES)
    with pytest.raises(OSError, match="no space"):
        write_predictions_csv(changed, target)
    assert target.read_bytes() == before and os.listdir(tmp_path) == ["p.csv"]


def test_write_text_atomic_replaces_and_keeps_permissions(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    report.write_text_atomic(target, "first")
    assert target.stat().st_mode & 0o777 == 0o644
    os.chmod(target, 0o600)
    report.write_text_atomic(target, "second ✓")
    assert target.read_text(encoding="utf-8") == "second ✓" and target.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ReportError, match="does not exist"):
        report.write_text_atomic(tmp_path / "no" / "such.txt", "x")


# --------------------------------------------------------------------------- metrics JSON


def test_metrics_json(tmp_path: Path) -> None:
    metrics = compute_metrics([0, 0, 0, 0], [0.1, 0.2, 0.7, 0.3], 0.5)  # no positives: NaN metrics
    path = write_metrics_json(metrics, tmp_path / "metrics.json",
                              extra={"model_id": "m1", "n_images": np.int64(4), "ratio": float("nan")})
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["sensitivity"] is None and data["auc_ci"] == [None, None] and data["ratio"] is None
    assert data["specificity"] == 0.75 and data["specificity_ci"] == list(metrics.specificity_ci.to_list())
    assert data["model_id"] == "m1" and data["n_images"] == 4 and data["threshold"] == 0.5
    with pytest.raises(ValueError, match="overwrite"):
        write_metrics_json(metrics, tmp_path / "m2.json", extra={"auc": 1.0})


def test_per_fold_thresholds_round_trip_and_count_each_row_at_its_own(tmp_path: Path) -> None:
    from ctviewer.core.metrics.predictions import Predictions

    probs = np.array([0.9, 0.45, 0.35, 0.2, 0.6, 0.3])
    labels = ["pos", "pos", "neg", "neg", "pos", "neg"]
    row_t = np.array([0.5, 0.5, 0.5, 0.3, 0.3, 0.3])  # fold 0 at 0.5, fold 1 at 0.3
    pred = Predictions(paths=list("abcdef"), probs=probs, threshold=0.4, classes=("neg", "pos"),
                       labels=labels, folds=np.array([0, 0, 0, 1, 1, 1]), row_thresholds=row_t)
    # 0.45 < 0.5 is a miss in fold 0; 0.3 >= 0.3 is a false positive in fold 1.
    assert pred.y_pred().tolist() == [1, 0, 0, 0, 1, 1]
    m = metrics_from_predictions(pred)
    assert (m.tp, m.fn, m.tn, m.fp) == (2, 1, 2, 1)
    assert m.threshold == 0.4  # median of the row thresholds
    path = report.write_predictions_csv(pred, tmp_path / "cv.csv")
    back = report.read_predictions_csv(path)
    np.testing.assert_array_equal(back.row_thresholds, row_t)
    again = metrics_from_predictions(back)
    assert (again.tp, again.fn, again.tn, again.fp) == (m.tp, m.fn, m.tn, m.fp)
    # An explicit threshold overrides every row's own.
    at_half = metrics_from_predictions(report.read_predictions_csv(path, threshold=0.5))
    direct = compute_metrics(pred.y_true, probs, 0.5)
    assert (at_half.tp, at_half.fp) == (direct.tp, direct.fp)
