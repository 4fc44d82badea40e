"""Which recipe to train on the user's data: the default's HU histograms or the texture recipe.

nnU-Net's "plans" idea, kept cheap: before any network is trained, both kinds of signal are
measured on the user's own images by patient-grouped inner cross-validation,

- **texture**: the texture recipe itself (frozen random CNN features + logistic read-out,
  `ctviewer.core.model.texture`), which costs one forward pass per image;
- **intensity**: a logistic regression on the body's HU histogram, the cheap core of the
  default recipe (which then learns *where* to read histograms and gains on top of it).

The texture recipe is chosen only when its inner AUC beats the histogram's by `TEXTURE_MARGIN`:
the trained default improved on its histogram proxy by +0.04 AUC on SIIM and +0.11 on
covid-ct-dev (docs/RECIPE.md), so a smaller lead would not survive the comparison with the real
default. The choice, both AUCs and the rule go into the notes and the model card.

The histogram is measured first. Where its AUC is above 1 - `TEXTURE_MARGIN`, the texture recipe
cannot lead by the margin (an AUC is at most 1), so its features, the forward pass of 16 networks
that is most of a choice's time (~20 s for 100 images on 2 cores), are not computed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import Dataset
from ctviewer.core.errors import Cancelled
from ctviewer.core.events import EventCallback, Message, StopCheck, emit
from ctviewer.core.model.config import TrainConfig, default_config, preprocessing_of

TEXTURE_MARGIN = 0.10
HISTOGRAM_STRENGTHS: tuple[float, ...] = (0.1, 1.0)
# The default recipe's whole-body histogram (DefaultArchitecture): 16 bins over -200..600 HU,
# pixels above -500 HU only, log density.
_HIST_LOW, _HIST_HIGH, _HIST_BINS, _BODY_HU = -200.0, 600.0, 16, -500.0
_TOO_FEW_PATIENTS = "default recipe: too few patients per class to compare recipes by inner folds"


@dataclass(frozen=True)
class RecipeChoice:
    """The recipe chosen for one set of training images, and why."""

    recipe: str  # "default" or "texture"
    texture_auc: float | None
    histogram_auc: float | None
    images: int
    reason: str
    margin: float = TEXTURE_MARGIN

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def wants_choice(config: TrainConfig) -> bool:
    """Whether training ``config`` starts by choosing its recipe."""
    from ctviewer.core.model.recipes import before_issue_15

    return config.model == "default" and bool(config.choose_recipe) and not before_issue_15()


def texture_config_for(config: TrainConfig) -> TrainConfig:
    """The texture recipe with the user's choices that apply to it (seed, size, threshold, ensemble)."""
    return replace(default_config("texture"), seed=config.seed, input_size=config.input_size, window=config.window,
                   threshold_rule=config.threshold_rule, threshold_target=config.threshold_target,
                   class_weight=config.class_weight, ensemble=config.ensemble, choose_recipe=False)


def config_for_choice(config: TrainConfig, choice: RecipeChoice) -> TrainConfig:
    return texture_config_for(config) if choice.recipe == "texture" else config


