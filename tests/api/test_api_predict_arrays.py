"""`predict_per_sample` is stable; `from_arrays` makes a Dataset the recipes train on; the API imports lazily."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ctviewer.core.data.demo import demo_arrays

SIZE = 32


def test_api_imports_no_qt_and_tensorflow_only_when_a_model_runs():
    code = (
        "import sys, numpy as np\n"
        "import ctviewer.api as api\n"
        "heavy = lambda: sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'PySide6', "
        "'pyqtgraph', 'sklearn'})\n"
        "seen = [heavy()]\n"
        "y = np.array([1] * 6 + [0] * 6)\n"
        "api.evaluate(y, np.linspace(0, 1, 12))\n"
        "api.diagnose(None, np.zeros((12, 8, 8)), y, validation_split=0.25)\n"
        "seen.append(heavy())\n"
        "import keras\n"
        "inputs = keras.Input((8, 8, 1))\n"
        "m = keras.Model(inputs, keras.layers.Dense(1, activation='sigmoid')(keras.layers.Flatten()(inputs)))\n"
        "api.predict_per_sample(m, np.zeros((3, 8, 8, 1)))\n"
        "seen.append(heavy())\n"
        "print(json.dumps(seen))\n"
    ).replace("print(json", "import json; print(json")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen[0] == [] and seen[1] == [], f"importing/using the data-only API loaded {seen}"
    assert "tensorflow" in seen[2] and "PySide6" not in seen[2]


@pytest.fixture(scope="module")
def bn_model():
    keras = pytest.importorskip("keras")
    from ctviewer.core.model.recipes import build_seed

    keras.utils.set_random_seed(0)
    model = build_seed(SIZE)
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    x_hu, y, _ = demo_arrays(n_patients=3, slices_per_patient=2, size=SIZE)
    x = np.clip((x_hu + 1000) / 2000, 0, 1)[..., None]
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)  # moving statistics differ from any batch's own
    return model, x


def test_predict_per_sample_is_the_same_for_every_batch_size_and_call(bn_model):
    from ctviewer.api import predict_per_sample

    model, x = bn_model
    x = np.concatenate([x, x[::-1], x[:5]])  # 29 rows: a ragged last batch for every size below
    by_size = {bs: predict_per_sample(model, x, batch_size=bs) for bs in (1, 5, 8, 64)}
    for bs, probs in by_size.items():
        assert probs.shape == (len(x),) and np.isfinite(probs).all()
        assert np.abs(probs - by_size[1]).max() <= 1e-6, f"batch size {bs}"
    assert np.array_equal(predict_per_sample(model, x, batch_size=8), by_size[8])  # bit-identical on repeat
    # The same rows alone, as the first rows of a batch, or in grey (N, H, W) form: the same numbers.
    assert np.array_equal(predict_per_sample(model, x[:3], batch_size=8), by_size[8][:3])
    assert np.array_equal(predict_per_sample(model, x[..., 0], batch_size=8), by_size[8])
    # What the question did instead: training mode gives other numbers, call after call.
    import keras

    drift = np.asarray(keras.ops.convert_to_numpy(model(x[:8], training=True)))[:, 1]
    assert np.abs(drift - by_size[8][:8]).max() > 0.05


def test_predict_per_sample_guards_the_input(bn_model):
    from ctviewer.api import predict_per_sample
    from ctviewer.api.prediction import InputScaleWarning
    from ctviewer.core.errors import ModelError

    model, x = bn_model
    with pytest.warns(InputScaleWarning, match="raw Hounsfield units"):
        predict_per_sample(model, x * 2000 - 1000)
    bad = x.copy()
    bad[2, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"first x\[2\]"):
        predict_per_sample(model, bad)
    with pytest.raises(ModelError, match="but the model takes"):
        predict_per_sample(model, x[:, :16, :16])


def test_diagnose_names_unscaled_input_and_not_scaled_input(bn_model):
    from ctviewer.api import diagnose

    model, x = bn_model
    y = np.array([1] * 6 + [0] * 6)
    [raw] = diagnose(model, x * 2000 - 1000, y, baseline=False).by_code("unnormalised-input")
    assert raw.evidence["detected_scale"] == "hu" and "-1000" in raw.message
    assert "unnormalised-input" not in diagnose(model, x, y, baseline=False).codes


def test_from_arrays_writes_a_dataset_in_array_order(tmp_path):
    from ctviewer.api import from_arrays
    from ctviewer.core.data.dataset import load_stack
    from ctviewer.core.data.imaging import Preprocessing

    x_hu, y, patients = demo_arrays(n_patients=3, slices_per_patient=2, size=SIZE)
    ds = from_arrays(x_hu, y, patients, classes=("no_contrast", "contrast"))
    assert len(ds) == 12 and ds.classes == ("contrast", "no_contrast") and ds.positive == "contrast"
    assert ds.y.tolist() == y.tolist() and ds.patients.tolist() == patients.tolist()
    assert all(it.is_hu and it.patient_source == "labels" for it in ds.items)
    # HU arrays in the "wide" window give what a DICOM of the same slice gives: (HU + 1000) / 2000.
    stack = load_stack(ds, Preprocessing("wide", SIZE))
    assert np.allclose(stack, np.clip((x_hu + 1000) / 2000, 0, 1), atol=1e-6)
    again = from_arrays(x_hu, y, patients, classes=("no_contrast", "contrast"))
    assert again.source == ds.source  # named by content: the same arrays reuse the same folder
    assert from_arrays(x_hu + 1, y, patients, classes=("no_contrast", "contrast")).source != ds.source
    unit = np.clip((x_hu + 1000) / 2000, 0, 1)
    unlabelled = from_arrays(unit, folder=tmp_path / "new")
    assert not unlabelled.is_labelled and not unlabelled.items[0].is_hu
    # [0, 1] arrays of a known HU window go back to HU: the recipes then see what the DICOMs give.
    windowed = from_arrays(unit, y, patients, window="wide")
    assert windowed.items[0].is_hu
    assert np.allclose(load_stack(windowed, Preprocessing("wide", SIZE)), unit, atol=1e-5)
    with pytest.raises(ValueError, match="for arrays in \\[0, 1\\]"):
        from_arrays(x_hu, y, window="wide")
    with pytest.raises(ValueError, match="patients has 3 entries for 12 images"):
        from_arrays(x_hu, y, patients[:3])


def test_array_image_files_that_are_bad_are_named(tmp_path):
    from ctviewer.core.data.imaging import load
    from ctviewer.core.errors import ImageReadError

    np.savez(tmp_path / "other.npz", data=np.zeros((4, 4)))
    with pytest.raises(ImageReadError, match="without a 'pixels' array"):
        load(tmp_path / "other.npz")
    np.savez(tmp_path / "cube.npz", pixels=np.zeros((2, 4, 4)))
    with pytest.raises(ImageReadError, match="expected a 2-D image"):
        load(tmp_path / "cube.npz")
    good = (tmp_path / "cube.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        load(tmp_path / "cut.npz")
    np.savez(tmp_path / "obj.npz", pixels=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ImageReadError):
        load(tmp_path / "obj.npz")  # never unpickled


@pytest.mark.slow
def test_cross_validate_and_the_default_recipe_run_on_arrays():
    pytest.importorskip("keras")
    from ctviewer.api import from_arrays
    from ctviewer.core.model.recipes import default_config
    from ctviewer.core.training.cv import cross_validate

    x_hu, y, patients = demo_arrays(n_patients=4, slices_per_patient=2, size=SIZE)
    ds = from_arrays(x_hu, y, patients, classes=("no_contrast", "contrast"))
    config = default_config("default").with_overrides(input_size=SIZE, epochs=1, batch_size=8, patience=5)
    result = cross_validate(ds, config, folds=2)
    assert np.isfinite(result.predictions.probs).all() and len(result.predictions) == len(y)
    # Patient-grouped folds: no patient's slices are in two folds.
    fold_of = np.asarray(result.folds.fold_of)
    assert all(len(set(fold_of[patients == p].tolist())) == 1 for p in set(patients.tolist()))
    assert result.metrics.n == len(y)
