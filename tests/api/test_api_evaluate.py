"""`ctviewer.api.evaluate` gives the CLI's numbers on the same CSV, and a patient level."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from ctviewer.api import evaluate
from ctviewer.cli import main


def write_csv(path: Path, threshold: float = 0.4) -> dict:
    rng = np.random.default_rng(3)
    n = 40
    labels = np.array(["contrast"] * 14 + ["no_contrast"] * 26)
    probs = np.clip(np.where(labels == "contrast", 0.62, 0.35) + rng.normal(0, 0.2, n), 0.0, 1.0)
    patients = [f"P{i // 2:02d}" for i in range(n)]  # two slices each, same label
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "patient", "label", "prob", "pred", "threshold"])
        for i in range(n):
            pred = "contrast" if probs[i] >= threshold else "no_contrast"
            writer.writerow([f"img{i}.dcm", patients[i], labels[i], repr(float(probs[i])), pred, threshold])
    return {"labels": labels, "probs": probs, "patients": patients, "threshold": threshold}


def cli_json(args: list[str], capsys) -> dict:
    assert main(["evaluate", *args, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    payload.pop("source")
    return payload


def read_back(path: Path) -> tuple[list[str], np.ndarray, list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["label"] for r in rows], np.array([float(r["prob"]) for r in rows]), [r["patient"] for r in rows]


def test_evaluate_equals_the_cli_on_the_same_csv(tmp_path, capsys):
    path = tmp_path / "predictions.csv"
    data = write_csv(path)
    labels, probs, patients = read_back(path)
    ours = evaluate(labels, probs, threshold=data["threshold"], positive="contrast", patients=patients)
    assert ours.per_image.to_json_dict() == cli_json([str(path)], capsys)
    # The CLI's --threshold override, and 0/1 labels with class names, agree too.
    y01 = (np.array(labels) == "contrast").astype(int)
    ours = evaluate(y01, probs, threshold=0.3, classes=("no_contrast", "contrast"), patients=patients)
    assert ours.per_image.to_json_dict() == cli_json([str(path), "--threshold", "0.3"], capsys)
    assert ours.per_image.warnings, "40 images: some interval is too wide and says so"
    # One threshold per row (out-of-fold reports), as the CLI reads a CSV whose rows differ.
    rows = np.where(np.arange(len(probs)) % 2 == 0, 0.35, 0.45)
    per_row = tmp_path / "per_row.csv"
    text = path.read_text(encoding="utf-8").splitlines()
    with open(per_row, "w", newline="", encoding="utf-8") as fh:
        fh.write(text[0] + "\n")
        for i, line in enumerate(text[1:]):
            fh.write(line.rsplit(",", 1)[0] + f",{rows[i]}\n")
    ours = evaluate(labels, probs, threshold=rows, positive="contrast", patients=patients)
    assert ours.per_image.to_json_dict() == cli_json([str(per_row), "--positive", "contrast"], capsys)


def test_softmax_rows_and_one_hot_labels_are_read_as_class_one():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.1, 0.6, 0.8, 0.7, 0.2, 0.3])
    plain = evaluate(y, p)
    rows = evaluate(np.eye(2)[y], np.stack([1 - p, p], axis=1))
    assert rows.per_image.to_json_dict() == plain.per_image.to_json_dict()
    m = plain.per_image
    assert (m.tp, m.fn, m.fp, m.tn) == (2, 1, 1, 2)
    assert plain.confusion.as_array().tolist() == [[2, 1], [1, 2]]
    assert "class 1" in str(plain.confusion) and "<table>" in plain.confusion._repr_html_()
    assert plain._repr_html_().startswith("<table>") and "sensitivity" in plain._repr_html_()
    flipped = evaluate(y, np.stack([1 - p, p], axis=1), positive=0).per_image
    assert flipped.n_positive == 3 and math.isclose(flipped.auc, plain.per_image.auc)


def test_patient_level_is_each_patients_mean_probability():
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    p = np.array([0.9, 0.3, 0.2, 0.6, 0.4, 0.5, 0.1, 0.1])
    patients = ["a", "a", "b", "b", "c", "c", "d", "d"]
    result = evaluate(y, p, patients=patients)
    pm = result.per_patient
    # Means: a 0.6 (pos), b 0.4 (neg), c 0.45 (pos), d 0.1 (neg) at 0.5 -> TP 1, FN 1, TN 2.
    assert (pm.n, pm.tp, pm.fn, pm.fp, pm.tn) == (4, 1, 1, 0, 2)
    assert result.per_image.n == 8
    text = str(result)
    assert "per image: 8 labelled images" in text and "per patient: 4 patients" in text
    payload = json.loads(result.to_json())
    assert payload["per_patient"]["n"] == 4 and payload["patient_confusion"]["matrix"] == [[1, 1], [0, 2]]
    mixed = evaluate(y, p, patients=["a", "a", "a", "b", "c", "c", "d", "d"])
    assert mixed.per_patient.n == 3 and any("both classes" in n for n in mixed.notes)


def test_bad_input_says_what_is_wrong():
    with pytest.raises(ValueError, match="expected 0/1 labels"):
        evaluate([0, 2, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="prob has shape"):
        evaluate([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="positive class 'yes' is not among the labels"):
        evaluate(["a", "b"], [0.1, 0.9], positive="yes")
    with pytest.raises(ValueError, match="patients has 1 entries"):
        evaluate([0, 1], [0.1, 0.9], patients=["a"])
