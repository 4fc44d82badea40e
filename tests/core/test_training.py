"""fit / cross_validate on tiny synthetic CT: events, grouped split, cancel, determinism, streaming, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _trainkit import tiny_config, tiny_demo

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import discover
from ctviewer.core.data.splits import TRAIN, VALIDATION
from ctviewer.core.errors import Cancelled, DatasetError, ModelError
from ctviewer.core.events import BatchEnded, EpochEnded, Message, Progress
from ctviewer.core.training.cv import cross_validate
from ctviewer.core.training.fit import fit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    return tiny_demo(tmp_path_factory.mktemp("train"))


def test_fit_sends_events_and_keeps_patients_apart(demo):
    dataset, cache = demo
    events = []
    trained = fit(dataset, tiny_config(), on_event=events.append, cache=cache)

    loading = [e for e in events if isinstance(e, Progress)]
    assert loading[-1].done == loading[-1].total == len(dataset)
    epochs = [e for e in events if isinstance(e, EpochEnded)]
    assert [e.epoch for e in epochs] == [0, 1] and all(e.epochs == 2 for e in epochs)
    assert {"loss", "val_loss", "val_auc", "val_accuracy"} <= set(epochs[-1].logs)
    batches = [e for e in events if isinstance(e, BatchEnded)]
    n_train = len(trained.split.indices(TRAIN))
    assert len(batches) == 2 * -(-n_train // 8)

    split = trained.split
    assert not split.shared_patients()
    y = dataset.y
    assert set(y[split.indices(VALIDATION)]) == {0, 1}
    assert trained.classes == ("no_contrast", "contrast")
    assert 0.0 <= trained.threshold <= 1.0
    assert len(trained.validation_predictions) == len(split.indices(VALIDATION))
    assert trained.history["val_loss"] == [e.logs["val_loss"] for e in epochs]
    assert trained.epochs_run == 2 and not trained.cancelled
    assert trained.dataset.n_images == len(dataset) and len(trained.dataset.content_hash) == 32


def test_cancel_stops_within_one_batch_and_keeps_best_completed_epoch(demo):
    dataset, cache = demo
    config = tiny_config(epochs=4, schedule="constant", monitor="val_loss")
    stop = {"now": False}
    after_stop: list[object] = []

    def on_event(event: object) -> None:
        if stop["now"] and isinstance(event, (BatchEnded, EpochEnded)):
            after_stop.append(event)
        if isinstance(event, BatchEnded) and event.epoch == 1 and event.batch == 0:
            stop["now"] = True

    cancelled = fit(dataset, config, on_event=on_event, should_stop=lambda: stop["now"], cache=cache, stream=True)
    assert cancelled.cancelled and stop["now"]
    assert after_stop == []  # not one more batch, and the cut epoch is not reported as an epoch
    assert cancelled.epochs_run == 1 and cancelled.best_epoch == 0
    assert cancelled.history["loss"] and len(cancelled.history["loss"]) == 1
    # The weights kept are those of the end of epoch 1: the same as a 1-epoch run
    # (deterministic seed; in-memory instead of streamed data: the same batches).
    one_epoch = fit(dataset, config.with_overrides(epochs=1), cache=cache, stream=False)
    assert cancelled.model_id == one_epoch.model_id
    for a, b in zip(cancelled.model.get_weights(), one_epoch.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_cancel_while_loading_raises_and_cancel_at_epoch_start_stops_after_one_batch(demo):
    dataset, cache = demo
    with pytest.raises(Cancelled, match="loading"):
        fit(dataset, tiny_config(), should_stop=lambda: True, cache=cache)

    loaded = {"yes": False}
    batches = []

    def on_event(event: object) -> None:
        if isinstance(event, Progress) and event.done == event.total:
            loaded["yes"] = True
        if isinstance(event, BatchEnded):
            batches.append(event)

    trained = fit(dataset, tiny_config(epochs=3), on_event=on_event, should_stop=lambda: loaded["yes"], cache=cache)
    assert trained.cancelled and trained.epochs_run == 0 and trained.best_epoch is None
    assert len(batches) <= 1  # Keras runs the batch it already started, no more


def test_keras_validation_split_is_honoured_to_reproduce_the_mistake(demo):
    dataset, cache = demo
    events = []
    trained = fit(dataset, tiny_config(epochs=1, keras_validation_split=0.25, shuffle_training_data=False),
                  on_event=events.append, cache=cache)
    assert trained.split.method == "keras-tail"
    val = trained.split.indices(VALIDATION)
    assert list(val) == list(range(len(dataset) - len(val), len(dataset)))
    assert set(dataset.y[val]) == {0}  # folder order: the tail is all no_contrast
    assert any("one class" in n for n in trained.notes)
    assert any(isinstance(e, Message) and e.level == "warning" for e in events)


def _png_dataset(folder: Path) -> Path:
    """PNG images of mixed sizes (non-square too) in two class folders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    shapes = [(40, 40), (64, 48), (30, 50), (56, 56), (33, 33)]
    for label, level in (("a", 60), ("b", 180)):
        (folder / label).mkdir(parents=True)
        for i in range(6):
            h, w = shapes[i % len(shapes)]
            pixels = np.clip(rng.normal(level, 20, (h, w)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / label / f"img{i}.png")
    return folder


def test_mixed_image_sizes_are_resized_to_the_input(tmp_path: Path):
    cache = Cache(tmp_path / "cache")
    dataset = discover(_png_dataset(tmp_path / "png"), positive="b", cache=cache)
    trained = fit(dataset, tiny_config(epochs=1, window="minmax", model="seed"), cache=cache)
    assert trained.model.input_shape == (None, 32, 32, 1)
    assert trained.epochs_run == 1


def test_bad_input_gives_clear_errors(demo, tmp_path: Path):
    dataset, cache = demo
    one_class = dataset.subset([i for i, it in enumerate(dataset.items) if it.label == "contrast"])
    with pytest.raises(DatasetError, match="one class"):
        fit(one_class, tiny_config(), cache=cache)
    three = dataset.subset([0, 1, len(dataset) - 1])
    with pytest.raises(DatasetError, match="too few|patients"):
        fit(three, tiny_config(), cache=cache)
    with pytest.raises(ModelError, match="unknown model 'resnet9000'"):
        fit(dataset, tiny_config(model="resnet9000"), cache=cache)
    with pytest.raises(ModelError, match="unknown window"):
        fit(dataset, tiny_config(window="sunset"), cache=cache)
    with pytest.raises(DatasetError, match="patients"):
        cross_validate(dataset, tiny_config(), folds=6, cache=cache)


def test_cross_validation_predicts_every_image_out_of_fold(demo):
    dataset, cache = demo
    events = []
    result = cross_validate(dataset, tiny_config(epochs=1), folds=3, on_event=events.append, cache=cache,
                            keep_models=True)
    pred = result.predictions
    assert pred.paths == dataset.paths
    assert np.all(np.isfinite(pred.probs)) and np.all((pred.probs >= 0) & (pred.probs <= 1))
    assert list(pred.folds) == list(result.folds.fold_of)
    assert sorted({e.fold for e in events if isinstance(e, EpochEnded)}) == [0, 1, 2]
    assert result.metrics.n == len(dataset)
    assert len(result.fold_thresholds) == 3 and result.completed_folds == 3 and not result.cancelled
    # The ensemble's threshold: Youden's J on the pooled out-of-fold predictions of every image,
    # and every image is called at it (the calls the card's expected performance counts).
    from ctviewer.core.metrics.thresholds import choose_threshold

    assert pred.threshold == result.threshold == choose_threshold(pred.y_true, pred.probs, "youden")
    assert pred.row_thresholds is None and result.metrics.threshold == result.threshold
    assert [c.rule for c in result.rule_checks] == ["pooled out-of-fold youden", "median of fold thresholds",
                                                    "fixed 0.5"]
    # Each fold model never saw its test patients (training part or inner validation).
    for k, member in enumerate(result.models):
        trained_on = set(member.split.patients)
        tested = set(np.asarray(result.folds.patients)[result.folds.test_indices(k)])
        assert not trained_on & tested
    extra = json.loads(json.dumps(result.to_json_extra()))
    assert extra["folds"] == 3 and len(extra["fold_metrics"]) == 3
    # The ensemble averages the fold models.
    from ctviewer.core.model.inference import predict

    ens = predict(result.ensemble, dataset, cache=cache)
    members = np.mean([predict(m, dataset, cache=cache).probs for m in result.models], axis=0)
    np.testing.assert_allclose(ens.probs, members, atol=1e-6)
    # Not the threshold the ensemble's own (in-sample) predictions of these images would give.
    assert result.ensemble.threshold == result.threshold
    assert choose_threshold(ens.y_true, ens.probs, "youden") != result.threshold
    # The members' spread is the uncertainty of each image.
    member_probs = np.stack([predict(m, dataset, cache=cache).probs for m in result.models])
    np.testing.assert_allclose(ens.uncertainty, member_probs.std(axis=0), atol=1e-6)
    assert ens.in_training is not None and ens.in_training.all()


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys, tempfile
    from pathlib import Path
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[1])
    from _trainkit import tiny_config, tiny_demo
    from ctviewer.core.training.fit import fit
    from ctviewer.core.model.inference import predict
    dataset, cache = tiny_demo(Path(tempfile.mkdtemp()), n_patients=3)
    strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    trained = fit(dataset, tiny_config(epochs=1), cache=cache, strategy=strategy)
    pred = predict(trained, dataset, cache=cache)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "epochs": trained.epochs_run,
                      "n": len(pred), "finite": bool((pred.probs == pred.probs).all()),
                      "var_type": type(trained.model.trainable_variables[0].value).__name__,
                      "model_replicas": trained.model.distribute_strategy.num_replicas_in_sync}))
    """
)


def test_mirrored_strategy_on_two_logical_cpus(tmp_path: Path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    env = {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "CTVIEWER_CACHE_DIR": str(tmp_path / "c"),
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, str(script), str(Path(__file__).parent)], capture_output=True, text=True,
                         env=env, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["epochs"] == 1 and result["finite"] and result["n"] == 12
    assert result["model_replicas"] == 2 and "Mirrored" in result["var_type"]


def test_large_sets_stream_from_the_cache_files(demo, monkeypatch: pytest.MonkeyPatch):
    """Above the in-memory limit nothing is stacked: batches are read from the memory-mapped .npy files."""
    from ctviewer.core.data.imaging import Preprocessing
    from ctviewer.core.training import pipeline as training

    dataset, cache = demo
    prep = Preprocessing("wide", 32, "pad")
    monkeypatch.setattr(training, "IN_MEMORY_LIMIT_BYTES", 1000)
    images = training._load_images(dataset, prep, cache, None, None, stream=None)
    assert images.stacked is None and len(images.files) == len(dataset)
    y = dataset.y.astype(np.int32)
    batches = list(training.make_tf_dataset(images, np.arange(len(dataset)), y, batch_size=7))
    assert [len(b[1]) for b in batches] == [7, 7, 6]
    first = np.asarray(batches[0][0])[..., 0]
    np.testing.assert_array_equal(first, np.stack([cache.array(p, prep) for p in dataset.paths[:7]]))
    monkeypatch.setattr(training, "IN_MEMORY_LIMIT_BYTES", 10**9)
    assert training._load_images(dataset, prep, cache, None, None, stream=None).stacked is not None
