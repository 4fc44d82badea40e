"""Doctor findings: pitfalls in the dataset, split, training history, model and predictions,
each with its fix. The checks are `ctviewer.core.doctor.run_checks`, run in a worker:
the quick ones (data, split, history, predictions) in a thread whenever predictions arrive,
the full ones (the model's own checks and the histogram baseline) in the model engine on
request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from ctviewer.gui.form_widgets import wrap_rows
from ctviewer.gui.session import Change, Session
from ctviewer.gui.wording import for_screen
from ctviewer.gui.workers import Worker, WorkerError, WorkerRunner

_ICONS = {"error": "⛔", "warning": "⚠", "info": "ℹ"}
_TITLE = "<b>Doctor</b> — pitfall checks"
# New predictions are checked this long after they arrive: the Results panel is filled and drawn
# first (the quick checks run in a thread of this process and share its interpreter with the window).
QUICK_CHECKS_DELAY_MS = 250
# Findings about how the images would behave *outside* this app (e.g. exported as arrays for
# Keras' validation_split): information, unless the model really was trained that way (an error).
_ABOUT_EXPORT = {"tail-split-one-class": "If you export these images as arrays in this order: "}
_NOT_THIS_RUN = (" ctviewer's own training is not affected: it sets whole patients of both classes aside.")
# Fixes the core words for the command line, as they are done in the app.
_APP_FIX = {"slices-per-patient": "Read the patient-level numbers: switch Results to Patients (or Series); "
                                  "their 95 % ranges count patients, not slices."}


def shown_severity(finding: Any) -> str:
    """The severity the panel shows: a hazard for exported arrays is information, not a fault of this run."""
    if finding.code in _ABOUT_EXPORT and finding.severity == "warning":
        return "info"
    return finding.severity


def shown_message(finding: Any) -> str:
    """The finding's message as the panel says it (in plain words; the CLI keeps the core's)."""
    if finding.code in _ABOUT_EXPORT and finding.severity == "warning":
        return for_screen(_ABOUT_EXPORT[finding.code] + finding.message + _NOT_THIS_RUN)
    return for_screen(finding.message)


def describe_subject(dataset: Any, model: Any, model_source: str) -> str:
    """Which dataset (and model) the findings are about, in words."""
    if dataset is None:
        where = "no dataset"
    else:
        name = Path(str(dataset.source)).name or str(dataset.source)
        where = f"{name} ({len(dataset)} images)"
    return where + (f", model: {model_source}" if model is not None and model_source else "")


def quick_findings(dataset: Any, model: Any, predictions: Any, cache: Any, on_event: Any = None,
                   should_stop: Any = None) -> list[Any]:
    """The cheap checks (data, split, training history, predictions): no model run, no baseline.

    ``model`` is the session's `ModelHandle` (or None): its recorded split and history are checked.
    Runs in a worker thread of the GUI process: numpy only, no TensorFlow.
    """
    from ctviewer.core.doctor import run_checks

    return list(run_checks(dataset=dataset, split=getattr(model, "split", None),
                           history=getattr(model, "history", None), predictions=predictions,
                           baseline=False, cache=cache, on_event=on_event, should_stop=should_stop))


class DoctorPanel(QWidget):
    """A list of findings: severity and message, with evidence and the fix as child rows."""

    error = Signal(object)  # WorkerError
    findings_ready = Signal(object)  # list of Finding

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.runner = WorkerRunner(self)
        self.runner.idle.connect(self._run_queued)
        self.findings: list[Any] = []
        self._queued: bool | None = None  # a run asked for while one runs (True: full)
        self._due: bool | None = None  # a run asked for later (`run` with ``after_ms``)
        self._start_timer = QTimer(self)
        self._start_timer.setSingleShot(True)
        self._start_timer.timeout.connect(self._run_due)
        self._generation = 0  # bumped by clear(): answers of older runs are dropped
        self.subject = ""  # which dataset / model the findings shown are about
        self.title = QLabel(_TITLE)
        self.title.setWordWrap(True)
        self.subject_label = QLabel("")
        self.subject_label.setWordWrap(True)
        self.subject_label.setStyleSheet("color: #555;")
        self.full_button = QPushButton("Run full checks")
        self.full_button.setToolTip("Also run the model's own checks and compare with a simple histogram baseline")
        self.full_button.setEnabled(False)
        self.full_button.clicked.connect(self._full_clicked)
        head = QHBoxLayout()
        head.addWidget(self.title, 1)
        head.addWidget(self.full_button)
        self.tree = QTreeWidget()
        self.tree.setHeaderHidden(True)
        wrap_rows(self.tree)  # findings are sentences: wrapped, never cut to "…"
        self.tree.setMinimumHeight(80)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(head)
        layout.addWidget(self.subject_label)
        layout.addWidget(self.tree)
        self._placeholder("Findings appear here once there are predictions.")
        session.subscribe(self._on_session_changed)

    def _on_session_changed(self, change: Change) -> None:
        if change == "dataset":
            self.clear()

    def _placeholder(self, text: str) -> None:
        self.tree.clear()
        self.tree.addTopLevelItem(QTreeWidgetItem([text]))

    def clear(self) -> None:
        """Another dataset is open: the findings shown (and any still being made) are about the old one."""
        self._generation += 1
        self._queued = None
        self._due = None
        self._start_timer.stop()
        self.runner.cancel()
        self.findings = []
        self.subject = ""
        self.subject_label.setText("")
        self._placeholder("Findings appear here once there are predictions.")
        self.title.setText(_TITLE)
        self._done()

    def run(self, full: bool = False, after_ms: int = 0) -> None:
        """Check what the session holds (in the background): now, or in ``after_ms`` ms (what it
        holds then; the panel counts as running meanwhile)."""
        if self.session.dataset is None and self.session.predictions is None:
            return
        if after_ms > 0:
            self._due = full if self._due is None else (self._due or full)
            self._placeholder("Checking…")
            self._start_timer.start(after_ms)
            return
        if self.runner.is_running():
            self._queued = full if self._queued is None else (self._queued or full)
            return
        dataset, model, predictions = self.session.dataset, self.session.model, self.session.predictions
        if full and model is not None:
            # The model's own checks run the model: that happens in the engine process.
            engine = self.session.engine
            worker = Worker(lambda on_event, should_stop: engine.doctor(
                dataset, model.id, predictions, on_event, should_stop),
                "Doctor")
        else:
            cache = self.session.cache
            worker = Worker(lambda on_event, should_stop: quick_findings(dataset, model, predictions, cache, on_event,
                                                                         should_stop), "Doctor")
        generation = self._generation
        subject = describe_subject(dataset, model, self.session.model_source)
        worker.finished.connect(lambda found: self._on_finished(generation, subject, found))
        worker.failed.connect(lambda error: generation == self._generation and self._on_failed(error))
        worker.cancelled.connect(lambda: generation == self._generation and self._on_cancelled())
        worker.message.connect(lambda event: self.title.setText(f"<b>Doctor</b> — {event.text}…"))
        self.full_button.setText("Stop checks")
        self.full_button.setEnabled(True)
        self._placeholder("Checking…")
        self.runner.start(worker)

    def _on_finished(self, generation: int, subject: str, findings: list[Any]) -> None:
        if generation != self._generation:
            self._done()  # checks of a dataset that is no longer open: dropped
            return
        self.subject = subject
        self.subject_label.setText(f"About {subject}")
        self.set_findings(findings)

    def _full_clicked(self) -> None:
        if self.runner.is_running():
            self._queued = None  # a stop means stop, not "run the next one"
            self.runner.cancel()
            self.full_button.setEnabled(False)
        else:
            self.run(full=True)

    def _on_cancelled(self) -> None:
        self.set_findings(self.findings)  # the last complete findings again, not a partial run
        self.title.setText("<b>Doctor</b> — full checks stopped (earlier findings shown)")

    def _on_failed(self, error: WorkerError) -> None:
        self._placeholder(f"The checks failed: {for_screen(error.message)}")
        self.title.setText(_TITLE)
        self._done()
        self.error.emit(error)

    def _done(self) -> None:
        """The button back to "Run full checks" once no checks run (their thread's end says so too)."""
        if self.runner.is_running():
            return  # an answer arrives before its thread has ended; `_run_queued` comes then
        self.full_button.setText("Run full checks")
        self.full_button.setEnabled(self.session.model is not None)

    def _run_queued(self) -> None:
        """The checks' thread has ended: run what was asked for meanwhile, else show the panel idle."""
        queued, self._queued = self._queued, None
        if queued is not None:
            self.run(queued)
        else:
            self._done()

    def _run_due(self) -> None:
        due, self._due = self._due, None
        if due is not None and not self.runner.closed:
            self.run(due)

    def is_running(self) -> bool:
        """Checks are running, or due to start."""
        return self.runner.is_running() or self._start_timer.isActive()

    def set_findings(self, findings: list[Any]) -> None:
        self.findings = list(findings)
        self.title.setText(_TITLE)
        self.tree.clear()
        if not self.findings:
            self.tree.addTopLevelItem(QTreeWidgetItem(["✓ no problems found"]))
        for finding in self.findings:
            severity = shown_severity(finding)
            item = QTreeWidgetItem([f"{_ICONS.get(severity, '•')} {shown_message(finding)}"])
            item.setToolTip(0, f"{finding.code} ({severity})")
            if finding.fix:
                item.addChild(QTreeWidgetItem([f"Fix: {_APP_FIX.get(finding.code) or for_screen(finding.fix)}"]))
            if finding.evidence:
                shown = ", ".join(f"{k}={v}" for k, v in list(finding.evidence.items())[:6])
                item.addChild(QTreeWidgetItem([f"Evidence: {shown}"]))
            self.tree.addTopLevelItem(item)
            item.setExpanded(severity != "info")
        self._done()
        self.findings_ready.emit(self.findings)

    def shutdown(self) -> None:
        self.runner.shutdown(60_000)
