"""Export for deployment: each format run by its own runtime gives ``ctviewer predict``'s probabilities.

The exports are made once per module (through the CLI) for the default recipe (3 members in one
graph, TTA in the graph) and for the question's ``seed`` network, and every test reads them.
Formats whose runtime is not installed skip (``pip install "ctviewer-cnn[export]"``).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _trainkit import TINY_SIZE, tiny_config, tiny_demo

from ctviewer.cli import main
from ctviewer.core.model.bundle import Bundle, load_bundle, read_card, save_bundle
from ctviewer.core.model.export import (
    ARTIFACT_NAMES,
    TOLERANCE,
    ExportError,
    check_images,
    export_bundle,
    layers_named_in,
)
from ctviewer.core.model.inference import predict, predict_arrays
from ctviewer.core.training.fit import fit

pytestmark = pytest.mark.slow
# Runs predict_example.py (argv[1]) as a script in a fresh process, then says whether anything of
# ctviewer was imported: the exported model and the example must stand alone.
RUN_WITHOUT_CTVIEWER = (
    "import runpy, sys\n"
    "script = sys.argv[1]\n"
    "sys.argv = sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_path(script, run_name='__main__')\n"
    "except SystemExit as exc:\n"
    "    assert not exc.code, exc.code\n"
    "imported = [m for m in sys.modules if m.split('.')[0] == 'ctviewer']\n"
    "print('ctviewer imported: ' + (', '.join(imported) or 'no'))\n"
)
CASES = [(recipe, fmt) for recipe in ("default", "seed") for fmt in ("savedmodel", "onnx", "tflite")]


def _needs(fmt: str) -> None:
    for module in {"onnx": ("tf2onnx", "onnxruntime"), "tflite": ("ai_edge_litert",)}.get(fmt, ()):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} not installed (pip install \"ctviewer-cnn[export]\")")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """recipe -> (bundle folder, dataset, cache): the default recipe and the seed network, tiny, 1 epoch."""
    folder = tmp_path_factory.mktemp("export")
    dataset, cache = tiny_demo(folder, n_patients=3, slices=2)
    from ctviewer.core.model.recipes import config_for

    # float32 conv blocks: an artifact must give ctviewer predict's numbers to the format's tolerance
    # (a bfloat16 bundle's ONNX/LiteRT artifact is its float32 twin: tests/core/test_conv_precision.py).
    configs = {"default": tiny_config(epochs=1, precision="float32"),
               "seed": config_for("seed", input_size=TINY_SIZE, epochs=1, batch_size=4)}
    return {name: (save_bundle(fit(dataset, config, cache=cache), folder / name), dataset, cache)
            for name, config in configs.items()}


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory: pytest.TempPathFactory):
    """(recipe, format) -> export folder, made on first use with ``ctviewer export``."""
    folder = tmp_path_factory.mktemp("exports")
    made: dict[tuple[str, str], Path] = {}

    def get(recipe: str, fmt: str) -> Path:
        _needs(fmt)
        if (recipe, fmt) not in made:
            out = folder / f"{recipe}_{fmt}"
            assert main(["export", str(trained[recipe][0]), "--format", fmt, "--out", str(out), "-q"]) == 0
            made[recipe, fmt] = out
        return made[recipe, fmt]

    return get


def run_with_own_runtime(fmt: str, folder: Path, x: np.ndarray) -> np.ndarray:
    """The artifact run by its runtime alone, by the contract's names (no ctviewer code)."""
    path = str(folder / ARTIFACT_NAMES[fmt])
    if fmt == "onnx":
        import onnxruntime

        return onnxruntime.InferenceSession(path).run(["probability"], {"image": x})[0]
    if fmt == "savedmodel":
        import tensorflow as tf

        return tf.saved_model.load(path).signatures["serving_default"](image=tf.constant(x))["probability"].numpy()
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=path).get_signature_runner("serving_default")(image=x)["probability"]


