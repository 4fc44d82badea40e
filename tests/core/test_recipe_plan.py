"""Choosing the recipe on the user's data (ctviewer.core.training.plan, issue 19)."""

from __future__ import annotations

import numpy as np

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import discover
from tests.core._trainkit import tiny_demo
from tests.core.test_texture import _texture_pngs


def _default(**overrides):
    from ctviewer.core.model.recipes import default_config

    return default_config("default").with_overrides(input_size=32, epochs=2, batch_size=8, **overrides)


def test_grain_without_an_intensity_difference_chooses_the_texture_recipe(tmp_path):
    from ctviewer.core.training.plan import RecipeChooser

    cache = Cache(tmp_path / "cache")
    dataset = discover(_texture_pngs(tmp_path / "data"), positive="fine", cache=cache)
    choice = RecipeChooser(dataset, _default(), cache).choose(np.arange(len(dataset)))
    assert choice.recipe == "texture", choice
    assert choice.texture_auc >= choice.histogram_auc + choice.margin
    assert "texture recipe" in choice.reason and f"{choice.texture_auc:.3f}" in choice.reason


def test_contrast_in_hounsfield_units_keeps_the_default_recipe_without_the_texture_pass(tmp_path, monkeypatch):
    from ctviewer.core.model import texture
    from ctviewer.core.training.plan import TEXTURE_MARGIN, RecipeChooser

    passes = []
    real_extract = texture.extract_features
    monkeypatch.setattr(texture, "extract_features", lambda *a, **k: passes.append(1) or real_extract(*a, **k))
    dataset, cache = tiny_demo(tmp_path, n_patients=6)
    choice = RecipeChooser(dataset, _default(), cache).choose(np.arange(len(dataset)))
    assert choice.recipe == "default", choice
    # The histogram leaves the texture recipe no room to lead by the margin: its networks never ran.
    assert choice.histogram_auc + TEXTURE_MARGIN > 1.0
    assert choice.texture_auc is None and not passes
    assert "texture was not measured" in choice.reason and f"{choice.histogram_auc:.3f}" in choice.reason


def test_a_weak_histogram_is_compared_with_the_texture_recipe(tmp_path):
    from ctviewer.core.training import plan

    dataset, cache = tiny_demo(tmp_path, n_patients=6)
    chooser = plan.RecipeChooser(dataset, _default(), cache)
    chooser.histogram = np.random.default_rng(0).normal(size=chooser.histogram.shape)  # no intensity signal
    choice = chooser.choose(np.arange(len(dataset)))
    assert choice.histogram_auc + plan.TEXTURE_MARGIN <= 1.0
    assert choice.texture_auc is not None and f"{choice.texture_auc:.3f}" in choice.reason


def test_too_few_patients_keep_the_default_and_say_why(tmp_path):
    from ctviewer.core.training.plan import RecipeChooser

    cache = Cache(tmp_path / "cache")
    dataset = discover(_texture_pngs(tmp_path / "data", patients=1, per_patient=1), positive="fine", cache=cache)
    choice = RecipeChooser(dataset, _default(), cache).choose(np.arange(len(dataset)))
    assert choice.recipe == "default" and "too few patients" in choice.reason


def test_train_chooses_once_for_its_ensemble_and_cv_once_per_fold_without_the_folds_images(tmp_path):
    from ctviewer.core.training.cv import cross_validate

    cache = Cache(tmp_path / "cache")
    dataset = discover(_texture_pngs(tmp_path / "data"), positive="fine", cache=cache)
    trained = cross_validate(dataset, _default(ensemble=True), folds=4, cache=cache)
    assert trained.config.model == "texture" and len(trained.recipe_choices) == 1
    assert trained.recipe_choices[0]["images"] == len(dataset)
    assert all(m.config.model == "texture" for m in trained.ensemble.members)
    assert trained.expected_performance()["recipe_choices"] == trained.recipe_choices

    cv = cross_validate(dataset, _default(), folds=4, cache=cache)
    assert [c["images"] for c in cv.recipe_choices] == [len(cv.folds.train_indices(k)) for k in range(4)]
    assert cv.metrics.auc > 0.9 and cv.to_json_extra()["recipe_choices"] == cv.recipe_choices


def test_asking_for_the_default_recipe_itself_skips_the_choice(tmp_path):
    from ctviewer.core.training.plan import wants_choice

    assert wants_choice(_default()) and not wants_choice(_default(choose_recipe=False))
    from ctviewer.core.model.recipes import default_config

    assert not wants_choice(default_config("texture"))


def test_the_apps_model_label_names_the_recipe_that_was_trained(tmp_path):
    """The GUI's engine labels the ensemble with the chosen recipe, not the name asked for."""
    from ctviewer.engine.server import Engine

    engine = Engine(str(tmp_path / "cache"))
    dataset = discover(_texture_pngs(tmp_path / "data"), positive="fine", cache=engine.cache)
    outcome = engine.train(dataset, "default", {"input_size": 32, "batch_size": 8}, 4,
                           on_event=lambda event: None, should_stop=lambda: False)
    assert outcome.handle is not None and outcome.handle.source.endswith("(texture)")


def test_cancel_while_the_recipes_are_compared_stops_the_comparison(tmp_path, monkeypatch):
    import pytest

    from ctviewer.core.data import dataset as dataset_module
    from ctviewer.core.errors import Cancelled
    from ctviewer.core.training.plan import RecipeChooser

    cache = Cache(tmp_path / "cache")
    dataset = discover(_texture_pngs(tmp_path / "data"), positive="fine", cache=cache)
    loaded = []
    real_load_stack = dataset_module.load_stack

    def load_then_press_cancel(*args, **kwargs):
        stack = real_load_stack(*args, **kwargs)
        loaded.append(True)  # Cancel is pressed once the images are in: during the feature pass
        return stack

    monkeypatch.setattr(dataset_module, "load_stack", load_then_press_cancel)
    with pytest.raises(Cancelled, match="recipes were compared"):
        RecipeChooser(dataset, _default(), cache, should_stop=lambda: bool(loaded)).choose(np.arange(len(dataset)))