class RecipeChooser:
    """Each image's texture and histogram features, computed once; `choose` on any subset of rows."""

    def __init__(self, dataset: Dataset, config: TrainConfig, cache: Cache,
                 on_event: EventCallback | None = None, should_stop: StopCheck | None = None) -> None:
        from ctviewer.core.data.dataset import load_stack

        emit(on_event, Message("choosing the recipe: measuring texture and intensity signal on the training images"))
        wide = load_stack(dataset, preprocessing_of(config), cache, on_event, should_stop)
        self.histogram = histogram_features(wide * 2000.0 - 1000.0)
        self.y = dataset.y
        self.groups = dataset.patients
        self.seed = int(config.seed)
        self.balanced = bool(config.class_weight)
        self._texture: np.ndarray | None = None
        self._source = (dataset, config, cache, on_event, should_stop)

    @property
    def texture(self) -> np.ndarray:
        """Every image's texture features, computed on first use: a forward pass of the recipe's 16 frozen
        networks, ~0.2 s per image on 2 CPU cores (most of a choice's time)."""
        if self._texture is None:
            self._texture = self._texture_features()
        return self._texture

    def _texture_features(self) -> np.ndarray:
        from ctviewer.core.data.dataset import load_stack
        from ctviewer.core.model.recipes import build_model
        from ctviewer.core.model.texture import extract_features

        dataset, config, cache, on_event, should_stop = self._source
        if should_stop is not None and should_stop():
            raise Cancelled("training cancelled while the recipes were compared")
        texture = texture_config_for(config)
        model = build_model(texture)
        stack = load_stack(dataset, preprocessing_of(texture), cache, on_event, should_stop)
        parts = []
        for start in range(0, len(stack), 64):  # in chunks, so Cancel is heard within seconds
            if should_stop is not None and should_stop():
                raise Cancelled("training cancelled while the recipes were compared")
            parts.append(extract_features(model, stack[start : start + 64], texture.batch_size))
        return np.concatenate(parts)

    def choose(self, rows: np.ndarray) -> RecipeChoice:
        from ctviewer.core.model.texture import READOUT_STRENGTHS, inner_cv_auc

        rows = np.asarray(rows, dtype=np.int64)
        y, groups = self.y[rows], self.groups[rows]
        histogram, _, _ = inner_cv_auc(self.histogram[rows], y, groups, HISTOGRAM_STRENGTHS, self.balanced, self.seed)
        hist = max(histogram.values()) if histogram else None
        if hist is None:  # the inner folds depend on the labels and patients only: none for texture either
            return RecipeChoice("default", None, hist, len(rows), _TOO_FEW_PATIENTS)
        if hist + TEXTURE_MARGIN > 1.0:
            # An AUC is at most 1, so the texture recipe cannot lead by the margin: its features are not computed.
            return RecipeChoice("default", None, hist, len(rows),
                                f"default recipe (HU histograms in CNN masks): the HU-histogram proxy's inner "
                                f"cross-validated AUC {hist:.3f} leaves no room for the texture recipe to beat it "
                                f"by {TEXTURE_MARGIN:.2f} (an AUC is at most 1), so texture was not measured")
        texture, _, _ = inner_cv_auc(self.texture[rows], y, groups, READOUT_STRENGTHS, self.balanced, self.seed)
        tex = max(texture.values()) if texture else None
        if tex is None:
            return RecipeChoice("default", tex, hist, len(rows), _TOO_FEW_PATIENTS)
        if tex >= hist + TEXTURE_MARGIN:
            reason = (f"texture recipe: its inner cross-validated AUC {tex:.3f} beats the HU-histogram "
                      f"proxy's {hist:.3f} by at least {TEXTURE_MARGIN:.2f} (the signal is a pattern, not intensity)")
            return RecipeChoice("texture", tex, hist, len(rows), reason)
        reason = (f"default recipe (HU histograms in CNN masks): the texture recipe's inner cross-validated AUC "
                  f"{tex:.3f} does not beat the HU-histogram proxy's {hist:.3f} by {TEXTURE_MARGIN:.2f}")
        return RecipeChoice("default", tex, hist, len(rows), reason)


def histogram_features(hu: np.ndarray) -> np.ndarray:
    """(N, bins) log densities of the body's HU histogram, as the default recipe's histogram branch reads it."""
    edges = np.linspace(_HIST_LOW, _HIST_HIGH, _HIST_BINS + 1)
    rows = []
    for image in np.asarray(hu).reshape(len(hu), -1):
        body = image[image > _BODY_HU]
        counts = np.histogram(body, bins=edges)[0] / max(len(body), 1)
        rows.append(np.log(counts + 1e-3))
    return np.asarray(rows, dtype=np.float64)
