"""GUI: start-up to window shown, against a bare PySide6 + pyqtgraph window; event-loop latency.

Start-up: each program runs as a fresh subprocess (offscreen Qt, a private HOME and cache)
and prints the wall-clock time of its first event-loop turn after ``show()``; the parent
took the time just before starting it. ctviewer is ``python -m ctviewer --screenshot OUT``
with ``CTVIEWER_STARTUP_TIMING=1`` (the app's own timing hook); the bare window is a
QMainWindow holding a pyqtgraph ImageView, timed the same way. Plain ``python -c pass``
gives the interpreter's share.

Latency: in a fresh process, the real main window opens the SIIM folder, then a 10 ms
QTimer records the gap between its ticks, first idle, then while the training panel trains
the default recipe in its worker thread (`ctviewer.gui.workers`), curves updating.
Latency = gap - 10 ms. The training phase is split into "starting" (TensorFlow import,
image loading, graph tracing: up to the first batch) and "batches".

Event handling alone: the same window and key presses while a stand-in engine (no TensorFlow)
sends the events of a fast 5-fold training (an epoch every 50 ms, 10 batches each): what the
GUI thread itself spends per training event, without the engine's CPU use or its start-up.

Run alone: ``python bench/run_all.py --only gui [--quick]``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench_common as bc
import numpy as np

TICK_MS = 10
BARE_WINDOW = r"""
import sys, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
import pyqtgraph as pg
app = QApplication(sys.argv[:1])
pg.setConfigOptions(imageAxisOrder="row-major")
win = QMainWindow()
win.setCentralWidget(pg.ImageView())
win.resize(1400, 860)
win.show()
QTimer.singleShot(0, lambda: (print(f"ctviewer-timing window_shown {time.time():.4f}", flush=True), app.quit()))
app.exec()
"""


def _private_env(home: Path) -> dict[str, str]:
    return {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"), "CTVIEWER_CACHE_DIR": str(home / "cache"),
            "CTVIEWER_STARTUP_TIMING": "1"}


def _start_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds to 'window_shown', seconds to exit) of one fresh process."""
    t0 = time.time()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    exited = time.time() - t0
    for line in result.stdout.splitlines():
        if line.startswith("ctviewer-timing window_shown"):
            return float(line.split()[-1]) - t0, exited
    if cmd[-1] == "pass" and result.returncode == 0:
        return exited, exited
    raise RuntimeError(f"{' '.join(cmd[:4])}...: no window_shown line (exit {result.returncode}): "
                       f"{(result.stdout + result.stderr)[-600:]}")


