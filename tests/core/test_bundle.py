"""Model bundle: bit-identical round trip, a card that says everything, refusal of anything unsafe."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _trainkit import tiny_config, tiny_demo

from ctviewer.core.data.splits import Split
from ctviewer.core.errors import ModelError
from ctviewer.core.model.bundle import CARD_FILE, MODEL_FILE, SPLIT_FILE, load_bundle, read_card, save_bundle
from ctviewer.core.model.ensemble import Ensemble
from ctviewer.core.model.inference import predict
from ctviewer.core.training.fit import fit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained_set(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("bundle")
    dataset, cache = tiny_demo(folder, n_patients=4, slices=2)
    trained = fit(dataset, tiny_config(epochs=1), cache=cache)
    bundle_dir = save_bundle(trained, folder / "model")
    return trained, dataset, cache, bundle_dir


def _rewrite_card(bundle_dir: Path, **changes: object) -> None:
    card = json.loads((bundle_dir / CARD_FILE).read_text())
    for key, value in changes.items():
        target = card
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    (bundle_dir / CARD_FILE).write_text(json.dumps(card))


def _copy(bundle_dir: Path, tmp_path: Path, name: str = "copy") -> Path:
    return Path(shutil.copytree(bundle_dir, tmp_path / name))


def test_round_trip_predictions_are_bit_identical(trained_set):
    trained, dataset, cache, bundle_dir = trained_set
    bundle = load_bundle(bundle_dir)
    before = predict(trained, dataset, cache=cache)
    after = predict(bundle, dataset, cache=cache)
    np.testing.assert_array_equal(before.probs, after.probs)
    np.testing.assert_array_equal(predict(trained, dataset, tta=True, cache=cache).probs,
                                  predict(bundle, dataset, tta=True, cache=cache).probs)
    assert after.threshold == trained.threshold and after.classes == trained.classes
    assert after.model_id == trained.model_id == bundle.model_id
    for a, b in zip(trained.model.get_weights(), bundle.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_card_says_everything_needed(trained_set):
    trained, dataset, _, bundle_dir = trained_set
    card = json.loads((bundle_dir / CARD_FILE).read_text())
    assert card["classes"] == ["no_contrast", "contrast"] and card["positive"] == "contrast"
    assert card["preprocessing"]["window"] == "wide" and card["preprocessing"]["size"] == 32
    assert card["preprocessing"]["resize"] == "pad"
    assert card["threshold"] == trained.threshold and card["threshold_rule"] == "youden"
    assert card["training"]["model"] == "default" and card["seed"] == 0
    assert card["dataset"]["n_images"] == len(dataset) and card["dataset"]["content_hash"] == trained.dataset.content_hash
    assert card["dataset"]["class_counts"] == {"contrast": 8, "no_contrast": 8}
    assert {"tensorflow", "keras", "numpy", "ctviewer"} <= set(card["versions"])
    assert "validation" in card["metrics"] and "auc" in card["metrics"]["validation"]
    assert card["model_id"] == trained.model_id and card["history"]["loss"]
    split = Split.from_json_dict(json.loads((bundle_dir / SPLIT_FILE).read_text()))
    assert split == trained.split


def test_dataset_hash_ignores_order_but_not_content(trained_set):
    from ctviewer.core.model.provenance import dataset_content_hash

    _, dataset, _, _ = trained_set
    reversed_ds = dataclasses.replace(dataset, items=list(reversed(dataset.items)))
    assert dataset_content_hash(reversed_ds) == dataset_content_hash(dataset)
    assert dataset_content_hash(dataset.subset(range(len(dataset) - 1))) != dataset_content_hash(dataset)


def test_read_card_does_not_import_tensorflow(trained_set):
    _, _, _, bundle_dir = trained_set
    code = (f"import sys; from ctviewer.core.model.bundle import read_card; c = read_card({str(bundle_dir)!r}); "
            "print(c.positive, c.preprocessing.size, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["contrast", "32", "False"]


def test_refuses_foreign_or_plain_model_files(trained_set, tmp_path: Path):
    trained = trained_set[0]
    plain = tmp_path / "plain.keras"
    trained.model.save(plain)
    with pytest.raises(ModelError, match="is a file, not a ctviewer model bundle"):
        load_bundle(plain)
    folder = tmp_path / "just_model"
    folder.mkdir()
    shutil.copy(plain, folder / MODEL_FILE)
    with pytest.raises(ModelError, match="no model_card.json"):
        load_bundle(folder)
    with pytest.raises(ModelError, match="no such"):
        load_bundle(tmp_path / "missing")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"preprocessing.window": "sunset"}, "window 'sunset' is unknown"),
        ({"preprocessing.resize": "squash"}, "resize mode 'squash' is unknown"),
        ({"preprocessing.size": 64}, "does not match the card's 64x64"),
        ({"format_version": 99}, "newer than this ctviewer"),
        ({"format": "something-else"}, "not a ctviewer model card"),
        ({"threshold": 7.0}, "not a probability"),
        ({"model_file_sha256": "0" * 64}, "modified or damaged"),
    ],
)
def test_refuses_a_card_it_cannot_honour(trained_set, tmp_path: Path, change: dict, message: str):
    _, _, _, bundle_dir = trained_set
    copy = _copy(bundle_dir, tmp_path)
    _rewrite_card(copy, **change)
    with pytest.raises(ModelError, match=message):
        load_bundle(copy)


def _resign(bundle_dir: Path) -> None:
    """Update the card's model hash after tampering, so only the content checks can object."""
    import hashlib

    digest = hashlib.sha256((bundle_dir / MODEL_FILE).read_bytes()).hexdigest()
    _rewrite_card(bundle_dir, model_file_sha256=digest)


