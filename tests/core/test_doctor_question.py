"""The original question, rebuilt: class-sorted CT slices, the `seed` network, Keras' tail validation_split.

The doctor must report the tail split, the one-class validation set and the collapse, on a
model object and on the same model saved as a plain ``.keras``/``.h5`` file through the CLI.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from ctviewer.cli import main
from ctviewer.core.data.dataset import discover, load_stack
from ctviewer.core.data.demo import make_demo_dataset
from ctviewer.core.data.imaging import Preprocessing
from ctviewer.core.data.splits import keras_tail_split
from ctviewer.core.doctor import run_checks

SIZE = 48


@pytest.fixture(scope="module")
def question(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Demo CT data in folder order (all contrast, then all no_contrast) and the seed model trained as asked."""
    from ctviewer.core.model.recipes import build_model, compile_model, default_config

    root = tmp_path_factory.mktemp("question")
    folder = make_demo_dataset(root / "ct", n_patients=6, slices_per_patient=2, size=SIZE)
    ds = discover(folder)
    x = load_stack(ds, Preprocessing("wide", SIZE))[..., None]
    y = ds.y  # stacked class by class, never shuffled before the split: the question's arrays
    keras.utils.set_random_seed(0)
    config = replace(default_config("seed"), input_size=SIZE, epochs=3)
    model = build_model(config)
    compile_model(model, config, steps_per_epoch=2)
    history = model.fit(x, y, validation_split=0.2, epochs=3, batch_size=10, verbose=0)
    # Brief training leaves the network close to chance; whether its 0.5 +/- noise falls on one side
    # of the threshold for every image is luck. Push the output bias to one class, as the question's
    # model ended up, so the collapse is certain; the kernel (and so the ranking) stays as trained.
    out = model.get_layer("probabilities")
    kernel, _ = out.get_weights()
    out.set_weights([kernel, np.array([0.0, 6.0], dtype=np.float32)])
    model.save(root / "question.keras")
    model.save(root / "question.h5")
    (root / "history.json").write_text(json.dumps(history.history))
    return {"root": root, "folder": folder, "dataset": ds, "model": model, "history": history}


def by_code(findings) -> dict:
    out: dict = {}
    for f in findings:
        out.setdefault(f.code, []).append(f)
    return out


def test_doctor_reports_tail_split_one_class_validation_and_collapse(question):
    ds = question["dataset"]
    split = keras_tail_split(ds, 0.2)  # what model.fit(validation_split=0.2) held out
    found = by_code(run_checks(ds, split=split, history=question["history"], model=question["model"]))
    [tail] = found["tail-split-one-class"]
    assert tail.severity == "error"
    assert tail.evidence["validation_class_counts"] == {"no_contrast": 5}
    one_class = [f for f in found["small-class"] if f.evidence["set"] == "validation"]
    assert one_class and one_class[0].severity == "error"
    [collapse] = found["prediction-collapse"]
    assert collapse.severity == "error" and collapse.evidence["n_called_positive"] == len(ds)
    # The seed network has BatchNorm and Dropout 0.7, the question called it with learning_phase=1.
    assert "batchnorm-mode-mismatch" in found and "unstable-predictions" in found
    assert found["unstable-predictions"][0].evidence["training_false"]["max_change_between_calls"] <= 1e-4
    # A bare keras.Model carries no record of its training data.
    assert "evaluated-on-training-data" not in found


def test_cli_on_the_plain_keras_and_h5_files(question, capsys):
    root: Path = question["root"]
    for name in ("question.keras", "question.h5"):
        code = main(["doctor", str(question["folder"]), "--model", str(root / name),
                     "--history", str(root / "history.json"), "--json", "--max-images", "24"])
        assert code == 0
        findings = json.loads(capsys.readouterr().out)
        assert all(set(f) == {"code", "severity", "message", "evidence", "fix"} for f in findings)
        codes = {f["code"]: f for f in findings}
        # No split record for a plain file: the tail split is the hazard the folder order creates.
        assert {"tail-split-one-class", "prediction-collapse", "batchnorm-mode-mismatch"} <= set(codes)
        assert codes["tail-split-one-class"]["severity"] == "warning"
        collapse = next(f for f in findings if f["code"] == "prediction-collapse")
        assert collapse["evidence"]["n"] == 24
        severities = [f["severity"] for f in findings]
        assert severities == sorted(severities, key=["error", "warning", "info"].index)


def test_cli_told_how_the_plain_model_was_validated(question, capsys):
    root: Path = question["root"]
    code = main(["doctor", str(question["folder"]), "--model", str(root / "question.keras"), "--validation-split",
                 "0.2", "--no-baseline", "--json"])
    assert code == 0
    found = {f["code"]: f for f in json.loads(capsys.readouterr().out) if f["severity"] == "error"}
    assert {"tail-split-one-class", "small-class", "prediction-collapse"} <= set(found)
    assert main(["doctor", str(question["folder"]), "--validation-split", "1.5"]) == 1
    assert "between 0 and 1" in capsys.readouterr().err


def test_cli_text_output_and_bad_input(question, capsys):
    folder = str(question["folder"])
    assert main(["doctor", folder, "--no-baseline"]) == 0
    text = capsys.readouterr().out
    assert "WARNING tail-split-one-class" in text and "fix:" in text
    assert main(["doctor", str(question["root"] / "missing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file or folder" in err[0]
    (question["root"] / "bad.json").write_text("{not json")
    assert main(["doctor", folder, "--history", str(question["root"] / "bad.json")]) == 1
    assert "cannot be read" in capsys.readouterr().err
    assert main(["doctor", folder, "--model", str(question["root"] / "history.json")]) == 1
    assert "not a Keras model file" in capsys.readouterr().err


def test_a_diverged_model_is_reported_not_crashed_on(question):
    inputs = keras.Input((SIZE, SIZE, 1))
    dense = keras.layers.Dense(2, activation="softmax")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(inputs)))
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel, np.array([np.nan, 0.0], dtype=np.float32)])
    found = by_code(run_checks(question["dataset"], model=model, baseline=False))
    [nan] = found["non-finite-output"]
    assert nan.severity == "error" and nan.evidence["n_non_finite"] == len(question["dataset"])
    assert "prediction-collapse" not in found
