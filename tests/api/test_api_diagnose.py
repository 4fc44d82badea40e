"""`ctviewer.api.diagnose` and `keras_callback` on the question's setup and on a sound one.

The question: its network (the `seed` recipe, BatchNorm and Dropout 0.7), arrays filled class by
class, ``model.fit(validation_split=0.1)`` with SGD. The doctor must name the tail split, the
one-class validation part and the BatchNorm mode difference; on shuffled arrays and a model
without BatchNorm/Dropout it must name none of them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from ctviewer.api import diagnose, keras_callback
from ctviewer.core.data.demo import demo_arrays

SIZE = 32
QUESTION_CODES = {"tail-split-one-class", "batchnorm-mode-mismatch"}


def unit(x_hu: np.ndarray) -> np.ndarray:
    return np.clip((x_hu + 1000.0) / 2000.0, 0.0, 1.0)[..., None].astype(np.float32)


class EpochMarker(keras.callbacks.Callback):
    """Writes a line when epoch 2 begins, to show the doctor spoke before it."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            self.lines.append("== epoch 2 begins ==")


@pytest.fixture(scope="module")
def question() -> dict:
    from ctviewer.core.model.recipes import build_seed

    x_hu, y, patients = demo_arrays(n_patients=6, slices_per_patient=3, size=SIZE)  # contrast first
    x = unit(x_hu)
    keras.utils.set_random_seed(0)
    model = build_seed(SIZE)
    model.compile(keras.optimizers.SGD(0.01), "categorical_crossentropy", metrics=["accuracy"])
    lines: list[str] = []
    doctor = keras_callback(x, y, validation_split=0.1, classes=("no_contrast", "contrast"), printer=lines.append)
    history = model.fit(x, keras.utils.to_categorical(y, 2), validation_split=0.1, epochs=2, batch_size=10,
                        verbose=0, callbacks=[doctor, EpochMarker(lines)])
    return {"x": x, "y": y, "patients": patients, "model": model, "history": history, "lines": lines,
            "doctor": doctor}


def test_diagnose_names_the_tail_split_the_one_class_validation_and_batchnorm(question):
    report = diagnose(question["model"], question["x"], question["y"], validation_split=0.1,
                      history=question["history"], patients=question["patients"],
                      classes=("no_contrast", "contrast"))
    [tail] = report.by_code("tail-split-one-class")
    assert tail.severity == "error" and tail.evidence["validation_class_counts"] == {"no_contrast": 4}
    assert "arrays' order" in tail.message
    one_class = [f for f in report.by_code("small-class") if f.evidence["set"] == "validation"]
    assert one_class and one_class[0].severity == "error" and "only one class" in one_class[0].message
    [mode] = report.by_code("batchnorm-mode-mismatch")
    assert mode.evidence["max_prob_change"] > 0.05 and "BatchNormalization" in mode.evidence["layers"]
    # Drift across repeated calls: in training mode only; inference mode is stable.
    [drift] = report.by_code("unstable-predictions")
    assert drift.evidence["training_true"]["max_change_between_calls"] > 0.05
    assert drift.evidence["training_false"]["max_change_between_calls"] <= 1e-4
    # The tail split cuts patient DEMO-1004's three slices apart (36 rows, the last 4 validate).
    assert report.by_code("patient-leak")[0].evidence["patients"] == ["DEMO-1004"]
    # Readable text, a notebook table and JSON.
    text = str(report)
    assert text.startswith("ctviewer doctor: 36 arrays, validation_split=0.1") and "ERROR   tail-split-one-class" in text
    html = report._repr_html_()
    assert html.startswith("<table") and "tail-split-one-class" in html and "<script" not in html
    payload = json.loads(report.to_json())
    assert [f["code"] for f in payload] == report.codes
    assert all(set(f) == {"code", "severity", "message", "evidence", "fix"} for f in payload)
    severities = [f.severity for f in report]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)


def test_diagnose_loads_a_saved_keras_file(question, tmp_path):
    question["model"].save(tmp_path / "question.keras")
    report = diagnose(str(tmp_path / "question.keras"), question["x"], question["y"], validation_split=0.1,
                      baseline=False)
    assert {"tail-split-one-class", "small-class", "batchnorm-mode-mismatch"} <= set(report.codes)


