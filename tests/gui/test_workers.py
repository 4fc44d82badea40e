"""WorkerRunner: 'running' means the same to every caller as it does to the buttons that follow ``idle``."""

from __future__ import annotations

import time
from types import SimpleNamespace

from _engines import FakeEngine  # tests/gui/_engines.py (pytest puts this folder on sys.path)

from ctviewer.core.errors import Cancelled
from ctviewer.gui.workers import Worker, WorkerRunner


def test_a_runner_stays_busy_from_start_until_it_has_said_idle(qtbot):
    runner = WorkerRunner()
    seen: dict[str, bool] = {}

    def on_finished(_result) -> None:
        # The job's answer is here and its thread ends now (on a loaded machine, later); the thread's
        # own 'finished' is still queued for this GUI thread, so ``idle`` has not been said yet.
        assert runner.wait(5_000)
        seen["after the thread ended, before idle"] = runner.is_running()

    worker = Worker(lambda on_event, should_stop: 42, "Sum")
    worker.finished.connect(on_finished)
    runner.idle.connect(lambda: seen.setdefault("at idle", runner.is_running()))
    with qtbot.waitSignal(runner.idle, timeout=5_000):
        runner.start(worker)
        assert runner.is_running()
    assert seen == {"after the thread ended, before idle": True, "at idle": False}
    assert not runner.is_running() and runner.worker is None


def test_opening_a_folder_while_another_still_loads_opens_the_new_one(window, open_folder, demo_folder, qtbot):
    def slow_scan(on_event, should_stop):
        while not should_stop():  # a large folder still being scanned
            time.sleep(0.005)
        raise Cancelled("scan replaced")

    window._start_load(Worker(slow_scan, "Open dataset"))
    assert window.loader.is_running()
    open_folder(window, demo_folder)  # replaces the running scan: the loader must still start the new one
    assert window.session.dataset is not None and len(window.session.dataset) == 12
    qtbot.waitUntil(lambda: not window.loader.is_running(), timeout=5_000)
    assert not window.loader.closed


class _SavingEngine(FakeEngine):
    def save_bundle(self, model_id, folder):
        return folder

    def load_bundle(self, folder):
        time.sleep(0.2)
        return SimpleNamespace(id="m2", kind="bundle", source=folder, threshold=0.5, n_trained=12)


def test_after_a_save_the_open_button_works_once_the_panel_says_nothing_runs(window, use_engine, qtbot, tmp_path,
                                                                             monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    use_engine(_SavingEngine())
    panel = window.training
    panel._set_model(SimpleNamespace(id="m1", kind="trained", threshold=0.4), "trained in this session")
    seen: list[tuple[bool, bool]] = []

    def on_saved(text: str) -> None:  # in the save's answer, before its thread's end has reached the GUI
        if text.startswith("Saved to"):
            panel.model_runner.wait(5_000)  # the thread has ended now (on a loaded machine: later still)
            seen.append((panel.model_runner.is_running(), panel.load_button.isEnabled()))

    panel.status.connect(on_saved)
    panel.save_bundle(tmp_path / "m.ctvmodel")
    qtbot.waitUntil(lambda: not panel.model_runner.is_running(), timeout=10_000)
    assert seen == [(True, False)]  # "running" and the greyed-out button agree
    assert panel.load_button.isEnabled()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(tmp_path / "m")))
    panel.load_button.click()
    assert panel.progress_bar.maximum() == 0 and panel.epoch_label.text().startswith("Opening the model")
    qtbot.waitUntil(lambda: panel.epoch_label.text().startswith("Model opened"), timeout=10_000)