def _timings(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Seconds from just before the process starts to each ``ctviewer-timing NAME T`` line it prints."""
    t0 = time.time()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    found = {}
    for line in result.stdout.splitlines():
        if line.startswith("ctviewer-timing "):
            _, name, stamp = line.split()
            found[name] = float(stamp) - t0
    if result.returncode != 0 or "first_image" not in found:
        tail = (result.stdout + result.stderr)[-600:]
        raise RuntimeError(f"{' '.join(cmd[:4])}...: exit {result.returncode}: {tail}")
    return found


def first_image_rows(runs: int, folder: Path) -> list[list[str]]:
    """Launch on a folder with an empty cache each time: window shown, then first image shown."""
    samples = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="ctviewer-bench-gui-cold-") as tmp:
            home = Path(tmp)
            cmd = [sys.executable, "-m", "ctviewer", "--screenshot", str(home / "shot.png"), str(folder)]
            samples.append(_timings(cmd, _private_env(home) | {"PYTHONPATH": str(bc.REPO)}))
    rows = []
    for name in ("window_shown", "first_image"):
        values = [s[name] for s in samples]
        rows.append([name.replace("_", " "), f"{values[0]:.2f}", f"{statistics.median(values):.2f}",
                     f"{min(values):.2f}", f"{max(values):.2f}"])
    return rows


def startup_rows(runs: int) -> list[list[str]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="ctviewer-bench-gui-") as tmp:
        home = Path(tmp)
        env = _private_env(home)
        programs = {
            "python -c pass (interpreter only)": [sys.executable, "-c", "pass"],
            "bare PySide6 + pyqtgraph window": [sys.executable, "-c", BARE_WINDOW],
            "ctviewer (python -m ctviewer)": [sys.executable, "-m", "ctviewer", "--screenshot",
                                              str(home / "shot.png")],
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in programs}
        for _ in range(runs):  # interleaved, so a burst of load from others hits all programs alike
            for name, cmd in programs.items():
                times[name].append(_start_once(cmd, env | {"PYTHONPATH": str(bc.REPO)}))
    bare = statistics.median(t for t, _ in times["bare PySide6 + pyqtgraph window"])
    for name, samples in times.items():
        shown = [t for t, _ in samples]
        med = statistics.median(shown)
        rows.append([name, f"{shown[0]:.2f}", f"{med:.2f}", f"{min(shown):.2f}",
                     "-" if "interpreter" in name else f"{med / bare:.2f}"])
    return rows


# --------------------------------------------------------------------------- latency (child process)


@dataclass(frozen=True)
class LatencyResult:
    idle_ms: list[float]
    starting_ms: list[float]
    batches_ms: list[float]
    train_seconds: float
    epochs: int
    n_images: int
    error: str = ""
    worst_stall: str = ""  # where the longest gap of the training ended
    key_ms: tuple[float, ...] = ()  # preset key press -> new levels drawn, while training
    gui_cpu_s: float = 0.0  # CPU time of the GUI process (all its threads) while training


def latency_child(data: str, epochs: int, idle_s: float) -> LatencyResult:
    """Open the real window offscreen, time a 10 ms QTimer idle and while the panel trains."""
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QSettings, QTimer

    from ctviewer.gui.app import _make_app, wait_until
    from ctviewer.gui.main_window import MainWindow

    _app = _make_app(offscreen=True)  # keep a reference: the QApplication must outlive the window
    import pyqtgraph as pg

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    tmp = tempfile.mkdtemp(prefix="ctviewer-bench-latency-")
    window = MainWindow(QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat))
    window.show()
    window.open_source(data, remember=False)
    if not wait_until(lambda: window.viewer.image is not None or window.last_error is not None, 120):
        return LatencyResult([], [], [], 0.0, epochs, 0, "the dataset did not load")
    if window.last_error is not None:
        return LatencyResult([], [], [], 0.0, epochs, 0, window.last_error.message)
    window.browser.thumbnails.wait(60_000)
    wait_until(lambda: False, 0.5)

    gaps: list[tuple[float, float]] = []  # (time, gap in ms)
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append((now, 1000.0 * (now - last[0]) - TICK_MS))
        last[0] = now

    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    last[0] = time.perf_counter()
    timer.start()
    idle_start = time.perf_counter()
    wait_until(lambda: False, idle_s)
    idle_end = time.perf_counter()

    # A window-preset key (1, 2) pressed every 0.5 s while training, as a user would: latency = from
    # when the press was due (a busy event loop delays it, as it would delay a real key) to the end of
    # the event-loop turn that drew the new levels. QTest sends it through Qt's shortcut handling.
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    key_ms: list[float] = []
    keys_on = [False]

    def press_due(due: float) -> None:
        if not keys_on[0]:
            return
        QTest.keyClick(window, Qt.Key.Key_1 if len(key_ms) % 2 else Qt.Key.Key_2)
        QTimer.singleShot(0, lambda: key_ms.append(1000.0 * (time.perf_counter() - due)))
        schedule_press()

    def schedule_press() -> None:
        due = time.perf_counter() + 0.5
        QTimer.singleShot(500, lambda: press_due(due))

    panel = window.training
    panel.model_box.setCurrentText("default")
    panel.epochs_spin.setValue(epochs)
    panel.folds_spin.setValue(1)
    finished: list[Any] = []
    first_batch: list[float] = []
    panel.training_finished.connect(finished.append)
    train_start = time.perf_counter()
    cpu_start = time.process_time()
    worker = panel.start_training()
    if worker is None:
        return LatencyResult([], [], [], 0.0, epochs, 0, "training did not start")
    worker.batch_ended.connect(lambda _e: first_batch or first_batch.append(time.perf_counter()))
    events: list[tuple[float, str]] = []  # what the worker said last before each moment
    worker.progress.connect(lambda d, t, what: events.append((time.perf_counter(), f"{what} {d}/{t}")))
    worker.batch_ended.connect(lambda e: events.append(
        (time.perf_counter(), f"epoch {e.epoch + 1} batch {e.batch + 1}/{e.batches}")))
    worker.epoch_ended.connect(lambda e: events.append((time.perf_counter(), f"end of epoch {e.epoch + 1}")))
    window.viewer.setFocus()
    keys_on[0] = True
    schedule_press()
    ok = wait_until(lambda: bool(finished) or window.last_error is not None, 900)
    train_end = time.perf_counter()
    gui_cpu = time.process_time() - cpu_start
    keys_on[0] = False
    timer.stop()
    error = "" if ok and window.last_error is None else (
        window.last_error.message if window.last_error is not None else "training timed out")
    split = first_batch[0] if first_batch else train_end
    n = len(window.session.dataset) if window.session.dataset is not None else 0
    window.close()
    worst_stall = ""
    training_gaps = [(t, g) for t, g in gaps if train_start < t <= train_end]
    if training_gaps:
        t_end, gap = max(training_gaps, key=lambda tg: tg[1])
        t_begin = t_end - (gap + TICK_MS) / 1000.0
        before = [label for t, label in events if t <= t_begin]
        during = [label for t, label in events if t_begin < t <= t_end]
        worst_stall = (f"{gap:.0f} ms from t = {t_begin - train_start:.1f} s after Start; last worker event "
                       f"before it: {before[-1] if before else 'none (TensorFlow import)'}; "
                       f"events queued during it: {', '.join(during[:3]) or 'none'}"
                       f"{' ...' if len(during) > 3 else ''}")
    return LatencyResult(
        idle_ms=[g for t, g in gaps if idle_start < t <= idle_end],
        starting_ms=[g for t, g in gaps if train_start < t <= split],
        batches_ms=[g for t, g in gaps if split < t <= train_end],
        train_seconds=train_end - train_start, epochs=epochs, n_images=n, error=error, worst_stall=worst_stall,
        key_ms=tuple(key_ms), gui_cpu_s=gui_cpu,
    )


class _EventsOnlyEngine:
    """Stands in for the engine: sends a fast 5-fold training's events, trains nothing."""

    def __init__(self, epoch_s: float, epochs: int, folds: int = 5, batches: int = 10) -> None:
        self.epoch_s, self.epochs, self.folds, self.batches = epoch_s, epochs, folds, batches

    def train(self, dataset: Any, model_name: str, overrides: Any, folds: Any, on_event: Any = None,
              should_stop: Any = None) -> Any:
        from ctviewer.core.errors import Cancelled
        from ctviewer.core.events import BatchEnded, EpochEnded, FoldStarted

        for fold in range(self.folds):
            on_event(FoldStarted(fold=fold, folds=self.folds))
            for epoch in range(self.epochs):
                for batch in range(self.batches):
                    time.sleep(self.epoch_s / self.batches)
                    on_event(BatchEnded(batch=batch, batches=self.batches, epoch=epoch))
                logs = {"loss": 0.7 - 0.01 * epoch, "val_loss": 0.72 - 0.008 * epoch, "accuracy": 0.5 + 0.01 * epoch,
                        "val_accuracy": 0.55, "auc": 0.6, "val_auc": 0.62}
                on_event(EpochEnded(epoch=epoch, epochs=self.epochs, logs=logs, fold=fold))
                if should_stop():
                    break
        raise Cancelled("stand-in training over")  # nothing to keep: the panel says cancelled

    def shutdown(self, timeout_s: float = 30.0) -> None:
        pass


def events_only_child(data: str, epoch_s: float, epochs: int) -> tuple[list[float], float, float]:
    """(key press -> drawn ms, GUI CPU s, wall s) while `_EventsOnlyEngine` sends its events."""
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QSettings, Qt, QTimer
    from PySide6.QtTest import QTest

    from ctviewer.gui.app import _make_app, wait_until
    from ctviewer.gui.main_window import MainWindow

    _app = _make_app(offscreen=True)
    import pyqtgraph as pg

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    tmp = tempfile.mkdtemp(prefix="ctviewer-bench-events-")
    window = MainWindow(QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat))
    window.show()
    window.open_source(data, remember=False)
    wait_until(lambda: window.viewer.image is not None, 120)
    window.browser.thumbnails.wait(60_000)
    wait_until(lambda: False, 0.5)
    window.session.engine = _EventsOnlyEngine(epoch_s, epochs)
    key_ms: list[float] = []
    keys_on = [True]

    def press_due(due: float) -> None:
        if keys_on[0]:
            QTest.keyClick(window, Qt.Key.Key_1 if len(key_ms) % 2 else Qt.Key.Key_2)
            QTimer.singleShot(0, lambda: key_ms.append(1000.0 * (time.perf_counter() - due)))
            schedule_press()

    def schedule_press() -> None:
        due = time.perf_counter() + 0.1
        QTimer.singleShot(100, lambda: press_due(due))

    over: list[bool] = []
    window.training.training_cancelled.connect(lambda: over.append(True))
    window.viewer.setFocus()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    window.training.start_training()
    schedule_press()
    wait_until(lambda: bool(over), 600)
    keys_on[0] = False
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    window.close()
    return key_ms, cpu, wall


