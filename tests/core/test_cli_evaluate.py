"""``ctviewer evaluate``: recomputes the metrics of a prediction CSV and prints them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from ctviewer.cli import main
from ctviewer.core.metrics.evaluation import compute_metrics, metric_rows
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.core.metrics.report import write_predictions_csv

CLASSES = ("no_contrast", "contrast")


@pytest.fixture()
def report_csv(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    y = np.r_[np.ones(40, dtype=int), np.zeros(6, dtype=int)]  # the question's kind of imbalance
    probs = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0.0, 1.0)
    pred = Predictions(paths=[f"img{i}.dcm" for i in range(y.size)], probs=probs, threshold=0.5,
                       classes=CLASSES, labels=[CLASSES[v] for v in y])
    return write_predictions_csv(pred, tmp_path / "predictions.csv"), y, probs


def _table_values(text: str) -> dict[str, tuple[str, str]]:
    """label -> (value, CI) parsed from the printed table."""
    out = {}
    for line in text.splitlines():
        match = re.match(r"^(\S+(?: \S+)*?)\s{2,}(\S+)\s+(\d\.\d{3}-\d\.\d{3}|n/a)?", line)
        if match:
            out[match.group(1)] = (match.group(2), match.group(3) or "")
    return out


def test_table_prints_the_numbers_of_compute_metrics(report_csv, capsys: pytest.CaptureFixture[str]) -> None:
    path, y, probs = report_csv
    assert main(["evaluate", str(path)]) == 0
    text = capsys.readouterr().out
    expected = compute_metrics(y, probs, 0.5)
    table = _table_values(text)
    for row in metric_rows(expected):
        value, ci = table[row.label]
        assert value == f"{row.value:.3f}"
        if row.ci is not None:
            assert ci == f"{row.ci.low:.3f}-{row.ci.high:.3f}"
    assert f"TP {expected.tp}  FN {expected.fn}  FP {expected.fp}  TN {expected.tn}" in text
    assert "40 contrast (positive), 6 no_contrast (negative)" in text
    assert "specificity rests on 6 negatives (no_contrast)" in text  # the warnings are printed


def test_json_and_threshold_option(report_csv, capsys: pytest.CaptureFixture[str]) -> None:
    path, y, probs = report_csv
    assert main(["evaluate", str(path), "--json", "--threshold", "0.62"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = compute_metrics(y, probs, 0.62, classes=CLASSES).to_json_dict()
    assert printed.pop("source") == str(path)
    assert printed == expected  # exact floats: prob survives the CSV unchanged
    assert printed["threshold"] == 0.62


def test_positive_option_for_a_csv_without_pred(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bare.csv"
    path.write_text("path,prob,label\na,0.9,sick\nb,0.2,well\nc,0.7,well\nd,0.4,sick\n", encoding="utf-8")
    assert main(["evaluate", str(path)]) == 1
    assert "name the positive class" in capsys.readouterr().err
    assert main(["evaluate", str(path), "--positive", "sick", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["tp"], printed["fn"], printed["fp"], printed["tn"]) == (1, 1, 1, 1)
    assert printed["classes"] == ["well", "sick"]


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("missing.csv", None, "no such file"),
        ("bad.csv", "path,label\na,x\n", "missing column(s) prob"),
        ("nolabels.csv", "path,prob,pred\na,0.9,x\nb,0.1,y\n", "nothing to evaluate"),
    ],
)
def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
                             content: str | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert main(["evaluate", str(path)]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert captured.out == "" and "\n" not in err and message in err and str(path) in err
    assert err.startswith("ctviewer evaluate: error:")
