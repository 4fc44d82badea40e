"""Grad-CAM for the image on screen: computed by the model engine (TensorFlow never runs in
the GUI process), drawn by the viewer. Keeps the last heat maps of the current model."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QObject, Signal

from ctviewer.gui.session import Change, Session
from ctviewer.gui.viewer import ImageViewer
from ctviewer.gui.workers import Worker, WorkerError, WorkerRunner


class CamController(QObject):
    """Runs Grad-CAM for the viewer's current image when the overlay is switched on."""

    error = Signal(object)  # WorkerError
    cam_ready = Signal(str)  # path
    notice = Signal(str)  # why a heat map is not there yet, or why it is empty

    def __init__(self, session: Session, viewer: ImageViewer, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.viewer = viewer
        self.runner = WorkerRunner(self)
        self.runner.idle.connect(self._run_pending)
        self._heatmaps: OrderedDict[str, np.ndarray] = OrderedDict()
        self._pending: str | None = None
        self._failed_once = False
        self.engine_busy: Callable[[], bool] | None = None  # set by the window: is a training running?
        viewer.overlay_check.toggled.connect(self._on_toggled)
        session.subscribe(self._on_session_changed)

    def _on_session_changed(self, change: Change) -> None:
        if change == "model":  # the heat maps of the old model go; the image shown gets the new one's
            self.reset()
            self.request(self.viewer.current_path())

    def reset(self) -> None:
        """A new model: forget heat maps of the old one."""
        self._heatmaps.clear()
        self._failed_once = False
        self.viewer.clear_overlay()

    def _on_toggled(self, on: bool) -> None:
        if on and self.viewer.current_path():
            self.request(self.viewer.current_path())

    def request(self, path: str | None) -> None:
        if not path or self.session.model is None or not self.viewer.overlay_check.isChecked():
            return
        if path in self._heatmaps:
            self._show(path)
            return
        if self.runner.is_running():
            self._pending = path  # only the latest request matters
            return
        if self.engine_busy is not None and self.engine_busy():
            # The engine answers one call at a time: this one waits for the training to end.
            self.notice.emit("Grad-CAM waits until the training ends (the model engine does one thing at a time)")
        engine, model = self.session.engine, self.session.model
        # The engine's maps are already in [0, 1] (core.explain.gradcam.normalise_heatmap).
        worker = Worker(lambda on_event, should_stop: np.asarray(engine.grad_cam(model.id, path), dtype=np.float32),
                        "Grad-CAM")
        worker.finished.connect(lambda heat, p=path: self._on_finished(p, heat))
        worker.failed.connect(self._on_failed)
        self.runner.start(worker)

    def _on_finished(self, path: str, heat: np.ndarray) -> None:
        if not np.any(heat > 0):
            self.notice.emit("Grad-CAM is empty for this image: no region raises the positive class's score")
        self._heatmaps[path] = heat
        while len(self._heatmaps) > 64:
            self._heatmaps.popitem(last=False)
        self._show(path)
        self.cam_ready.emit(path)

    def _on_failed(self, error: WorkerError) -> None:
        # One dialog per model is enough; scrolling through slices must not pile them up.
        if not self._failed_once:
            self._failed_once = True
            self.error.emit(error)

    def _run_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and pending == self.viewer.current_path():
            self.request(pending)

    def _show(self, path: str) -> None:
        prep = self.session.model_preprocessing()
        self.viewer.set_overlay(path, self._heatmaps[path], resize=prep.resize if prep else "pad")

    def shutdown(self) -> None:
        self.runner.shutdown(30_000)
