"""Training panel: the model and its settings (each showing its recommended value), Start/Cancel,
live curves, per-batch progress with ETA; open/save a model; predict the dataset. All TensorFlow
work runs in the model engine, reached through `workers`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ctviewer.core.data.dataset import Dataset
from ctviewer.core.model.config import DEFAULT_FOLDS, MODEL_NAMES, TrainConfig, default_config
from ctviewer.core.model.provenance import training_overlap
from ctviewer.gui.curves import CurvesWidget
from ctviewer.gui.form_widgets import RecommendedSpin, WrappingLabel
from ctviewer.gui.session import Change, Session
from ctviewer.gui.warm_up import warm_up_in_background
from ctviewer.gui.wording import for_screen
from ctviewer.gui.workers import Worker, WorkerError, WorkerRunner

# Keras' log keys in words, in the order the log shows them.
_LOG_WORDS = {"loss": "training loss", "val_loss": "validation loss", "accuracy": "training accuracy",
              "val_accuracy": "validation accuracy", "auc": "training AUC", "val_auc": "validation AUC"}
_MODEL_TIPS = {
    "default": "The recommended network for CT slices (tuned on real CT; see docs/RECIPE.md); when the "
               "signal is a pattern rather than an intensity, it switches to the texture recipe by itself",
    "texture": "Frozen random CNN features with a fitted logistic read-out: for patterns such as ground glass",
    "seed": "The small network of the original question, with its settings (for comparison)",
}


def describe_logs(logs: dict[str, float]) -> str:
    """One epoch's numbers in words: "training loss 0.693, validation loss 0.701, ..."."""
    return ", ".join(f"{_LOG_WORDS[k]} {logs[k]:.3f}" for k in _LOG_WORDS if logs.get(k) is not None)


# The progress bar and its text follow batches and loading at most this often: an engine sends
# hundreds of events a second on small images, and each repaint is GUI-thread time a key press waits for.
PROGRESS_INTERVAL_S = 0.1


