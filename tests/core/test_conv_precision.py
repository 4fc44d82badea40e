"""bfloat16 conv blocks: which layers run in bfloat16, how close they stay to float32, what "auto" picks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
from _trainkit import tiny_config, tiny_demo

from ctviewer.core.errors import ModelError
from ctviewer.core.model import precision
from ctviewer.core.model.bundle import load_bundle, read_card, save_bundle
from ctviewer.core.model.inference import predict
from ctviewer.core.model.recipes import DefaultArchitecture, build_default, build_model, compile_model, config_for
from ctviewer.core.training.fit import fit
from ctviewer.core.training.reuse import CompiledModelPool, copy_variables

SIZE = 32
# Largest |p_float32 - p_bfloat16| measured on models trained 2 epochs at 32 and 64 px, 4 seeds each: 9e-5.
TOLERANCE = 1e-3
CONV_LAYERS = ("conv0", "bn0", "relu0", "pool0", "conv3", "bn3", "relu3", "pool3", "attention_logits")
FLOAT32_LAYERS = ("to_hu", "aug_hu_jitter", "hu_windows", "attention_float32", "attention_masks",
                  "attention_histograms", "hu_histogram", "attention_features", "probabilities")


@pytest.fixture(autouse=True)
def _no_precision_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)


def _images(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.3, 0.7, (n, SIZE, SIZE, 1)).astype(np.float32)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    x[: n // 2, ..., 0] += 0.2 * (((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2) < (SIZE / 5) ** 2)
    return x


def _pair(members: int = 1) -> tuple[keras.Model, keras.Model]:
    """A float32 default model trained two epochs, and a bfloat16 one with its weights."""
    keras.utils.set_random_seed(0)
    arch = replace(DefaultArchitecture(), members=members)
    f32 = build_default(SIZE, arch=arch)
    bf16 = build_default(SIZE, arch=replace(arch, conv_precision="bfloat16"))
    compile_model(f32, tiny_config(), steps_per_epoch=2)
    f32.fit(_images(16), np.arange(16) % 2, epochs=2, batch_size=8, verbose=0)
    copy_variables(f32, bf16)
    return f32, bf16


@pytest.fixture(scope="module")
def pair() -> tuple[keras.Model, keras.Model]:
    return _pair()


def _policy(model: keras.Model, name: str) -> str:
    return model.get_layer(name).dtype_policy.name


def test_only_the_conv_blocks_compute_in_bfloat16(pair) -> None:
    f32, bf16 = pair
    for name in CONV_LAYERS:
        assert _policy(bf16, name) == "mixed_bfloat16", name
        assert bf16.get_layer(name).output.dtype == "bfloat16", name
        assert _policy(f32, name) == "float32", name
    for name in FLOAT32_LAYERS:
        assert _policy(bf16, name) == "float32", name
        assert bf16.get_layer(name).output.dtype == "float32", name
    # bfloat16 arithmetic, float32 weights: the optimizer and the saved file see float32 only.
    assert {v.dtype for v in bf16.weights} == {"float32"}
    assert precision.model_conv_precision(bf16) == "bfloat16"
    assert precision.model_conv_precision(f32) == "float32"


def test_bfloat16_probabilities_stay_close_to_float32(pair) -> None:
    f32, bf16 = pair
    x = _images(8, seed=1)
    p32, p16 = f32.predict(x, verbose=0), bf16.predict(x, verbose=0)
    assert p16.dtype == np.float32
    difference = float(np.abs(p32 - p16).max())
    assert 0.0 < difference < TOLERANCE  # the bfloat16 path really ran, and changed the output only in rounding


def test_bfloat16_predictions_repeat_and_survive_save_load(pair, tmp_path: Path) -> None:
    _, bf16 = pair
    x = _images(6, seed=2)
    first = np.asarray(bf16(x, training=False))
    np.testing.assert_array_equal(first, np.asarray(bf16(x, training=False)))
    bf16.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", compile=False, safe_mode=True)
    for name in CONV_LAYERS:
        assert _policy(loaded, name) == "mixed_bfloat16", name
    assert _policy(loaded, "to_hu") == "float32"
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)), first)


def test_bfloat16_model_trains() -> None:
    keras.utils.set_random_seed(3)
    model = build_default(SIZE, arch=replace(DefaultArchitecture(), members=1, conv_precision="bfloat16"))
    compile_model(model, tiny_config(), steps_per_epoch=2)
    before = np.asarray(model.get_layer("conv0").kernel).copy()
    history = model.fit(_images(16), np.arange(16) % 2, epochs=2, batch_size=8, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert not np.allclose(np.asarray(model.get_layer("conv0").kernel), before)  # gradients reach the first conv


def test_grad_cam_of_a_bfloat16_model_is_a_float32_map(pair) -> None:
    from ctviewer.core.explain.gradcam import grad_cam

    _, bf16 = pair
    heat = grad_cam(bf16, _images(2, seed=4)[0])
    assert heat.dtype == np.float32 and heat.shape == (SIZE, SIZE) and np.all(np.isfinite(heat))


# --------------------------------------------------------------------------- choosing the precision


def _cpu(monkeypatch: pytest.MonkeyPatch, flags: set[str], gpu: bool = False) -> None:
    monkeypatch.setattr(precision, "read_cpu_flags", lambda path=precision.CPUINFO: frozenset(flags))
    monkeypatch.setattr(precision, "gpu_in_use", lambda: gpu)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\nprocessor\t: 1\n"
                       "flags\t\t: fpu sse2 avx512f avx512_bf16\n")
    assert {"avx512f", "avx512_bf16"} <= precision.read_cpu_flags(cpuinfo)
    assert precision.read_cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize(("flags", "gpu", "expected"), [
    ({"avx2", "avx512f"}, False, "float32"),  # no native bfloat16: emulated, slower than float32
    ({"avx2", "avx512f", "avx512_bf16"}, False, "bfloat16"),
    ({"amx_tile", "amx_bf16"}, False, "bfloat16"),
    ({"avx512_bf16"}, True, "float32"),  # a GPU in use keeps today's float32 path
])
def test_auto_follows_the_cpu(monkeypatch: pytest.MonkeyPatch, flags: set[str], gpu: bool, expected: str) -> None:
    _cpu(monkeypatch, flags, gpu)
    assert precision.resolve_precision(config_for("default")) == "float32"  # float32 unless asked for "auto"
    assert precision.resolve_precision(config_for("default", precision="auto")) == expected
    model = build_model(config_for("default", input_size=SIZE, precision="auto"))
    assert precision.model_conv_precision(model) == expected


def test_explicit_precision_environment_and_other_models(monkeypatch: pytest.MonkeyPatch) -> None:
    _cpu(monkeypatch, {"avx2"})
    assert precision.resolve_precision(config_for("default", precision="bfloat16")) == "bfloat16"
    assert precision.resolve_precision(config_for("seed", precision="bfloat16")) == "float32"  # no bf16 path there
    monkeypatch.setenv(precision.PRECISION_ENV, "bfloat16")
    assert precision.resolve_precision(config_for("default", precision="float32")) == "bfloat16"
    monkeypatch.setenv(precision.PRECISION_ENV, "half")
    with pytest.raises(ModelError, match=precision.PRECISION_ENV):
        precision.resolve_precision(config_for("default"))
    monkeypatch.delenv(precision.PRECISION_ENV)
    with pytest.raises(ModelError, match="precision"):
        precision.resolve_precision(config_for("default", precision="float16"))


def test_folds_of_another_precision_do_not_share_a_traced_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf

    _cpu(monkeypatch, {"avx512_bf16"})
    pool, strategy = CompiledModelPool(), tf.distribute.get_strategy()
    config = tiny_config(precision="float32")
    first = pool.model_for(config, 2, strategy)
    assert pool.model_for(replace(config, seed=1), 2, strategy) is first  # same graph: reused
    monkeypatch.setenv(precision.PRECISION_ENV, "bfloat16")  # the same config, built in bfloat16
    other = pool.model_for(config, 2, strategy)
    assert other is not first and precision.model_conv_precision(other) == "bfloat16"
    assert precision.model_conv_precision(first) == "float32"


# --------------------------------------------------------------------------- what training records


@pytest.mark.parametrize(("flags", "expected"), [({"avx2"}, "float32"), ({"avx512_bf16"}, "bfloat16")])
def test_the_card_records_the_precision_that_ran(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 flags: set[str], expected: str) -> None:
    _cpu(monkeypatch, flags)
    dataset, cache = tiny_demo(tmp_path, n_patients=4, slices=2)
    trained = fit(dataset, tiny_config(epochs=1, precision="auto"), cache=cache)
    assert trained.config.precision == expected  # "auto" resolved before it is stored
    bundle_dir = save_bundle(trained, tmp_path / "model")
    card = read_card(bundle_dir)
    assert card.conv_precision == expected and card.raw["training"]["precision"] == expected
    bundle = load_bundle(bundle_dir)
    assert precision.model_conv_precision(bundle.model) == expected
    np.testing.assert_array_equal(predict(trained, dataset, cache=cache).probs,
                                  predict(bundle, dataset, cache=cache).probs)


def test_a_bfloat16_bundle_exports_its_float32_twin_to_onnx(tmp_path: Path) -> None:
    import importlib.util
    import json

    from ctviewer.core.model.export import ARTIFACT_NAMES, CONTRACT_FILE, check_images, export_bundle
    from ctviewer.core.model.export import TOLERANCE as FORMAT_TOLERANCE
    from ctviewer.core.model.inference import predict_arrays

    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("tf2onnx") is None:
        pytest.skip("onnxruntime / tf2onnx not installed")
    import onnxruntime

    dataset, cache = tiny_demo(tmp_path, n_patients=3, slices=2)
    bundle = load_bundle(save_bundle(fit(dataset, tiny_config(epochs=1, precision="bfloat16"), cache=cache),
                                     tmp_path / "model"))
    result = export_bundle(bundle, "onnx", tmp_path / "onnx")
    contract = json.loads((result.folder / CONTRACT_FILE).read_text())
    assert contract["conv_precision"]["bundle"] == "bfloat16" and contract["conv_precision"]["artifact"] == "float32"
    x = check_images(SIZE)
    got = onnxruntime.InferenceSession(str(result.folder / ARTIFACT_NAMES["onnx"])).run(
        ["probability"], {"image": x})[0]
    twin = predict_arrays(precision.float32_twin(bundle.model), x, tta=bundle.tta)
    np.testing.assert_allclose(got, twin, rtol=0, atol=FORMAT_TOLERANCE["onnx"])
    np.testing.assert_allclose(got, predict_arrays(bundle.model, x, tta=bundle.tta), rtol=0, atol=TOLERANCE)