@pytest.mark.parametrize(("recipe", "fmt"), CASES)
def test_each_format_gives_ctviewer_predict_probabilities(trained, exported, recipe: str, fmt: str):
    bundle_dir, dataset, cache = trained[recipe]
    out = exported(recipe, fmt)
    bundle = load_bundle(bundle_dir)
    x = np.stack([np.asarray(cache.array(p, bundle.preprocessing), np.float32) for p in dataset.paths])[..., None]
    expected = predict(bundle, dataset, cache=cache).probs  # ctviewer predict: the recipe's TTA included
    got = np.asarray(run_with_own_runtime(fmt, out, x), np.float64)
    assert got.shape == (len(dataset),)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE[fmt])
    assert TOLERANCE[fmt] == (1e-4 if fmt == "tflite" else 1e-5)
    # The TTA of the recipe is in the graph: without it the numbers would be those of the plain model.
    tta = recipe == "default"
    if tta:
        # On images whose halves differ (left half air), mirror TTA moves a one-epoch model's output
        # well beyond the tolerance, so a graph without it would fail here.
        lopsided = x.copy()
        lopsided[:, :, : x.shape[2] // 2] = 0.0
        with_tta = predict_arrays(bundle.model, lopsided, tta=True)
        plain = predict_arrays(bundle.model, lopsided, tta=False)
        assert np.max(np.abs(plain - with_tta)) > 10 * TOLERANCE[fmt], "TTA made no difference: test is blind"
        np.testing.assert_allclose(np.asarray(run_with_own_runtime(fmt, out, lopsided), np.float64), with_tta,
                                   rtol=0, atol=TOLERANCE[fmt])

    contract = json.loads((out / "preprocessing.json").read_text())
    card = read_card(bundle_dir)
    assert contract["input"] == {"name": "image", "dtype": "float32", "shape": [None, TINY_SIZE, TINY_SIZE, 1],
                                 "range": [0.0, 1.0], "layout": "NHWC, one grey channel"}
    assert contract["output"]["name"] == "probability" and contract["output"]["shape"] == [None]
    assert contract["test_time_augmentation"]["in_graph"] is tta
    assert (contract["classes"], contract["positive"]) == (list(card.classes), card.positive)
    assert contract["threshold"] == card.threshold and contract["model_id"] == card.model_id
    assert contract["window"]["hu_images"] == {"rule": "fixed", "center": 0.0, "width": 2000.0}
    assert contract["window"]["other_images"]["percentiles"] == [0.5, 99.5]
    assert contract["resize"]["mode"] == card.preprocessing.resize and contract["resize"]["size"] == TINY_SIZE
    assert json.loads((out / "model_card.json").read_text())["model_id"] == card.model_id


def _test_images(folder: Path) -> list[Path]:
    """pydicom's bundled CT (HU, 128 px), the same as MONOCHROME1, non-square 16-bit grey and RGB PNGs."""
    import pydicom
    from PIL import Image
    from pydicom.data import get_testdata_file

    folder.mkdir(exist_ok=True)
    ct = Path(get_testdata_file("CT_small.dcm"))
    ds = pydicom.dcmread(ct)
    ds.PhotometricInterpretation = "MONOCHROME1"
    mono1 = folder / "ct_monochrome1.dcm"
    ds.save_as(mono1)
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:40, 0:56]
    png = folder / "slice.png"
    pixels = 20000 + 15000 * np.exp(-((xx - 28) ** 2 + (yy - 20) ** 2) / 300) + rng.normal(0, 500, (40, 56))
    Image.fromarray(pixels.astype(np.uint16)).save(png)
    rgb = folder / "photo.png"
    colour = np.stack([pixels / 160, pixels / 200, pixels / 250], axis=-1).clip(0, 255).astype(np.uint8)
    Image.fromarray(np.ascontiguousarray(colour[:, :48])).save(rgb)
    return [ct, mono1, png, rgb]


def _ctviewer_predict(bundle_dir: Path, files: list[Path], csv_path: Path) -> dict[str, float]:
    assert main(["predict", str(bundle_dir), *map(str, files), "--csv", str(csv_path), "-q"]) == 0
    with open(csv_path, encoding="utf-8") as fh:
        return {Path(row["path"]).name: float(row["prob"]) for row in csv.DictReader(fh)}


@pytest.mark.parametrize(("recipe", "fmt"), [("default", "onnx"), ("default", "savedmodel"),
                                              ("default", "tflite"), ("seed", "onnx")])
