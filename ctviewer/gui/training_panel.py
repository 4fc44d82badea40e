"""Training panel: recipe choices, Start/Cancel, live curves, per-batch progress with ETA;
load/save a model bundle; predict the dataset. All TensorFlow work runs in `workers`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
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
from ctviewer.core.model.config import MODEL_NAMES, TrainConfig
from ctviewer.gui.curves import CurvesWidget
from ctviewer.gui.session import Session
from ctviewer.gui.workers import Worker, WorkerError, WorkerRunner

RECIPE = 0  # spin-box value meaning "use the recipe's default"


def format_eta(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TrainingPanel(QWidget):
    """Starts and follows training; hands the model and predictions to the window."""

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
        self._build()
        self._update_buttons()

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        self.model_box = QComboBox()
        self.model_box.addItems(MODEL_NAMES)
        self.model_box.setToolTip("default: the tuned recipe; seed: the original question's network; "
                                  "others: frozen ImageNet backbones (need their weights file offline)")
        self.size_spin = self._recipe_spin(0, 1024, 16, "Input size in pixels (square)")
        self.epochs_spin = self._recipe_spin(0, 1000, 1, "Epochs (early stopping may end sooner)")
        self.batch_spin = self._recipe_spin(0, 512, 1, "Images per batch")
        self.folds_spin = QSpinBox()
        self.folds_spin.setRange(1, 10)
        self.folds_spin.setSpecialValueText("hold-out")
        self.folds_spin.setToolTip("1 = one patient-grouped validation hold-out; k >= 2 = k-fold cross-validation")
        self.validation_spin = QDoubleSpinBox()
        self.validation_spin.setRange(0.05, 0.5)
        self.validation_spin.setSingleStep(0.05)
        self.validation_spin.setValue(TrainConfig().validation_fraction)
        self.validation_spin.setToolTip("Fraction of patients held out for validation (early stopping, threshold)")
        self.augment_check = QCheckBox("augmentation")
        self.augment_check.setChecked(True)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("Random seed: same seed, same split and same result")

        # Two label/field pairs per row: the panel stays short enough for a laptop screen.
        form = QGridLayout()
        pairs = (("Model", self.model_box), ("Input size", self.size_spin), ("Epochs", self.epochs_spin),
                 ("Batch size", self.batch_spin), ("Validation", self.validation_spin), ("Folds", self.folds_spin),
                 ("Seed", self.seed_spin), ("", self.augment_check))
        for i, (label, widget) in enumerate(pairs):
            row, col = divmod(i, 2)
            form.addWidget(QLabel(label), row, 2 * col)
            form.addWidget(widget, row, 2 * col + 1)
        form.setColumnStretch(1, 1)
        form.setColumnStretch(3, 1)

        self.start_button = QPushButton("Start training")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop training after the current batch, keeping the best epoch so far; "
                                      "or stop a prediction")
        self.load_button = QPushButton("Load model…")
        self.save_button = QPushButton("Save model…")
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

        self.epoch_label = QLabel("Not trained")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("")
        self.curves = CurvesWidget()
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(500)
        self.log.setMaximumHeight(70)
        self.model_label = QLabel("No model")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.model_label)
        layout.addWidget(self.epoch_label)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.curves, 1)
        layout.addWidget(self.log)

    @staticmethod
    def _recipe_spin(low: int, high: int, step: int, tip: str) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(low, high)
        spin.setSingleStep(step)
        spin.setSpecialValueText("recipe")  # shown at the minimum (0): the model's own default
        spin.setToolTip(tip + "; 'recipe' = the model's default")
        return spin

    # ------------------------------------------------------------------ state

    def set_dataset(self, dataset: Dataset | None) -> None:
        if self.runner.is_running() and self._another_dataset_open():
            self._log(f"another dataset is open now; this training goes on with {self._training_dataset.source}")
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
        """The form as TrainConfig overrides (None = keep the recipe's value)."""
        values: dict[str, Any] = {
            "input_size": self.size_spin.value() or None,
            "epochs": self.epochs_spin.value() or None,
            "batch_size": self.batch_spin.value() or None,
            "validation_fraction": round(self.validation_spin.value(), 3),
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
        name, overrides, folds = self.model_box.currentText(), self.overrides(), self.folds_spin.value()
        self._training_dataset = dataset

        engine = self.session.engine

        def job(on_event, should_stop):
            return engine.train(dataset, name, overrides, folds, on_event, should_stop)

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
        self._batches_done, self._epochs_total, self._folds, self._fold = 0, 0, max(folds, 1), 0
        self.epoch_label.setText("Starting (loading TensorFlow and images)…")
        self.progress_bar.setRange(0, 0)
        self.runner.start(worker)
        self._update_buttons()
        self.status.emit("training started")
        return worker

    def cancel(self) -> None:
        if self.runner.is_running():
            self.runner.cancel()
            self.epoch_label.setText("Cancelling after this batch…")
        elif self.model_runner.is_running() and self._model_job_cancellable:
            self.model_runner.cancel()
            self.epoch_label.setText("Cancelling the prediction…")

    def _on_fold_started(self, event: Any) -> None:
        self._fold = event.fold
        self._folds = event.folds
        self._log(f"fold {event.fold + 1}/{event.folds}")

    def _on_epoch_ended(self, event: Any) -> None:
        self._epochs_total = event.epochs
        self.curves.add_epoch(event.epoch, event.logs, event.fold)
        shown = ", ".join(f"{k} {v:.3f}" for k, v in event.logs.items() if k in
                          ("loss", "val_loss", "accuracy", "val_accuracy", "auc", "val_auc"))
        self._log(f"epoch {event.epoch + 1}/{event.epochs}: {shown}")

    def _on_batch_ended(self, event: Any) -> None:
        now = time.perf_counter()
        if self._batches_done == 0:
            self._batch_clock = now  # loading and TensorFlow start-up are not batch time
        self._batches_done += 1
        per_batch = (now - self._batch_clock) / max(self._batches_done - 1, 1)
        epochs = self._expected_epochs()
        total = max(epochs * event.batches * self._folds, 1)
        done = (self._fold * epochs + event.epoch) * event.batches + event.batch + 1
        eta = per_batch * max(total - done, 0)
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(min(done, total))
        self.progress_bar.setFormat(f"batch {event.batch + 1}/{event.batches} · ETA {format_eta(eta)}")
        fold = f"fold {self._fold + 1}/{self._folds} · " if self._folds > 1 else ""
        self.epoch_label.setText(f"{fold}epoch {event.epoch + 1}/{epochs}")

    def _expected_epochs(self) -> int:
        # The recipe's epoch count is known from the first EpochEnded; until then, the form's.
        return self._epochs_total or self.epochs_spin.value() or 1

    def _on_progress(self, done: int, total: int, what: str) -> None:
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(done)
        self.progress_bar.setFormat(f"{what} {done}/{total}")

    def _on_message(self, event: Any) -> None:
        self._log(("⚠ " if event.level == "warning" else "") + event.text)

    def _log(self, text: str) -> None:
        self.log.appendPlainText(text)

    def _on_training_finished(self, outcome: Any) -> None:
        """``outcome`` is an engine `TrainingOutcome` (also after a cancel: the best epoch is kept)."""
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)
        self.progress_bar.setFormat("done")
        seconds = time.perf_counter() - self._started
        self.epoch_label.setText(f"{outcome.summary} ({seconds:.0f} s)")
        handle = outcome.handle
        if handle is not None:
            if handle.cancelled and handle.best_epoch is None:
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
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setFormat("cancelled")
        self.epoch_label.setText("Cancelled (no model kept: cross-validation needs every fold)")
        self.training_cancelled.emit()

    def _on_failed(self, error: WorkerError) -> None:
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setFormat("failed")
        self.epoch_label.setText(f"{error.title} failed: {error.message}")
        self.error.emit(error)

    @property
    def model_unsaved(self) -> bool:
        """A model trained in this session that is not saved in a bundle folder yet."""
        return self._model_unsaved

    def _set_model(self, model: Any, source: str) -> None:
        self._model_unsaved = getattr(model, "kind", "bundle") != "bundle"
        self.session.set_model(model, source)
        self.model_label.setText(f"Model: {source}")
        self.model_ready.emit(model)

    # ------------------------------------------------------------------ bundles and prediction

    def _load_clicked(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self, "Open model folder", str(Path.home()))
        if folder:
            self.load_bundle(folder)

    def _save_clicked(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self, "Save model into folder", str(Path.home()))
        if folder:
            self.save_bundle(folder)

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
        self._update_buttons()
        return worker

    def _on_model_job_cancelled(self, title: str) -> None:
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setFormat("cancelled")
        self.epoch_label.setText(f"{title} cancelled: the results shown before are kept")
        self.status.emit(f"{title} cancelled")

    def load_bundle(self, folder: str | Path) -> Worker | None:
        """Load a saved model folder (in the engine); it becomes the session's model."""
        engine, folder = self.session.engine, str(folder)
        return self._run_model_job(lambda on_event, should_stop: engine.load_bundle(folder),
                                   "Open model", lambda handle: self._set_model(handle, handle.source))

    def save_bundle(self, folder: str | Path) -> Worker | None:
        """Save the session's model as a bundle folder."""
        engine, model, folder = self.session.engine, self.session.model, str(folder)
        if model is None:
            self.status.emit("no model to save: train or open one first")
            return None
        return self._run_model_job(
            lambda on_event, should_stop: engine.save_bundle(model.id, folder),
            "Save model", lambda _path: self._saved(folder))

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
        self._log(f"model saved to {folder}")
        self.status.emit(f"model saved to {folder}")

    def predict_dataset(self) -> Worker | None:
        """Predict every image of the open dataset with the session's model (in the engine)."""
        engine, model, dataset = self.session.engine, self.session.model, self.session.dataset
        if model is None or dataset is None:
            self.status.emit("predicting needs a model and a dataset")
            return None

        def job(on_event, should_stop):
            return engine.predict(model.id, dataset, on_event, should_stop)

        what = "whole dataset"
        if model.kind != "bundle":
            what += " (includes the training images: optimistic)"
        return self._run_model_job(job, "Predict", lambda pred: self.predictions_ready.emit(pred, what),
                                   cancellable=True)

    # ------------------------------------------------------------------ export, settings, shutdown

    def export_plot(self, path: str | Path) -> Path:
        path = Path(path)
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
                    spin.setValue(int(value))
                except (TypeError, ValueError):
                    pass

    def save_settings(self, settings: QSettings) -> None:
        settings.setValue("training/model", self.model_box.currentText())
        for key, spin in (("size", self.size_spin), ("epochs", self.epochs_spin), ("batch", self.batch_spin),
                          ("folds", self.folds_spin), ("seed", self.seed_spin)):
            settings.setValue(f"training/{key}", spin.value())

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        """Cancel training and wait until it has stopped (the window is closing)."""
        self.model_runner.cancel()
        return self.runner.shutdown(timeout_ms)

    def wait_idle(self, timeout_ms: int = 60_000) -> bool:
        return self.runner.wait(timeout_ms) and self.model_runner.wait(timeout_ms)


if __name__ == "__main__":  # a quick look: python -m ctviewer.gui.training_panel
    import sys

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv)
    panel = TrainingPanel(Session())
    panel.resize(420, 760)
    panel.show()
    sys.exit(app.exec())