def test_refuses_pickles_in_the_archive(trained_set, tmp_path: Path):
    _, _, _, bundle_dir = trained_set
    copy = _copy(bundle_dir, tmp_path)
    with zipfile.ZipFile(copy / MODEL_FILE, "a") as archive:
        archive.writestr("payload.pkl", b"\x80\x04K\x01.")
    _resign(copy)
    with pytest.raises(ModelError, match="unexpected content.*payload.pkl"):
        load_bundle(copy)


def test_refuses_a_lambda_layer_in_safe_mode(trained_set, tmp_path: Path):
    import keras

    trained, _, _, _ = trained_set
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    unsafe = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    folder = save_bundle(dataclasses.replace(trained, model=unsafe), tmp_path / "unsafe")
    with pytest.raises(ModelError, match="cannot be loaded safely.*Lambda"):
        load_bundle(folder)


def test_refuses_a_legacy_hdf5_model(trained_set, tmp_path: Path):
    _, _, _, bundle_dir = trained_set
    copy = _copy(bundle_dir, tmp_path)
    (copy / MODEL_FILE).write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    _resign(copy)
    with pytest.raises(ModelError, match="not a Keras v3"):
        load_bundle(copy)


def test_save_is_atomic_replaces_bundles_and_refuses_other_folders(trained_set, tmp_path: Path):
    trained, _, _, bundle_dir = trained_set
    target = _copy(bundle_dir, tmp_path, "replace_me")
    _rewrite_card(target, threshold=0.123)
    save_bundle(trained, target)
    assert read_card(target).threshold == trained.threshold
    assert sorted(p.name for p in tmp_path.iterdir()) == ["replace_me"]  # no temp folders left
    other = tmp_path / "documents"
    other.mkdir()
    (other / "thesis.txt").write_text("precious")
    with pytest.raises(ModelError, match="not a ctviewer model bundle"):
        save_bundle(trained, other)
    assert (other / "thesis.txt").read_text() == "precious"


def test_ensemble_bundle_round_trip(trained_set, tmp_path: Path):
    trained, dataset, cache, _ = trained_set
    other = fit(dataset, tiny_config(epochs=1, seed=5), cache=cache)
    ensemble = Ensemble.from_trained([trained, other])
    folder = save_bundle(ensemble, tmp_path / "ensemble")
    card = read_card(folder)
    assert card.kind == "ensemble" and len(card.raw["members"]) == 2
    assert card.threshold == pytest.approx(np.median([trained.threshold, other.threshold]))
    loaded = load_bundle(folder)
    np.testing.assert_array_equal(predict(ensemble, dataset, cache=cache).probs,
                                  predict(loaded, dataset, cache=cache).probs)
    mean = (predict(trained, dataset, cache=cache).probs + predict(other, dataset, cache=cache).probs) / 2
    np.testing.assert_allclose(predict(loaded, dataset, cache=cache).probs, mean, atol=1e-6)

    # Grad-CAM of an ensemble: the normalised mean of its members' maps.
    from ctviewer.core.explain.gradcam import ensemble_members, grad_cam

    image = np.asarray(cache.array(dataset.paths[0], trained.preprocessing))
    assert len(ensemble_members(loaded.model)) == 2
    heat = grad_cam(loaded, image)
    maps = np.mean([grad_cam(trained, image), grad_cam(other, image)], axis=0)
    np.testing.assert_allclose(heat, maps / maps.max(), atol=1e-5)


def test_a_loaded_bundle_can_be_saved_again(trained_set, tmp_path: Path):
    _, dataset, cache, bundle_dir = trained_set
    loaded = load_bundle(bundle_dir)
    assert save_bundle(loaded, bundle_dir) == bundle_dir  # onto itself: untouched
    again = load_bundle(save_bundle(loaded, tmp_path / "elsewhere"))
    assert again.card.raw == loaded.card.raw and (tmp_path / "elsewhere" / SPLIT_FILE).is_file()
    np.testing.assert_array_equal(predict(again, dataset, cache=cache).probs, predict(loaded, dataset, cache=cache).probs)