def test_diagnose_without_the_split_warns_of_the_order_only(question):
    report = diagnose(None, question["x"], question["y"])
    [tail] = report.by_code("tail-split-one-class")
    assert tail.severity == "warning" and set(tail.evidence["tail_splits"]) == {"0.1", "0.2"}
    assert not [f for f in report.by_code("small-class") if f.severity == "error"]
    assert report.by_code("no-patient-ids")[0].fix.startswith("Pass patients=")


def test_history_alone_flags_perfect_validation_from_epoch_one():
    history = {"accuracy": [0.5, 0.55, 0.6], "val_accuracy": [1.0, 1.0, 1.0]}
    x_hu, y, _ = demo_arrays(n_patients=2, slices_per_patient=2, size=16)
    report = diagnose(None, unit(x_hu), y, history=history)
    assert report.by_code("perfect-validation")[0].evidence["epochs"] == [1, 2, 3]


def test_the_callback_speaks_after_epoch_one(question):
    lines = question["lines"]
    marker = lines.index("== epoch 2 begins ==")
    before = "\n".join(lines[:marker])
    assert before.startswith("ctviewer doctor after epoch 1:")
    assert "The validation set has only one class (4 no_contrast images)" in before
    assert "tail-split-one-class" in before and "batchnorm-mode-mismatch" in before
    assert "ctviewer doctor at the end of training" in "\n".join(lines[marker:])
    found = question["doctor"].findings
    assert {"epoch 1", "end"} <= set(found)
    assert "small-class" in {f.code for f in found["epoch 1"]}


def test_the_callback_prints_with_print_and_checks_logs_without_arrays(capsys):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).random((20, 4)).astype(np.float32)
    y = np.array([1] * 10 + [0] * 10)
    model.fit(x, y, validation_split=0.2, epochs=1, batch_size=8, verbose=0, callbacks=[keras_callback()])
    out = capsys.readouterr().out
    # Without arrays only the logs are checked: val_accuracy of a one-class tail is 0 or 1.
    assert out.startswith("ctviewer doctor after epoch 1:")
    model.fit(x, y, validation_split=0.2, epochs=1, batch_size=8, verbose=0,
              callbacks=[keras_callback(x, y, validation_split=0.2)])
    out = capsys.readouterr().out
    assert "The validation set has only one class (4 class 0 images)" in out


def test_a_sound_setup_gets_none_of_the_question_findings():
    x_hu, y, patients = demo_arrays(n_patients=6, slices_per_patient=3, size=SIZE)
    order = np.random.default_rng(1).permutation(len(y))
    # Shuffled, then the tail checked to hold both classes: what "shuffle before fit" gives.
    while len(set(y[order][-4:].tolist())) < 2:
        order = np.random.default_rng(int(order[0])).permutation(len(y))
    x, y, patients = unit(x_hu)[order], y[order], patients[order]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 1))
    z = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    z = keras.layers.GlobalAveragePooling2D()(z)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(z))
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    history = model.fit(x, y, validation_split=0.1, epochs=1, batch_size=10, verbose=0)
    report = diagnose(model, x, y, validation_split=0.1, history=history, patients=patients, baseline=False)
    assert not QUESTION_CODES & set(report.codes)
    assert not [f for f in report.by_code("small-class") if f.severity == "error"]
    assert "unstable-predictions" not in report.codes


def test_bad_input_is_named():
    from ctviewer.core.errors import ModelError

    x_hu, y, _ = demo_arrays(n_patients=2, slices_per_patient=2, size=16)
    with pytest.raises(ValueError, match="validation_split must be between 0 and 1"):
        diagnose(None, unit(x_hu), y, validation_split=1.5)
    with pytest.raises(ValueError, match="expected 0/1 labels"):
        diagnose(None, unit(x_hu), y + 1)
    inputs = keras.Input((SIZE, SIZE, 1))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inputs)))
    with pytest.raises(ModelError, match=r"x has shape \(8, 16, 16, 1\) but the model takes"):
        diagnose(model, unit(x_hu), y)


def test_nan_in_x_is_named_not_blamed_on_the_model():
    x_hu, y, _ = demo_arrays(n_patients=2, slices_per_patient=2, size=SIZE)
    x = unit(x_hu)
    x[5, 3, 3, 0] = np.nan
    inputs = keras.Input((SIZE, SIZE, 1))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match=r"first x\[5\]"):
        diagnose(model, x, y)