def test_predict_example_in_a_process_without_ctviewer_matches_ctviewer_predict(trained, exported, tmp_path: Path,
                                                                   recipe: str, fmt: str):
    out = exported(recipe, fmt)
    files = _test_images(tmp_path / "images")
    expected = _ctviewer_predict(trained[recipe][0], files, tmp_path / "pred.csv")
    assert len(expected) == 4
    assert abs(expected["CT_small.dcm"] - expected["ct_monochrome1.dcm"]) > 1e-6, "inversion changed nothing"
    result = subprocess.run([sys.executable, "-c", RUN_WITHOUT_CTVIEWER, str(out / "predict_example.py"),
                             *map(str, files)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert rows[-1] == ["ctviewer imported: no"]
    rows = rows[:-1]
    got = {Path(path).name: float(prob) for path, prob, _ in rows}
    for name, prob in expected.items():
        assert got[name] == pytest.approx(prob, abs=TOLERANCE[fmt]), name
    threshold = read_card(trained[recipe][0]).threshold
    negative, positive = read_card(trained[recipe][0]).classes
    assert [label for *_, label in rows] == [positive if float(p) >= threshold else negative for _, p, _ in rows]


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_an_unsupported_op_is_named_with_its_layer_and_nothing_is_written(trained, tmp_path: Path, fmt: str):
    _needs(fmt)
    import keras

    class AlwaysNoisy(keras.layers.Layer):
        """Random noise at inference too: neither ONNX nor TFLite's built-ins have TensorFlow's stateless generator."""

        def call(self, x):
            return x + 0.0 * keras.random.uniform(keras.ops.shape(x), seed=1)

    bundle_dir = trained["seed"][0]
    real = load_bundle(bundle_dir)
    image = keras.Input((TINY_SIZE, TINY_SIZE, 1), name="image")
    model = keras.Model(image, real.model(AlwaysNoisy(name="noisy_input")(image)))
    out = tmp_path / "export"
    with pytest.raises(ExportError, match=rf"(?s)cannot export to {fmt}.*StatelessRandomUniformV2.*noisy_input"):
        export_bundle(Bundle(model=model, card=real.card, folder=bundle_dir), fmt, out)
    assert not out.exists()
    assert not list(tmp_path.iterdir()), "a temporary folder was left behind"


def test_an_export_that_does_not_reproduce_ctviewer_is_not_written(trained, tmp_path: Path, monkeypatch):
    from ctviewer.core.model import export as export_module

    real_runtime = export_module.load_runtime

    def off_by_a_little(fmt, path):
        run = real_runtime(fmt, path)
        return lambda x: run(x) + 2e-5

    monkeypatch.setattr(export_module, "load_runtime", off_by_a_little)
    out = tmp_path / "export"
    with pytest.raises(ExportError, match=r"differs from ctviewer's probability by 2\.\d+e-05"):
        export_bundle(trained["seed"][0], "savedmodel", out)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_refuses_a_folder_that_is_not_an_export_and_a_missing_runtime(trained, tmp_path: Path, monkeypatch, capsys):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["export", str(trained["seed"][0]), "--format", "savedmodel", "--out", str(other), "-q"]) == 1
    assert "is not a ctviewer export" in capsys.readouterr().err
    assert (other / "keep.txt").read_text() == "mine"

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tf2onnx" else real_find_spec(name, *a))
    with pytest.raises(ExportError, match=r'onnx export needs tf2onnx.*pip install "ctviewer-cnn\[export\]"'):
        export_bundle(trained["seed"][0], "onnx", tmp_path / "x")
    with pytest.raises(ExportError, match="unknown export format 'pt'"):
        export_bundle(trained["seed"][0], "pt", tmp_path / "x")


def test_an_unsaved_ensemble_exports_as_one_averaging_graph(trained, tmp_path: Path):
    """An ensemble (here of two seed networks) is one graph averaging its members; TTA on request."""
    from ctviewer.core.model.ensemble import Ensemble
    from ctviewer.core.model.recipes import config_for

    _, dataset, cache = trained["seed"]
    members = [fit(dataset, config_for("seed", input_size=TINY_SIZE, epochs=1, batch_size=4, seed=seed), cache=cache)
               for seed in (1, 2)]
    ensemble = Ensemble.from_trained(members)
    result = export_bundle(ensemble, "savedmodel", tmp_path / "ensemble", tta=True)
    assert result.tta and result.max_abs_difference <= 1e-5
    x = check_images(TINY_SIZE, count=4, seed=1)
    got = run_with_own_runtime("savedmodel", result.folder, x)
    mean = np.mean([predict_arrays(m.model, x, tta=True) for m in members], axis=0)
    np.testing.assert_allclose(got, mean, rtol=0, atol=1e-5)
    assert np.max(np.abs(mean - predict_arrays(members[0].model, x, tta=True))) > 1e-4, "members are alike"
    contract = json.loads((result.folder / "preprocessing.json").read_text())
    assert contract["kind"] == "ensemble" and contract["test_time_augmentation"]["in_graph"] is True


def test_layers_are_found_in_converter_paths():
    names = {"m0_aug_flip", "conv0", "probabilities"}
    assert layers_named_in("export_1/ctviewer_default_1/m0_aug_flip_1/stateless_random_uniform/Op", names) == [
        "m0_aug_flip"]
    assert layers_named_in("loc(fused['conv0/Conv2D@__inference'])", names) == ["conv0"]
