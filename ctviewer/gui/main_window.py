"""The main window: browser left, viewer centre, training/results/tags docks right; menus,
shortcuts, drag-and-drop, settings, status bar. Long work runs in `workers`; this module
only wires panels together: it sets the `Session`, and each panel follows the session's
changes it needs (`Session.subscribe`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QWidget,
)

from ctviewer.core.data.dataset import Dataset
from ctviewer.core.data.labels import default_labels_path, write_labels_csv
from ctviewer.core.events import Event, ImageFound
from ctviewer.gui.browser import BrowserPanel
from ctviewer.gui.cam import CamController
from ctviewer.gui.caption import image_caption
from ctviewer.gui.errors import error_box
from ctviewer.gui.model_files import ask_model_save_path, ask_model_to_open
from ctviewer.gui.results_panel import ResultsPanel
from ctviewer.gui.session import Change, Session
from ctviewer.gui.tags_panel import TagsPanel
from ctviewer.gui.training_panel import TrainingPanel
from ctviewer.gui.viewer import PRESET_NAMES, ImageViewer
from ctviewer.gui.workers import Worker, WorkerError, WorkerRunner

MAX_RECENT = 8
ENGINE_QUIT_S = 3.0  # closing: how long the engine may take to stop before it is killed
# What the mouse and keys do, as `viewer` implements them (tests/gui/test_viewer.py drags to check).
HELP_TEXT = (
    "Left drag up/down: window centre (level). Drag down = higher centre: the image gets darker.\n"
    "Left drag left/right: window width. Drag right = wider window: less contrast.\n"
    "(As in most radiology viewers; presets 1-9 put a standard window back.)\n"
    "Shift+left or middle drag: pan;  right drag or Ctrl+wheel: zoom;  Ctrl+0 or R: reset the view\n"
    "Wheel, Up/Down, PgUp/PgDn, Home/End: slice in the series (frame of a multi-frame file)\n"
    "Left/Right: previous/next image;  1-9: window presets;  G: Grad-CAM (where the model looked)\n"
    "Right-click in the browser: change the class of images or patients;  Ctrl+Z: undo it"
)


class MainWindow(QMainWindow):
    """ctviewer's window. ``settings`` is injected so tests use a private QSettings."""

    dataset_loaded = Signal(object)  # Dataset
    load_failed = Signal(object)  # WorkerError

    def __init__(self, settings: QSettings | None = None, session: Session | None = None) -> None:
        super().__init__()
        self.setWindowTitle("ctviewer")
        self.setObjectName("ctviewer-main")
        self.settings = settings if settings is not None else QSettings()
        self.session = session if session is not None else Session()
        self.loader = WorkerRunner(self)
        self.last_error: WorkerError | None = None
        self.error_boxes: list[QMessageBox] = []
        self.first_image_time: float | None = None
        self._closing = False
        # Scripted runs (offscreen: --screenshot, --self-test, tests) close without asking.
        self.ask_before_discarding = QGuiApplication.platformName() != "offscreen"
        self._build_panels()
        self._build_menus()
        self._build_status_bar()
        self.setAcceptDrops(True)
        self.resize(1400, 860)
        self.resizeDocks([self.browser_dock, self.training_dock], [320, 490], Qt.Orientation.Horizontal)
        self._restore_settings()

    # ------------------------------------------------------------------ layout

    def _build_panels(self) -> None:
        self.viewer = ImageViewer()
        self.setCentralWidget(self.viewer)
        # Built in this order, they follow a new dataset in this order: the tags empty before
        # the browser's tree (and so the first image) is there.
        self.tags = TagsPanel(self.session)
        self.browser = BrowserPanel(self.session)
        self.training = TrainingPanel(self.session)
        self.results = ResultsPanel(self.session)
        self.browser_dock = self._dock("Browser", self.browser, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.training_dock = self._dock("Training", self.training, Qt.DockWidgetArea.RightDockWidgetArea)
        self.results_dock = self._dock("Results", self.results, Qt.DockWidgetArea.RightDockWidgetArea)
        self.tags_dock = self._dock("DICOM tags", self.tags, Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.training_dock, self.results_dock)
        self.tabifyDockWidget(self.results_dock, self.tags_dock)
        self.training_dock.raise_()
        self.cam = CamController(self.session, self.viewer, self)

        self.browser.image_activated.connect(self._on_image_activated)
        self.browser.save_labels_requested.connect(self.save_labels_dialog)
        self.viewer.image_shown.connect(self._on_image_shown)
        self.training.predictions_ready.connect(self._on_predictions_ready)
        self.training.error.connect(self.show_error)
        self.training.status.connect(self._show_status)
        self.results.image_requested.connect(self._show_result_image)
        self.results.error.connect(self.show_error)
        self.cam.error.connect(self.show_error)
        self.cam.engine_busy = self.training.is_running
        self.cam.notice.connect(self._show_status)
        self.session.subscribe(self._on_session_changed)  # after the panels': they have followed first
        self.training.confirm_replace = self.confirm_discard
        self.results.threshold_changed.connect(lambda _t: self._update_caption())

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title.lower().replace(' ', '-')}")
        # Scrollable, so the panels' minimum sizes never force the window taller than a laptop screen.
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(widget)
        dock.setWidget(scroll)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, menu, text: str, slot, shortcut: str | QKeySequence | None = None,
                tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&Open folder…", self.open_folder_dialog, QKeySequence.StandardKey.Open,
                     "A folder of class subfolders, or with a labels.csv")
        self._action(file_menu, "Open &files…", self.open_files_dialog, "Ctrl+Shift+O")
        self.recent_menu = file_menu.addMenu("Open &recent")
        self._action(file_menu, "Open &demo dataset", self.open_demo, "Ctrl+D",
                     "Synthetic CT phantoms, contrast vs no contrast")
        file_menu.addSeparator()
        self._action(file_menu, "&Save labels…", self.save_labels_dialog, QKeySequence.StandardKey.Save)
        file_menu.addSeparator()
        self._action(file_menu, "Open &model…", self.open_model_dialog, "Ctrl+M", "Load a saved model folder")
        self._action(file_menu, "Save model &as…", self.save_model_dialog, "Ctrl+Shift+S")
        file_menu.addSeparator()
        self._action(file_menu, "&Export predictions CSV…", self.results.export_csv_dialog, "Ctrl+E")
        self._action(file_menu, "Export &plots PNG…", self.export_plots_dialog, "Ctrl+Shift+E")
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        edit_menu = bar.addMenu("&Edit")
        self.undo_action = self._action(edit_menu, "&Undo label change", self.undo_label_change,
                                        QKeySequence.StandardKey.Undo)
        self.undo_action.setEnabled(False)

        view_menu = bar.addMenu("&View")
        self._action(view_menu, "&Next image", lambda: self.browser.step_image(1), "Right")
        self._action(view_menu, "&Previous image", lambda: self.browser.step_image(-1), "Left")
        self._action(view_menu, "&Reset zoom", self.viewer.reset_view, "Ctrl+0")
        presets = view_menu.addMenu("&Window preset")
        for number, name in enumerate(PRESET_NAMES, start=1):
            shortcut = str(number) if number <= 9 else None
            self._action(presets, name.replace("_", " "), lambda _=False, n=name: self.viewer.apply_preset(n),
                         shortcut)
        grad = self._action(view_menu, "&Grad-CAM overlay", self.viewer.overlay_check.toggle, "G")
        grad.setStatusTip("Show where the model looked")
        view_menu.addSeparator()
        for dock in (self.browser_dock, self.training_dock, self.results_dock, self.tags_dock):
            view_menu.addAction(dock.toggleViewAction())

        model_menu = bar.addMenu("&Model")
        self._action(model_menu, "&Train", self.training.start_training, "Ctrl+T")
        self._action(model_menu, "&Cancel training or prediction", self.training.cancel, "Esc")
        self._action(model_menu, "&Predict on dataset", self.training.predict_dataset, "Ctrl+P")
        model_menu.addSeparator()
        self._action(model_menu, "&Export for deployment…", self.export_model_dialog, None,
                     "SavedModel, ONNX or TFLite with its preprocessing contract (ctviewer export)")

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Mouse and keys", self._show_help, "F1")
        self._action(help_menu, "&About ctviewer", self.show_about, None)

    def _build_status_bar(self) -> None:
        self.status_label = QLabel("no dataset | no model")
        self.cursor_label = QLabel("")
        self.load_progress = QProgressBar()
        self.load_progress.setMaximumWidth(240)
        self.load_progress.setMinimumWidth(180)  # room for "reading images 36/48"
        self.load_progress.hide()
        status = self.statusBar()
        status.addWidget(self.status_label, 1)
        status.addPermanentWidget(self.cursor_label)
        status.addPermanentWidget(self.load_progress)
        self.viewer.cursor_text.connect(self.cursor_label.setText)

    def show_about(self) -> None:
        from ctviewer.gui.about_dialog import AboutDialog

        self._about = AboutDialog(self)
        self._about.show()

    def _show_help(self) -> None:
        QMessageBox.information(self, "Mouse and keys", HELP_TEXT)

    # ------------------------------------------------------------------ opening data

    def open_folder_dialog(self) -> None:
        start = self._recent()[0] if self._recent() else str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open dataset folder", start)
        if folder:
            self.open_source(folder)

    def open_files_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open images", str(Path.home()),
                                                "Images (*.dcm *.dicom *.png *.jpg *.jpeg *.tif *.tiff);;All files (*)")
        if files:
            self.open_source(files)

    def open_demo(self) -> None:
        def job(on_event, should_stop):
            from ctviewer.core.data.demo import demo_dataset_dir
            from ctviewer.core.events import Progress

            on_event(Progress(0, 0, "making the demo dataset (first time only)"))
            return str(demo_dataset_dir())

        worker = Worker(job, "Open demo dataset")
        worker.finished.connect(lambda folder: self.open_source(folder, remember=False))
        self._start_load(worker)

    def open_source(self, source: str | Sequence[str], remember: bool = True) -> None:
        """Discover ``source`` (a folder, a labels.csv or a list of files) in the background."""
        if not self.confirm_discard("Open another dataset", self.unsaved_work(labels_only=True)):
            return
        cache = self.session.cache

        def job(on_event, should_stop):
            from ctviewer.core.data.dataset import discover

            first: list[str] = []

            def forward(event: Event) -> None:
                if isinstance(event, ImageFound):  # only the first: the viewer shows it while the scan goes on
                    if not first:
                        first.append(event.path)
                        on_event(event)
                else:
                    on_event(event)

            return discover(source, cache=cache, on_event=forward, should_stop=should_stop)

        worker = Worker(job, "Open dataset")
        worker.image_read.connect(lambda path: self._show_first_read(worker, path))
        worker.finished.connect(lambda ds: self.set_dataset(ds, source if remember else None))
        self._start_load(worker)

    def _show_first_read(self, worker: Worker, path: str) -> None:
        """Show the first image of a folder still being scanned (a large folder takes a while)."""
        if self.loader.worker is worker:  # not a late signal from a load that was replaced
            self.viewer.show_path(path)

    def _start_load(self, worker: Worker) -> None:
        # The scan being replaced stops first (the loader stays open for the new one).
        if self.loader.is_running() and not self.loader.stop(5000):
            self._show_status("still stopping the previous scan: open it again in a moment")
            return
        worker.progress.connect(self._on_load_progress)
        worker.failed.connect(self._on_load_failed)
        worker.cancelled.connect(lambda: self.loader.worker in (worker, None) and self.load_progress.hide())
        self.load_progress.setRange(0, 0)
        self.load_progress.show()
        self.loader.start(worker)

    def _on_load_progress(self, done: int, total: int, what: str) -> None:
        self.load_progress.setRange(0, total)
        self.load_progress.setValue(done)
        self.load_progress.setFormat(f"{what} %v/%m" if total else what)
        self.status_label.setText(what)

    def _on_load_failed(self, error: WorkerError) -> None:
        self.load_progress.hide()
        self.show_error(error)
        self.load_failed.emit(error)

    def set_dataset(self, dataset: Dataset, source: str | Sequence[str] | None = None) -> None:
        """Open ``dataset``: the panels follow the session (browser, training, results, doctor, tags)."""
        self.load_progress.hide()
        shown = self.viewer.series[self.viewer.index] if self.viewer.image is not None else None
        self.viewer.clear()
        self.session.set_dataset(dataset)
        if isinstance(source, str):
            self._remember_recent(source)
        paths = self.browser.visible_paths()
        if paths:
            # The image shown while scanning stays: jumping to another one would look like a glitch.
            self.browser.select_path(shown if shown in paths else paths[0])
        self.dataset_loaded.emit(dataset)

    def undo_label_change(self) -> None:
        if self.browser.undo_label_change():
            self._show_status("label change undone")

    def _on_session_changed(self, change: Change) -> None:
        """What the window itself shows of the session: status bar, Undo, the image's caption."""
        self._update_status()
        if change in ("dataset", "labels"):
            self.undo_action.setEnabled(self.browser.can_undo())
        if change in ("labels", "predictions"):
            self._update_caption()  # the true class or the model's call changed

    def save_labels_dialog(self) -> None:
        if self.session.dataset is None:
            return
        target, _ = QFileDialog.getSaveFileName(self, "Save labels", str(default_labels_path(self.session.dataset)),
                                                "CSV (*.csv)")
        if target:
            self.save_labels(target)

    def save_labels(self, path: str | Path) -> Path:
        written = write_labels_csv(self.session.dataset, path)
        self.browser.mark_saved()
        self._show_status(f"labels saved to {written}")
        return written

    # ------------------------------------------------------------------ images

    def show_image(self, path: str) -> None:
        """Select ``path`` in the browser (which shows it); fall back to showing it directly."""
        if not self.browser.select_path(path):
            self.viewer.show_path(path)

    def _show_result_image(self, path: str) -> None:
        """A clicked prediction: the image, with where the model looked (Grad-CAM) on top."""
        self.show_image(path)
        if self.session.model is not None:
            self.viewer.overlay_check.setChecked(True)

    def _on_image_activated(self, path: str) -> None:
        series = self.browser.series_paths(path)
        if self.viewer.series == series:
            self.viewer.show_path(path)
        else:
            self.viewer.show_series(series, series.index(path) if path in series else 0)

    def _on_image_shown(self, path: str) -> None:
        if self.first_image_time is None:
            self.first_image_time = time.time()
        self.tags.show_image(self.viewer.image)
        self.browser.select_path(path, activate=False)  # the wheel moved through the series: follow it
        self._update_caption()
        self.cam.request(path)

    def _update_caption(self) -> None:
        """The caption on the image: file, patient, true class, and the model's call if predicted."""
        path = self.viewer.current_path()
        if path is None:
            self.viewer.set_caption("")
            return
        dataset = self.session.dataset
        item = next((it for it in dataset.items if it.path == path), None) if dataset is not None else None
        self.viewer.set_caption(image_caption(path, item, self.results.call_for(path)))

    # ------------------------------------------------------------------ model

    def open_model_dialog(self) -> None:
        folder = ask_model_to_open(self)
        if folder:
            self.training.load_bundle(folder)

    def save_model_dialog(self) -> bool:
        """Ask for a name and save the model there; True once it is saved."""
        if self.session.model is None:
            self._show_status("no model to save: train or open one first")
            return False
        target = ask_model_save_path(self)
        if not target:
            return False
        return self.training.save_bundle(target) is not None

    def export_model_dialog(self) -> None:
        """Ask a format and a parent folder; the export goes to a new subfolder named after both."""
        if self.session.model is None:
            self._show_status("no model to export: train or open one first")
            return
        fmt, ok = QInputDialog.getItem(self, "Export model", "Format:", ["savedmodel", "onnx", "tflite"], 1, False)
        if not ok:
            return
        parent = QFileDialog.getExistingDirectory(self, "Export into folder", str(Path.home()))
        if parent:
            model_id = self.session.model.model_id or self.session.model.id
            self.training.export_model(fmt, Path(parent) / f"ctviewer-{fmt}-{model_id}")

    def _on_predictions_ready(self, predictions: object, description: str = "") -> None:
        if self._closing:
            return  # a late answer while the window closes: nothing more starts
        self.session.set_predictions(predictions, description)  # the Results panel shows them
        self.results_dock.raise_()

    def export_plots_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export plots into folder", str(Path.home()))
        if folder:
            written = self.training.export_plot(Path(folder) / "training_curves.png")
            written_more = self.results.export_plots(folder)
            self._show_status(f"wrote {len([written, *written_more])} PNG files to {folder}")

    # ------------------------------------------------------------------ status, errors, settings

    def _update_status(self) -> None:
        self.status_label.setText(self.session.describe())

    def _show_status(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    def show_error(self, error: WorkerError) -> None:
        if self._closing:
            return  # tasks cut short by closing the window are not errors
        self.last_error = error
        self.error_boxes = [b for b in self.error_boxes if b.isVisible()]
        self.error_boxes.append(error_box(self, error))

    def _recent(self) -> list[str]:
        value = self.settings.value("recent_folders", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _remember_recent(self, folder: str) -> None:
        folder = str(Path(folder).resolve())
        recent = [folder, *[f for f in self._recent() if f != folder]][:MAX_RECENT]
        self.settings.setValue("recent_folders", recent)
        self._fill_recent_menu()

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for folder in self._recent():
            action = self.recent_menu.addAction(folder)
            action.triggered.connect(lambda _=False, f=folder: self.open_source(f))
        self.recent_menu.setEnabled(bool(self._recent()))

    def _restore_settings(self) -> None:
        geometry = self.settings.value("window/geometry")
        state = self.settings.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        preset = self.settings.value("viewer/preset")
        if isinstance(preset, str) and preset in PRESET_NAMES:
            self.viewer.apply_preset(preset)
        self.training.restore_settings(self.settings)
        self._fill_recent_menu()

    def save_settings(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        if self.viewer.preset != "manual":
            self.settings.setValue("viewer/preset", self.viewer.preset)
        self.training.save_settings(self.settings)
        self.settings.sync()

    # ------------------------------------------------------------------ drag and drop, close

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        # One folder (or labels.csv) is a dataset; several things are an unlabelled drop.
        if len(paths) == 1 and (Path(paths[0]).is_dir() or Path(paths[0]).name.lower() == "labels.csv"):
            QTimer.singleShot(0, lambda: self.open_source(paths[0]))
        else:
            QTimer.singleShot(0, lambda: self.open_source(paths, remember=False))

    # ------------------------------------------------------------------ unsaved work

    def unsaved_work(self, labels_only: bool = False) -> list[str]:
        """What closing (or, for labels, opening another dataset) would lose, in words."""
        lost = []
        if self.browser.labels_dirty:
            lost.append("class labels changed in the browser (not saved to labels.csv)")
        if labels_only:
            return lost
        if self.training.is_running():
            lost.append("the training that is running (it will be cancelled)")
        if self.training.model_unsaved:
            lost.append(f"the model, {self.session.model_source} (not saved: File > Save model as…)")
        return lost

    def confirm_discard(self, action: str, lost: list[str]) -> bool:
        """Ask before ``action`` loses ``lost``: Save (then go on), Discard, or Cancel.
        True to go on. Never asks in scripted runs."""
        if not lost or not self.ask_before_discarding:
            return True
        buttons = QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel
        if self._can_save_now():
            buttons |= QMessageBox.StandardButton.Save
        box = QMessageBox(QMessageBox.Icon.Warning, f"ctviewer — {action}",
                          f"{action} now? This loses:\n\n" + "\n".join(f"• {item}" for item in lost),
                          buttons, self)
        box.setDefaultButton(QMessageBox.StandardButton.Save if self._can_save_now()
                             else QMessageBox.StandardButton.Cancel)
        answer = box.exec()
        if answer == QMessageBox.StandardButton.Save:
            return self.save_unsaved_work()
        return answer == QMessageBox.StandardButton.Discard

    def _can_save_now(self) -> bool:
        model_saveable = self.training.model_unsaved and not self.training.is_running()
        return self.browser.labels_dirty or model_saveable

    def save_unsaved_work(self, model_target: str | Path | None = None, labels_target: str | Path | None = None,
                          timeout_ms: int = 120_000) -> bool:
        """Save changed labels and the unsaved model (asking where unless given); True when all is saved."""
        if self.browser.labels_dirty:
            if labels_target is None:
                labels_target, _ = QFileDialog.getSaveFileName(
                    self, "Save labels", str(default_labels_path(self.session.dataset)), "CSV (*.csv)")
            if not labels_target:
                return False
            self.save_labels(labels_target)
        if self.training.model_unsaved and not self.training.is_running():
            target = model_target if model_target is not None else ask_model_save_path(self)
            if not target or self.training.save_bundle(target) is None:
                return False
            # Closing right after: wait for the save here (seconds), so the model is on disk.
            self.training.model_runner.wait(timeout_ms)
            QApplication.processEvents()  # the save's answer (it clears "unsaved")
            if self.training.model_unsaved:
                return False  # the save failed: its error is shown; nothing is lost
        return True

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._closing and not self.confirm_discard("Close ctviewer", self.unsaved_work()):
            event.ignore()
            return
        self._closing = True
        self.save_settings()
        if self.training.is_running():
            self._show_status("stopping training…")
        self.hide()  # the window goes at once; what is left is stopping threads
        # Nothing starts any more (a late "training finished" must not start the doctor), and
        # everything running is cancelled. Then the engine: asked to quit, killed if it does not
        # within seconds (the user chose to close; a cancelled training's tail is not worth a wait).
        for runner in self._runners():
            runner.close()
        self.session.engine.shutdown(ENGINE_QUIT_S)
        # Every thread waited on that engine has its answer now: wait for them all to end.
        for runner in self._runners():
            runner.shutdown(10_000)
        self.browser.shutdown()
        event.accept()

    def _runners(self) -> list:
        return [self.training.runner, self.training.model_runner, self.cam.runner, self.results.doctor.runner,
                self.loader]
