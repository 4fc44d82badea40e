"""CompiledModelPool: a fold trained on the reused (already traced) model equals a fold trained afresh."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from _trainkit import tiny_config, tiny_demo  # noqa: E402

from ctviewer.core.model.inference import predict  # noqa: E402
from ctviewer.core.training.fit import fit  # noqa: E402
from ctviewer.core.training.reuse import CompiledModelPool  # noqa: E402


def test_a_reused_model_trains_as_a_fresh_one_with_another_seed_and_length(tmp_path: Path) -> None:
    dataset, cache = tiny_demo(tmp_path, n_patients=6)
    config = tiny_config(validation_fraction=0.0)
    first_part = dataset.subset(list(range(0, len(dataset), 2)) + [1])  # other size: other steps per epoch
    second = config.with_overrides(seed=3)

    pool = CompiledModelPool()
    warm = fit(first_part, config, cache=cache, models=pool)
    traced_model = warm.model
    reused = fit(dataset, second, cache=cache, models=pool)
    assert reused.model is traced_model, "the pool hands out the same compiled model"
    reused_probs = predict(reused, dataset, cache=cache).probs
    reused_history = {k: list(v) for k, v in reused.history.items()}
    detached = pool.detach(reused.model)
    assert detached is not reused.model

    fresh = fit(dataset, second, cache=cache)
    fresh_probs = predict(fresh, dataset, cache=cache).probs
    np.testing.assert_allclose(reused_probs, fresh_probs, rtol=0, atol=1e-5)
    for key, values in fresh.history.items():
        np.testing.assert_allclose(reused_history[key], values, rtol=1e-4, atol=1e-5, err_msg=key)
    # The detached copy keeps the fold's weights after the pool moves on to another fold.
    fit(first_part, config.with_overrides(seed=9), cache=cache, models=pool)
    reused.model = detached
    np.testing.assert_allclose(predict(reused, dataset, cache=cache).probs, reused_probs, rtol=0, atol=1e-6)


def test_another_architecture_gets_its_own_model(tmp_path: Path) -> None:
    dataset, cache = tiny_demo(tmp_path, n_patients=4)
    pool = CompiledModelPool()
    a = fit(dataset, tiny_config(epochs=1, validation_fraction=0.0), cache=cache, models=pool)
    b = fit(dataset, tiny_config(epochs=1, validation_fraction=0.0, input_size=40), cache=cache, models=pool)
    assert a.model is not b.model and b.model.input_shape[1] == 40
