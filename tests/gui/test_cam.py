"""Grad-CAM requests from the viewer: computed in the engine, drawn over the right image."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from pydicom.data import get_testdata_file

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.imaging import Preprocessing
from ctviewer.core.explain.gradcam import normalise_heatmap
from ctviewer.gui.cam import CamController
from ctviewer.gui.session import Session
from ctviewer.gui.viewer import ImageViewer


class _HeatEngine:
    """Stands in for the model engine: answers grad_cam with a map scaled as the core scales it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def grad_cam(self, model_id, path):
        self.calls.append(path)
        return normalise_heatmap(np.linspace(0, 4, 16, dtype=np.float32).reshape(4, 4))


def _setup(qtbot, tmp_path: Path, training: bool) -> tuple[CamController, ImageViewer, _HeatEngine]:
    engine = _HeatEngine()
    session = Session(cache=Cache(tmp_path / "cache"), engine=engine)
    session.model = SimpleNamespace(id="m1", kind="bundle", preprocessing=Preprocessing(resize="pad"))
    viewer = ImageViewer()
    qtbot.addWidget(viewer)
    viewer.show()
    viewer.show_series([get_testdata_file("CT_small.dcm")])
    cam = CamController(session, viewer)
    cam.engine_busy = lambda: training
    return cam, viewer, engine


def test_heat_map_is_drawn_over_the_image_on_screen_as_the_engine_scaled_it(qtbot, tmp_path: Path):
    cam, viewer, engine = _setup(qtbot, tmp_path, training=False)
    waits: list[str] = []
    cam.notice.connect(waits.append)
    with qtbot.waitSignal(cam.cam_ready, timeout=10_000):
        viewer.overlay_check.setChecked(True)
    assert engine.calls == [viewer.current_path()] and waits == []
    assert viewer.has_overlay() and viewer.overlay_item.isVisible()
    np.testing.assert_array_equal(viewer.overlay_item.image, engine_map := normalise_heatmap(
        np.linspace(0, 4, 16, dtype=np.float32).reshape(4, 4)))
    assert float(engine_map.max()) == 1.0  # drawn as it came: not scaled a second time in the GUI
    cam.request(viewer.current_path())  # asked again: the kept heat map, no second engine call
    assert engine.calls == [viewer.current_path()]
    cam.shutdown()


def test_a_heat_map_asked_for_during_training_says_it_waits(qtbot, tmp_path: Path):
    cam, viewer, _ = _setup(qtbot, tmp_path, training=True)
    with qtbot.waitSignal(cam.notice, timeout=10_000) as waiting:
        viewer.overlay_check.setChecked(True)
    assert "training" in waiting.args[0]
    cam.shutdown()


def test_an_empty_heat_map_is_said_not_silently_drawn_as_nothing(qtbot, tmp_path: Path):
    cam, viewer, engine = _setup(qtbot, tmp_path, training=False)
    engine.grad_cam = lambda model_id, path: np.zeros((4, 4), np.float32)
    with qtbot.waitSignal(cam.notice, timeout=10_000) as notice:
        viewer.overlay_check.setChecked(True)
    assert "empty" in notice.args[0]
    cam.shutdown()
