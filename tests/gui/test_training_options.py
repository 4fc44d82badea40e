"""The training panel's augmentation switch reaches the TrainConfig overrides."""

from __future__ import annotations

from ctviewer.core.models import default_config


def test_augmentation_checkbox_sets_the_config(window) -> None:
    panel = window.training
    assert panel.augment_check.isEnabled() and panel.augment_check.isChecked()
    assert panel.overrides()["augment"] is True
    panel.augment_check.setChecked(False)
    overrides = panel.overrides()
    assert overrides["augment"] is False
    assert default_config("default").with_overrides(**overrides).augment is False