def format_eta(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TrainingPanel(QWidget):
    """Starts and follows training; sets the session's model, hands predictions to the window."""

    model_ready = Signal(object)  # TrainedModel / Bundle / Ensemble
    predictions_ready = Signal(object, str)  # Predictions, what they are
    error = Signal(object)  # WorkerError
    status = Signal(str)
    training_finished = Signal(object)  # the TrainedModel or CVResult (also after a cancel)
    training_cancelled = Signal()
    exported = Signal(str)  # the export folder

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._model_unsaved = False
        self._cancelling = False
        # Set by the window: asks before ``action`` loses ``lost`` (True = go on). None: never ask.
        self.confirm_replace: Callable[[str, list[str]], bool] | None = None
        self._training_dataset: Dataset | None = None  # what the running (or last) training uses
        self._model_job_cancellable = False  # a prediction can be cancelled; a bundle load/save is short
        self.session = session
        self.runner = WorkerRunner(self)  # training and cross-validation
        self.model_runner = WorkerRunner(self)  # load, save, predict
        self.runner.idle.connect(self._update_buttons)
        self.model_runner.idle.connect(self._update_buttons)
        self._started = 0.0
        self._batch_clock = 0.0
        self._batches_done = 0
        self._epochs_total = 0
        self._folds = 1
        self._fold = 0
        self._progress_shown = 0.0  # perf_counter of the last progress bar update
        self._build()
        self._update_buttons()
        session.subscribe(self._on_session_changed)

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        self.model_box = QComboBox()
        self.model_box.addItems(MODEL_NAMES)
        for i, name in enumerate(MODEL_NAMES):
            self.model_box.setItemData(i, _MODEL_TIPS.get(name, "A frozen ImageNet network with a new head "
                                                                "(needs its weights file on this computer)"),
                                       Qt.ItemDataRole.ToolTipRole)
        self.model_box.setToolTip("The network to train; each comes with its recommended settings below")
        self.size_spin = RecommendedSpin(16, 1024, 16, "px", "Images are resized to this square size (pixels) "
                                         "before the network sees them; larger is slower")
        self.epochs_spin = RecommendedSpin(1, 1000, 1, "epochs", "Passes over the training images; training "
                                           "may stop earlier when validation stops improving")
        self.batch_spin = RecommendedSpin(1, 512, 1, "images", "Images per training step (batch size)")
        self.folds_spin = QSpinBox()
        self.folds_spin.setRange(1, 10)
        self.folds_spin.setValue(DEFAULT_FOLDS)  # train = the k-fold ensemble unless turned off
        self.folds_spin.setSpecialValueText("off")
        self.folds_spin.setSuffix(" patient groups")
        self.folds_spin.setToolTip("Off: one training with the validation patients set aside. 3 or more: "
                                   "cross-validation, training once per group of patients and testing on the group "
                                   "left out, so every image gets a prediction from a model that never saw it")
        self.validation_spin = QSpinBox()
        self.validation_spin.setRange(5, 50)
        self.validation_spin.setSingleStep(5)
        self.validation_spin.setSuffix(" % of patients")
        self.validation_spin.setValue(round(TrainConfig().validation_fraction * 100))
        self.validation_spin.setToolTip("Patients set aside (all their images, both classes) to decide when to stop "
                                        "and to choose the threshold; the model never trains on them")
        self.augment_check = QCheckBox("vary training images")
        self.augment_check.setChecked(True)
        self.augment_check.setToolTip("Augmentation: small random shifts, turns and brightness changes of the "
                                      "training images, so the model learns the anatomy rather than the exact pixels")
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("The random seed: the same number gives the same patients set aside and the "
                                  "same result; another number, another draw")
        self.model_box.currentTextChanged.connect(self._show_recommended)
        self._show_recommended(self.model_box.currentText())

        # One setting per row: the boxes show their numbers in words ("60 epochs (recommended)"),
        # too wide for two per row in a 470 px panel; the short last pair shares a row.
        form = QGridLayout()
        form.setVerticalSpacing(3)
        rows = (("Model", self.model_box), ("Image size", self.size_spin), ("Training", self.epochs_spin),
                ("Batch", self.batch_spin), ("Validation", self.validation_spin),
                ("Cross-validation", self.folds_spin))
        for row, (label, widget) in enumerate(rows):
            caption = QLabel(label)
            caption.setToolTip(widget.toolTip())
            form.addWidget(caption, row, 0)
            form.addWidget(widget, row, 1, 1, 3)
        seed_caption = QLabel("Random start")
        seed_caption.setToolTip(self.seed_spin.toolTip())
        form.addWidget(seed_caption, len(rows), 0)
        form.addWidget(self.seed_spin, len(rows), 1)
        form.addWidget(self.augment_check, len(rows), 2, 1, 2)
        form.setColumnStretch(1, 1)
        form.setColumnStretch(2, 1)

        self.start_button = QPushButton("Start training")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop training after the current batch: an ensemble keeps the models of the "
                                      "patient groups that finished, a single model its best epoch so far; or stop "
                                      "a prediction")
        self.load_button = QPushButton("Open model…")
        self.load_button.setToolTip("Open a model saved before (a .ctvmodel folder)")
        self.save_button = QPushButton("Save model…")
        self.save_button.setToolTip("Save the model under a name of your choice, to use it again later")
        self.predict_button = QPushButton("Predict dataset")
        self.predict_button.setToolTip("Run the model on every image of the open dataset")
        self.start_button.clicked.connect(self.start_training)
        self.cancel_button.clicked.connect(self.cancel)
        self.load_button.clicked.connect(self._load_clicked)
        self.save_button.clicked.connect(self._save_clicked)
        self.predict_button.clicked.connect(self.predict_dataset)
        buttons = QGridLayout()
        buttons.addWidget(self.start_button, 0, 0)
        buttons.addWidget(self.cancel_button, 0, 1)
        buttons.addWidget(self.predict_button, 0, 2)
        buttons.addWidget(self.load_button, 1, 0)
        buttons.addWidget(self.save_button, 1, 1)

        self.epoch_label = WrappingLabel("Not trained")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("")
        self.curves = CurvesWidget()
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(500)
        self.log.setMaximumHeight(70)
        self.model_label = WrappingLabel("No model")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.model_label)
        layout.addWidget(self.epoch_label)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.curves, 1)
        layout.addWidget(self.log)

    def _show_recommended(self, name: str) -> None:
        """The chosen model's recommended settings, marked as such in each box."""
        recipe = default_config(name)
        self.size_spin.set_recommended(recipe.input_size)
        self.epochs_spin.set_recommended(recipe.epochs)
        self.batch_spin.set_recommended(recipe.batch_size)

    # ------------------------------------------------------------------ state

    def _on_session_changed(self, change: Change) -> None:
        """Which buttons can be used follows the dataset and the model."""
        if change == "dataset" and self.runner.is_running() and self._another_dataset_open():
            self._log(f"another dataset is open now; this training goes on with {self._training_dataset.source}")
        if change != "predictions":
            self._update_buttons()

    def _another_dataset_open(self) -> bool:
        """The window shows another dataset than the one the running (or last) training uses."""
        current, trained_on = self.session.dataset, self._training_dataset
        return current is not None and trained_on is not None and current.source != trained_on.source

    def is_running(self) -> bool:
        return self.runner.is_running()

    def _update_buttons(self) -> None:
        training = self.runner.is_running()
        busy = training or self.model_runner.is_running()
        has_data = self.session.dataset is not None and len(self.session.dataset) > 0
        has_model = self.session.model is not None
        self.start_button.setEnabled(not busy and has_data)
        self.cancel_button.setEnabled(training or (self.model_runner.is_running() and self._model_job_cancellable))
        self.load_button.setEnabled(not busy)
        self.save_button.setEnabled(not busy and has_model)
        self.predict_button.setEnabled(not busy and has_model and has_data)
        for widget in (self.model_box, self.size_spin, self.epochs_spin, self.batch_spin, self.folds_spin,
                       self.validation_spin, self.seed_spin, self.augment_check):
            widget.setEnabled(not training)

    def overrides(self) -> dict[str, Any]:
        """The form as TrainConfig overrides (None = keep the model's recommended value)."""
        values: dict[str, Any] = {
            "input_size": self.size_spin.override(),
            "epochs": self.epochs_spin.override(),
            "batch_size": self.batch_spin.override(),
            "validation_fraction": round(self.validation_spin.value() / 100.0, 3),
            "seed": self.seed_spin.value(),
            "augment": self.augment_check.isChecked(),
        }
        return values

    # ------------------------------------------------------------------ training

    def start_training(self) -> Worker | None:
        """Train (or cross-validate) on the open dataset in the background."""
        dataset = self.session.dataset
        if dataset is None or self.runner.is_running() or self.model_runner.is_running():
            return None
        if self._model_unsaved and self.confirm_replace is not None and not self.confirm_replace(
                "Start training", [f"the model {self.session.model_source} (not saved: File > Save model as…)"]):
            return None
        name, overrides, folds = self.model_box.currentText(), self.overrides(), self.folds_spin.value()
        # The default (5) may be lowered by the core when a class has fewer patients; other values are asked for.
        asked = None if folds == DEFAULT_FOLDS else folds
        self._training_dataset = dataset

        engine = self.session.engine

        def job(on_event, should_stop):
            return engine.train(dataset, name, overrides, asked, on_event, should_stop)

        worker = Worker(job, "Training")
        worker.epoch_ended.connect(self._on_epoch_ended)
        worker.batch_ended.connect(self._on_batch_ended)
        worker.fold_started.connect(self._on_fold_started)
        worker.message.connect(self._on_message)
        worker.progress.connect(self._on_progress)
        worker.finished.connect(self._on_training_finished)
        worker.cancelled.connect(self._on_training_cancelled)
        worker.failed.connect(self._on_failed)
        self.curves.clear()
        self.log.clear()
        self._started = time.perf_counter()
        self._progress_shown = 0.0
        self._batches_done, self._epochs_total, self._folds, self._fold = 0, 0, max(folds, 1), 0
        self._cancelling = False
        self.epoch_label.setText("Starting (loading TensorFlow and images)…")
        self.progress_bar.setRange(0, 0)
        self.runner.start(worker)
        warm_up_in_background()  # what the results need, imported while the engine trains
        self._update_buttons()
        self.status.emit("training started")
        return worker

    def cancel(self) -> None:
        if self.runner.is_running():
            self.runner.cancel()
            self._cancelling = True
            self.epoch_label.setText("Cancelling… (after this batch; the best epoch so far is kept)")
            self.progress_bar.setFormat("cancelling…")
        elif self.model_runner.is_running() and self._model_job_cancellable:
            self.model_runner.cancel()
            self._cancelling = True
            self.epoch_label.setText("Cancelling the prediction…")
            self.progress_bar.setFormat("cancelling…")
        self._update_buttons()

    def _on_fold_started(self, event: Any) -> None:
        self._fold = event.fold
        self._folds = event.folds
        self._log(f"patient group {event.fold + 1}/{event.folds}: training on the others")

    def _on_epoch_ended(self, event: Any) -> None:
        self._epochs_total = event.epochs
        self.curves.add_epoch(event.epoch, event.logs, event.fold, epochs=event.epochs)
        self._log(f"epoch {event.epoch + 1}/{event.epochs}: {describe_logs(event.logs)}")

    def _on_batch_ended(self, event: Any) -> None:
        if getattr(event, "epochs", None):
            self._epochs_total = event.epochs
        now = time.perf_counter()
        if self._batches_done == 0:
            self._batch_clock = now  # loading and TensorFlow start-up are not batch time
        self._batches_done += 1
        per_batch = (now - self._batch_clock) / max(self._batches_done - 1, 1)
        epochs = self._expected_epochs()
        total = max(epochs * event.batches * self._folds, 1)
        done = (self._fold * epochs + event.epoch) * event.batches + event.batch + 1
        eta = per_batch * max(total - done, 0)
        if not self._cancelling and not self._progress_due(now, event.batch + 1 >= event.batches):
            return
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(min(done, total))
        fold = f"group {self._fold + 1}/{self._folds} · " if self._folds > 1 else ""
        where = f"{fold}epoch {event.epoch + 1}/{epochs}"
        if self._cancelling:
            # Until the engine stops, say so: a bar that keeps moving must not look like "Cancel did nothing".
            self.progress_bar.setFormat("cancelling…")
            self.epoch_label.setText(f"Cancelling… ({where}; the best epoch so far is kept)")
            return
        self.progress_bar.setFormat(f"batch {event.batch + 1}/{event.batches} · {format_eta(eta)} left")
        self.epoch_label.setText(where)

    def _expected_epochs(self) -> int:
        # The recipe's epoch count is known from the first EpochEnded; until then, the form's.
        return self._epochs_total or self.epochs_spin.value() or 1

    def _progress_due(self, now: float, last: bool = False) -> bool:
        """Whether the progress bar may be redrawn now (the last step of a run always is)."""
        if not last and now - self._progress_shown < PROGRESS_INTERVAL_S:
            return False
        self._progress_shown = now
        return True

    def _on_progress(self, done: int, total: int, what: str) -> None:
        if not self._progress_due(time.perf_counter(), done in (0, 1) or done >= total):
            return
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(done)
        self.progress_bar.setFormat(f"{what} {done}/{total}")

    def _on_message(self, event: Any) -> None:
        self._log(("⚠ " if event.level == "warning" else "") + event.text)

    def _log(self, text: str) -> None:
        self.log.appendPlainText(for_screen(text))

    def _on_training_finished(self, outcome: Any) -> None:
        """``outcome`` is an engine `TrainingOutcome` (also after a cancel: the best epoch is kept)."""
        self._cancelling = False
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)
        self.progress_bar.setFormat("done")
        seconds = time.perf_counter() - self._started
        self.curves.fit_to_data()
        self.epoch_label.setText(f"{for_screen(outcome.summary)} ({seconds:.0f} s)")
        handle = outcome.handle
        if handle is not None:
            if handle.kind == "trained" and handle.cancelled and handle.best_epoch is None:
                self._log("cancelled before the first epoch ended: the model is untrained")
            self._set_model(handle, handle.source)
        if outcome.predictions is not None:
            description = outcome.description
            if self._another_dataset_open():
                description += f" — of {self._training_dataset.source}, not the dataset open now"
            self.predictions_ready.emit(outcome.predictions, description)
        self.training_finished.emit(outcome)
        self.status.emit(self.epoch_label.text())

    def _on_training_cancelled(self) -> None:
        self._cancelling = False
        self.curves.fit_to_data()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setFormat("cancelled")
        self.epoch_label.setText("Cancelled before the first patient group finished: no model kept")
        self.training_cancelled.emit()

    def _on_failed(self, error: WorkerError) -> None:
        self._cancelling = False
        self.curves.fit_to_data()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setFormat("failed")
        self.epoch_label.setText(f"{error.title} failed: {for_screen(error.message)}")
        self.error.emit(error)

    @property
    def model_unsaved(self) -> bool:
        """A model trained in this session that is not saved yet."""
        return self._model_unsaved

    def _set_model(self, model: Any, source: str) -> None:
        self._model_unsaved = getattr(model, "kind", "bundle") != "bundle"
        source = for_screen(source)
        self.session.set_model(model, source)
        expected = for_screen(getattr(model, "expected", ""))
        self.model_label.setText(f"Model: {source}; threshold {model.threshold:.3f}"
                                 + (f"\nexpected on new images from the same source: {expected}" if expected else ""))
        if expected:
            self._log(f"expected on new images from the same source: {expected}")
        self.model_ready.emit(model)

    # ------------------------------------------------------------------ bundles and prediction

    def _load_clicked(self) -> None:
        from ctviewer.gui.model_files import ask_model_to_open

        folder = ask_model_to_open(self)
        if folder:
            self.load_bundle(folder)

    def _save_clicked(self) -> None:
        from ctviewer.gui.model_files import ask_model_save_path

        target = ask_model_save_path(self)
        if target:
            self.save_bundle(target)

    def _run_model_job(self, job: Any, title: str, on_finished: Any, cancellable: bool = False) -> Worker | None:
        if self.model_runner.is_running() or self.runner.is_running():
            self.status.emit("busy: wait for the running task to end")
            return None
        worker = Worker(job, title)
        worker.finished.connect(on_finished)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(lambda: self._on_model_job_cancelled(title))
        worker.progress.connect(self._on_progress)
        worker.message.connect(self._on_message)
        self._model_job_cancellable = cancellable
        self.model_runner.start(worker)
        warm_up_in_background()
        self._update_buttons()
        return worker

    def _on_model_job_cancelled(self, title: str) -> None:
        self._cancelling = False
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setFormat("cancelled")
        self.epoch_label.setText(f"{title} cancelled: the results shown before are kept")
        self.status.emit(f"{title} cancelled")

    def load_bundle(self, folder: str | Path) -> Worker | None:
        """Load a saved model folder (in the engine); it becomes the session's model."""
        engine, folder = self.session.engine, str(folder)
        worker = self._run_model_job(lambda on_event, should_stop: engine.load_bundle(folder),
                                     "Open model", self._on_model_opened)
        if worker is not None:
            self._busy(f"Opening the model {folder}… (the first time also starts the model engine)")
        return worker

    def _busy(self, text: str) -> None:
        self.epoch_label.setText(text)
        self.progress_bar.setRange(0, 0)  # moving: how long it takes is not known
        self.progress_bar.setFormat("")

    def _done(self, text: str, bar: str = "done") -> None:
        self.epoch_label.setText(text)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)
        self.progress_bar.setFormat(bar)

    def _on_model_opened(self, handle: Any) -> None:
        self._set_model(handle, handle.source)
        trained = f"trained on {handle.n_trained} images, " if getattr(handle, "n_trained", 0) else ""
        self._done(f"Model opened: {trained}threshold {handle.threshold:.3f}. Predict to see how it does "
                   "on the open images.", "model ready")

    def save_bundle(self, folder: str | Path) -> Worker | None:
        """Save the session's model as a bundle folder."""
        engine, model, folder = self.session.engine, self.session.model, str(folder)
        if model is None:
            self.status.emit("no model to save: train or open one first")
            return None
        worker = self._run_model_job(
            lambda on_event, should_stop: engine.save_bundle(model.id, folder),
            "Save model", lambda path: self._saved(str(path or folder)))
        if worker is not None:
            self._busy(f"Saving the model to {folder}…")
        return worker

    def export_model(self, fmt: str, folder: str | Path) -> Worker | None:
        """Export the session's model for use outside ctviewer (in the engine: converting takes a minute)."""
        engine, model, folder = self.session.engine, self.session.model, str(folder)
        if model is None:
            self.status.emit("no model to export: train or open one first")
            return None

        def job(on_event, should_stop):
            return engine.export(model.id, fmt, folder, on_event, should_stop)

        return self._run_model_job(job, "Export model", self._exported, cancellable=True)

    def _exported(self, result: Any) -> None:
        text = (f"model exported as {result.format} to {result.folder} ({result.size_bytes / 1e6:.1f} MB, "
                f"matches ctviewer within {result.max_abs_difference:.1e})")
        self._log(text)
        self.status.emit(text)
        self.exported.emit(str(result.folder))

    def _saved(self, folder: str) -> None:
        self._model_unsaved = False
        self._done(f"Saved to {folder}", "saved")
        self._log(f"model saved to {folder}")
        self.status.emit(f"Saved to {folder}")

    def predict_dataset(self) -> Worker | None:
        """Predict every image of the open dataset with the session's model (in the engine)."""
        engine, model, dataset = self.session.engine, self.session.model, self.session.dataset
        if model is None or dataset is None:
            self.status.emit("predicting needs a model and a dataset")
            return None

        def job(on_event, should_stop):
            return engine.predict(model.id, dataset, on_event, should_stop)

        what = describe_prediction_set(dataset, model)
        worker = self._run_model_job(job, "Predict", lambda pred: self._predicted(pred, what), cancellable=True)
        if worker is not None:
            self._busy(f"Predicting {len(dataset)} images…")
            self._cancelling = False
        return worker

    def _predicted(self, predictions: Any, what: str) -> None:
        self._done(f"Predicted {len(predictions)} images: see Results")
        self.predictions_ready.emit(predictions, what)

    # ------------------------------------------------------------------ export, settings, shutdown

    def export_plot(self, path: str | Path) -> Path:
        path = Path(path)
        self.curves.flush()
        self.curves.grab().save(str(path))
        return path

    def restore_settings(self, settings: QSettings) -> None:
        name = settings.value("training/model")
        if isinstance(name, str) and name in MODEL_NAMES:
            self.model_box.setCurrentText(name)
        for key, spin in (("size", self.size_spin), ("epochs", self.epochs_spin), ("batch", self.batch_spin),
                          ("folds", self.folds_spin), ("seed", self.seed_spin)):
            value = settings.value(f"training/{key}")
            if value is not None:
                try:
                    number = int(value)
                except (TypeError, ValueError):
                    continue
                if isinstance(spin, RecommendedSpin) and number <= 0:
                    continue  # 0 = "the model's recommended value", already shown
                spin.setValue(number)

    def save_settings(self, settings: QSettings) -> None:
        settings.setValue("training/model", self.model_box.currentText())
        for key, spin in (("size", self.size_spin), ("epochs", self.epochs_spin), ("batch", self.batch_spin)):
            settings.setValue(f"training/{key}", spin.override() or 0)  # 0: follow the model's recommendation
        settings.setValue("training/folds", self.folds_spin.value())
        settings.setValue("training/seed", self.seed_spin.value())

    def close_runners(self) -> None:
        """The window is closing: cancel what runs and start nothing new (late signals included)."""
        self.runner.close()
        self.model_runner.close()

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        """Cancel training and wait until it has stopped (the window is closing)."""
        self.close_runners()
        return self.runner.shutdown(timeout_ms) and self.model_runner.shutdown(timeout_ms)

    def wait_idle(self, timeout_ms: int = 60_000) -> bool:
        return self.runner.wait(timeout_ms) and self.model_runner.wait(timeout_ms)


def describe_prediction_set(dataset: Dataset, model: Any) -> str:
    """What predictions of ``model`` on ``dataset`` are, in words: the whole dataset, and whether
    (from the model's card or recorded split) it includes images the model was trained on."""
    overlap = training_overlap(dataset, getattr(model, "trained_on", "") or "", getattr(model, "split", None))
    what = f"all {len(dataset)} images of {Path(str(dataset.source)).name or dataset.source}"
    return f"{what} ({overlap.describe()})" if overlap.any else what


if __name__ == "__main__":  # a quick look: python -m ctviewer.gui.training_panel
    import sys

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv)
    panel = TrainingPanel(Session())
    panel.resize(420, 760)
    panel.show()
    sys.exit(app.exec())
