"""The training panel's options: the model list is the core's, the augmentation switch reaches the config."""

from __future__ import annotations

from ctviewer.core.model import recipes as models
from ctviewer.core.model.config import MODEL_NAMES
from ctviewer.core.model.recipes import default_config


def test_augmentation_checkbox_sets_the_config(window) -> None:
    panel = window.training
    assert panel.augment_check.isEnabled() and panel.augment_check.isChecked()
    assert panel.overrides()["augment"] is True
    panel.augment_check.setChecked(False)
    overrides = panel.overrides()
    assert overrides["augment"] is False
    assert default_config("default").with_overrides(**overrides).augment is False


def test_model_box_offers_exactly_the_core_model_names(window) -> None:
    box = window.training.model_box
    offered = tuple(box.itemText(i) for i in range(box.count()))
    assert offered == MODEL_NAMES
    # The same list through the Keras-importing module the trainer uses.
    assert offered == models.MODEL_NAMES