def _stats(name: str, ms: list[float]) -> list[str]:
    if not ms:
        return [name, "0", "-", "-", "-", "-"]
    a = np.maximum(np.asarray(ms), 0.0)
    return [name, str(a.size), f"{np.percentile(a, 50):.1f}", f"{np.percentile(a, 99):.1f}", f"{a.max():.1f}",
            f"{np.mean(a > 100):.1%}"]


def run(quick: bool = False, data: Path | None = None) -> None:
    runs = 1 if quick else 3
    rows = startup_rows(runs)
    bc.print_table(
        f"GUI start-up to window shown, seconds ({runs} fresh process(es) each, interleaved; offscreen Qt)",
        ["program", "1st run", "median", "best", "x bare window"], rows,
        notes=[
            ("time from just before the subprocess starts to the first event-loop turn after show() "
            "(ctviewer: its CTVIEWER_STARTUP_TIMING hook; bare: the same QTimer.singleShot(0) print)"),
            ("ctviewer shows its full window (browser, viewer, training and results panels) without "
            "importing TensorFlow; disk pages are warm (no cache dropping on a shared machine)"),
        ],
    )

    folder = Path(data or bc.DEFAULT_DATA)
    cold_runs = 1 if quick else 5
    bc.print_table(
        f"GUI start-up on {folder.name} ({cold_runs} fresh process(es), each with an empty cache), seconds",
        ["shown", "1st run", "median", "best", "worst"], first_image_rows(cold_runs, folder),
        notes=[("`python -m ctviewer --screenshot OUT FOLDER` with CTVIEWER_STARTUP_TIMING=1; time from just "
                "before the process starts; the first image is shown as soon as it is read, before the rest "
                "of the folder is scanned")],
    )

    epochs = 2 if quick else 10
    idle_s = 1.0 if quick else 3.0
    result = bc.run_isolated(latency_child, str(folder), epochs, idle_s)
    if result.error:
        raise RuntimeError(f"latency measurement failed: {result.error}")
    bc.print_table(
        f"GUI event-loop latency, ms late per {TICK_MS} ms QTimer tick (real window, SIIM {result.n_images} "
        f"images, default recipe training {result.epochs} epochs in the worker: {result.train_seconds:.0f} s)",
        ["phase", "ticks", "p50", "p99", "max", "ticks > 100 ms"],
        [
            _stats("idle (dataset open)", result.idle_ms),
            _stats("training: starting (TF import, loading, tracing)", result.starting_ms),
            _stats("training: batches (curves updating)", result.batches_ms),
            _stats("training: preset key press -> drawn (ms, not late)", list(result.key_ms)),
        ],
        notes=[("latency = measured gap between ticks - 10 ms; Qt coalesces missed ticks, so a long stall "
               "shows as one large gap"),
               f"worst stall while training: {result.worst_stall}",
               (f"GUI process CPU while training: {result.gui_cpu_s:.1f} s in {result.train_seconds:.0f} s "
                "(all its threads; the engine process trains)"),
               f"load average at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}"],
    )

    epoch_s, epochs = 0.05, 20 if quick else 40
    key_ms, cpu, wall = bc.run_isolated(events_only_child, str(folder), epoch_s, epochs)
    planned = 5 * epochs * epoch_s
    bc.print_table(
        f"GUI alone: preset key press while a stand-in engine sends a 5-fold training's events ({5 * epochs} "
        f"epochs, one every {epoch_s * 1000:.0f} ms, 10 batches each; no TensorFlow)",
        ["phase", "presses", "p50", "p99", "max", "presses > 100 ms"],
        [_stats("preset key press -> drawn (ms)", key_ms)],
        notes=[f"GUI process CPU: {cpu:.1f} s in {wall:.1f} s (the events take {planned:.0f} s to send; longer "
               "means the GUI fell behind)",
               f"load average at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}"],
    )
