"""The panels follow the session on their own: no window tells them. Build the session, build the
panels on it, change the session, and each panel shows the change."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.dataset import discover
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.gui.browser import BrowserPanel
from ctviewer.gui.results_panel import ResultsPanel
from ctviewer.gui.session import Session
from ctviewer.gui.tags_panel import TagsPanel
from ctviewer.gui.training_panel import TrainingPanel


def test_browser_training_results_doctor_and_tags_follow_the_session(qtbot, demo_folder: Path,
                                                                    _private_cache: Path) -> None:
    from ctviewer.core.data.imaging import load

    session = Session(cache=Cache(_private_cache))
    browser, training, results, tags = (BrowserPanel(session), TrainingPanel(session), ResultsPanel(session),
                                        TagsPanel(session))
    for widget in (browser, training, results, tags):
        qtbot.addWidget(widget)
    dataset = discover(demo_folder, cache=session.cache)
    tags.show_image(load(dataset.items[0].path))
    assert tags.table.rowCount() > 0 and not training.start_button.isEnabled()

    session.set_dataset(dataset)
    assert browser.dataset is dataset and browser.visible_paths() and not browser.labels_dirty
    assert training.start_button.isEnabled()  # there is something to train on now
    assert tags.table.rowCount() == 0  # the tags of an image of the old dataset went

    probs = np.linspace(0.1, 0.9, len(dataset))
    predictions = Predictions(paths=dataset.paths, probs=probs, threshold=0.5, classes=("no_contrast", "contrast"),
                              labels=[it.label for it in dataset.items], patients=[it.patient for it in dataset.items])
    session.set_predictions(predictions, "made up for the test")
    assert results.image_predictions is predictions and "made up for the test" in results.source_label.text()
    assert results.model.rowCount() == len(dataset)
    qtbot.waitUntil(lambda: not results.doctor.is_running(), timeout=30_000)
    assert results.doctor.subject  # the doctor checked what the session holds

    # Relabelling in the browser sets the session's labels: the results follow, their predictions stay.
    first = dataset.items[0]
    other = next(c for c in dataset.classes if c != first.label)
    browser.set_label([first.path], other)
    assert session.dataset is browser.dataset and session.dataset is not dataset
    assert results.image_predictions is session.predictions
    assert results.image_predictions.labels[0] == other
    np.testing.assert_array_equal(results.image_predictions.probs, probs)

    # Another dataset: the old predictions and the doctor's findings about them go, the browser starts afresh.
    session.set_dataset(discover(demo_folder / "contrast", cache=session.cache))
    assert results.image_predictions is None and results.model.rowCount() == 0
    assert results.doctor.findings == [] and results.doctor.subject == ""
    assert not browser.labels_dirty and len(browser.visible_paths()) == len(session.dataset)
    for widget in (browser, results):
        widget.shutdown()
