"""While the engine trains, the GUI thread does little per event (issue 14, item 11): curves are
redrawn at most a few times a second with the axes held still, and a burst of batch or loading
events repaints the progress bar a few times, not once per event."""

from __future__ import annotations

import numpy as np
import pytest

from ctviewer.core.events import BatchEnded, EpochEnded
from ctviewer.gui.curves import REDRAWS_PER_SECOND, CurvesWidget, _round_up
from ctviewer.gui.training_panel import TrainingPanel


def _logs(epoch: int) -> dict[str, float]:
    return {"loss": 0.7 - 0.01 * epoch, "val_loss": 0.72 - 0.008 * epoch, "accuracy": 0.5 + 0.01 * epoch,
            "val_accuracy": 0.55, "auc": 0.6, "val_auc": 0.62}


@pytest.fixture
def curves(qtbot) -> CurvesWidget:
    widget = CurvesWidget()
    qtbot.addWidget(widget)
    widget.show()
    return widget


def test_a_burst_of_epochs_is_drawn_once_and_every_point_arrives(curves: CurvesWidget, qtbot):
    for epoch in range(30):  # five folds of quick epochs arrive faster than anyone reads them
        curves.add_epoch(epoch % 6, _logs(epoch), fold=epoch // 6, epochs=6)
    assert curves.redraws == 0  # recorded, not drawn yet
    assert curves.points("val_loss", fold=4) == pytest.approx([_logs(e)["val_loss"] for e in range(24, 30)])
    qtbot.waitUntil(lambda: curves.redraws == 1, timeout=2000)
    qtbot.wait(2 * 1000 // REDRAWS_PER_SECOND)
    assert curves.redraws == 1  # one redraw for the whole burst
    xs, ys = curves._items[(4, "val_loss")].getData()
    np.testing.assert_allclose(ys, [_logs(e)["val_loss"] for e in range(24, 30)])
    np.testing.assert_array_equal(xs, np.arange(1, 7))


def test_axes_hold_still_while_training_and_fit_the_data_after(curves: CurvesWidget):
    curves.add_epoch(0, {"loss": 0.69, "val_loss": 0.71}, epochs=60)
    curves.flush()
    view = curves.loss_plot.getViewBox()
    assert view.viewRange()[0] == pytest.approx([0.5, 60.5])  # the planned epochs
    assert view.viewRange()[1] == pytest.approx([0.0, 1.0])  # 0 to a round number above the losses
    assert not any(view.autoRangeEnabled())
    curves.add_epoch(1, {"loss": 0.5, "val_loss": 0.8}, epochs=60)
    curves.flush()
    assert view.viewRange()[1] == pytest.approx([0.0, 1.0])  # nothing passed 1: the axis stays
    curves.add_epoch(2, {"loss": 0.4, "val_loss": 1.7}, epochs=60)
    curves.flush()
    assert view.viewRange()[1] == pytest.approx([0.0, 2.0])
    curves.fit_to_data()  # early stopping after 3 epochs: the x axis ends there
    assert all(view.autoRangeEnabled())
    assert [_round_up(v) for v in (0.73, 1.3, 2.0, 0.05)] == [1.0, 2.0, 2.0, 0.05]


def test_a_burst_of_batches_and_loading_steps_repaints_the_bar_a_few_times(qtbot, _private_cache):
    from ctviewer.core.data.cache import Cache
    from ctviewer.gui.session import Session

    panel = TrainingPanel(Session(cache=Cache(_private_cache)))
    qtbot.addWidget(panel)
    panel.show()
    changes: list[int] = []
    panel.progress_bar.valueChanged.connect(changes.append)
    for done in range(1, 501):  # 500 images read from the cache in a blink
        panel._on_progress(done, 500, "loading images")
    assert panel.progress_bar.value() == 500 and panel.progress_bar.format() == "loading images 500/500"
    assert len(changes) <= 5
    changes.clear()
    panel._started = 0.0
    for batch in range(200):  # tiny images: batches far faster than the screen needs
        panel._on_batch_ended(BatchEnded(batch=batch % 50, batches=50, epoch=batch // 50))
    assert len(changes) <= 10
    assert panel.progress_bar.value() == 200  # the last batch of an epoch is always shown
    assert panel.epoch_label.text() == f"epoch 4/{panel._expected_epochs()}"
    panel._on_epoch_ended(EpochEnded(epoch=0, epochs=3, logs={"loss": 0.6}))
    assert panel.curves.points("loss") == [0.6]
