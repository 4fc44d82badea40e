"""Results at series/patient level: the model's own level threshold (from its card), the fallback,
and the slices of a clicked series."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.imaging import Preprocessing
from ctviewer.core.metrics.aggregate import aggregate
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.core.model.bundle import ModelCard
from ctviewer.engine.server import Engine
from ctviewer.gui.predictions_table import PATH_ROLE
from ctviewer.gui.results_panel import ResultsPanel
from ctviewer.gui.session import Session

CLASSES = ("no_contrast", "contrast")
PATIENT_T, SERIES_T = 0.62, 0.41  # the card's; the image threshold is 0.5


def _predictions(model_id: str = "w123") -> Predictions:
    """20 patients of 4 slices in 2 series each; one class per patient; new data (no folds)."""
    rng = np.random.default_rng(11)
    n = 80
    patients = [f"p{i // 4:02d}" for i in range(n)]
    labels = ["contrast" if (i // 4) % 2 else "no_contrast" for i in range(n)]
    # Patient means spread around 0.5-0.65 so that thresholds 0.5 and 0.62 call patients differently.
    centre = np.array([0.66 if lab == "contrast" else 0.48 for lab in labels])
    probs = np.clip(centre + rng.normal(0.0, 0.12, n), 0.0, 1.0)
    return Predictions(paths=[f"/data/{patients[i]}/s{(i // 2) % 2}/img{i:02d}.dcm" for i in range(n)], probs=probs,
                       threshold=0.5, classes=CLASSES, labels=labels, patients=patients,
                       series=[f"1.2.{i // 2}" for i in range(n)], model_id=model_id)


def _bundle_handle(tmp_path: Path, levels: dict | None):
    """The `ModelHandle` the engine gives the GUI for a loaded bundle whose card holds ``levels``."""
    raw = {} if levels is None else {"levels": levels}
    card = ModelCard(model_id="w123", kind="ensemble", classes=CLASSES, preprocessing=Preprocessing(),
                     threshold=0.5, threshold_rule="youden", model_file_sha256="", raw=raw)
    bundle = SimpleNamespace(card=card, preprocessing=card.preprocessing, classes=CLASSES, threshold=0.5,
                             model_id="w123", history=None, trained_on="")
    engine = Engine(str(tmp_path / "engine-cache"))
    return engine._keep(bundle, "bundle", "saved model /models/m", None)


def _levels(patient: float | None, series: float | None) -> dict:
    entry = {"rule": "mean", "threshold_rule": "youden", "chosen_on": "pooled out-of-fold predictions"}
    return {"patient": {**entry, "threshold": patient}, "series": {**entry, "threshold": series}}


@pytest.fixture
def make_panel(qtbot, _private_cache: Path):
    made = []

    def _make(handle) -> ResultsPanel:
        session = Session(cache=Cache(_private_cache))
        session.model = handle
        panel = ResultsPanel(session)
        qtbot.addWidget(panel)
        panel.show()
        made.append(panel)
        return panel

    yield _make
    for panel in made:
        panel.shutdown()


def _counts(units: Predictions, t: float) -> dict[str, int]:
    y, hit = units.y_true, units.probs >= t
    return {"tp": int(((y == 1) & hit).sum()), "fn": int(((y == 1) & ~hit).sum()),
            "fp": int(((y == 0) & hit).sum()), "tn": int(((y == 0) & ~hit).sum())}


def _calls(panel: ResultsPanel) -> list[str]:
    return [panel.model.data(panel.model.index(r, 4)) for r in range(panel.model.rowCount())]


def test_patient_and_series_views_call_at_the_cards_level_thresholds(make_panel, tmp_path: Path):
    pred = _predictions()
    handle = _bundle_handle(tmp_path, _levels(PATIENT_T, SERIES_T))
    assert handle.level_thresholds["patient"][0] == pytest.approx(PATIENT_T)
    panel = make_panel(handle)
    panel.set_predictions(pred, "new folder")

    panel.set_level("patient")
    units = aggregate(pred, "patient").predictions
    assert len(units) == 20
    assert _counts(units, PATIENT_T) != _counts(units, 0.5)  # the data tells the two thresholds apart
    assert panel.threshold == pytest.approx(PATIENT_T)
    assert panel.spin.value() == pytest.approx(PATIENT_T)
    assert panel.confusion.counts() == _counts(units, PATIENT_T)
    assert all(call.split(" ")[1].endswith(f"{PATIENT_T:.3f}") for call in _calls(panel))
    assert "threshold 0.62, chosen on held-out patients" in panel.source_label.text()
    assert "image threshold" not in panel.source_label.text()
    assert f"threshold {PATIENT_T:.3f}" in panel.confusion.rates.text()
    # The slider moves away from it; "Model's own" brings the patient threshold back, not the image one.
    panel.slider.setValue(300)
    assert panel.confusion.counts() == _counts(units, 0.3)
    panel.reset_button.click()
    assert panel.threshold == pytest.approx(PATIENT_T)
    assert panel.confusion.counts() == _counts(units, PATIENT_T)

    panel.set_level("series")
    series = aggregate(pred, "series").predictions
    assert len(series) == 40
    assert panel.threshold == pytest.approx(SERIES_T)
    assert panel.confusion.counts() == _counts(series, SERIES_T)
    assert "threshold 0.41, chosen on held-out series" in panel.source_label.text()

    panel.set_level("image")
    assert panel.threshold == pytest.approx(0.5)
    assert panel.confusion.counts() == _counts(pred, 0.5)


@pytest.mark.parametrize("case", ["card without levels", "level not chosen", "predicted by another model"])
def test_without_a_level_threshold_the_image_threshold_is_used_and_said(make_panel, tmp_path: Path, case: str):
    levels = {"card without levels": None, "level not chosen": _levels(None, None),
              "predicted by another model": _levels(PATIENT_T, SERIES_T)}[case]
    pred = _predictions("other-model" if case == "predicted by another model" else "w123")
    panel = make_panel(_bundle_handle(tmp_path, levels))
    panel.set_predictions(pred, "new folder")
    panel.set_level("patient")
    units = aggregate(pred, "patient").predictions
    assert panel.threshold == pytest.approx(0.5)
    assert panel.confusion.counts() == _counts(units, 0.5)
    assert "called at the image threshold 0.5000" in panel.source_label.text()
    assert "chosen on held-out" not in panel.source_label.text()


def test_out_of_fold_rows_keep_their_cross_fitted_unit_thresholds(make_panel, tmp_path: Path):
    """Out-of-fold predictions are called on thresholds chosen on the other folds, not the card's
    (which was chosen on all of them, these units included)."""
    from dataclasses import replace

    pred = _predictions()
    folds = np.array([int(p[1:]) % 4 for p in pred.patients])
    oof = replace(pred, folds=folds, row_thresholds=np.full(len(pred), 0.5))
    panel = make_panel(_bundle_handle(tmp_path, _levels(PATIENT_T, SERIES_T)))
    panel.set_predictions(oof, "out-of-fold")
    panel.set_level("patient")
    expected = aggregate(oof, "patient")
    assert panel.per_row
    np.testing.assert_allclose(panel.predictions.row_thresholds, expected.predictions.row_thresholds)
    assert "chosen on held-out patients" not in panel.source_label.text()


def test_clicking_a_series_row_lists_its_slices_by_probability(make_panel, tmp_path: Path, qtbot):
    pred = _predictions()
    panel = make_panel(_bundle_handle(tmp_path, _levels(PATIENT_T, SERIES_T)))
    panel.set_predictions(pred, "new folder")
    panel.level_combo.setCurrentIndex(panel.level_combo.findData("series"))
    assert panel.level == "series" and panel.slices.isVisible()
    # Series 1.2.7 holds images 14 and 15 of patient p03.
    row = next(r for r in range(panel.proxy.rowCount()) if panel.proxy.index(r, 0).data(PATH_ROLE) == "1.2.7")
    with qtbot.waitSignal(panel.image_requested, timeout=1000) as blocker:
        panel.table.setCurrentIndex(panel.proxy.index(row, 0))
    mine = [14, 15]
    order = sorted(mine, key=lambda i: -pred.probs[i])
    assert panel.slices.probabilities() == [round(float(pred.probs[i]), 3) for i in order]
    assert blocker.args == [pred.paths[order[0]]]  # the slice that drove the call opens
    assert "series 1.2.7" in panel.slices.title.text()
    with qtbot.waitSignal(panel.image_requested, timeout=1000) as blocker:
        panel.slices.table.setCurrentCell(1, 0)
    assert blocker.args == [pred.paths[order[1]]]
