"""Run as a script by test_clinician_flow: the app as a user quits it mid-training.

Opens a tiny folder, starts training, and once batches are running chooses File > Quit,
all inside the real event loop (``app.exec()``), then exits with the loop's code. Prints
what was still alive. Usage: python _close_during_training.py DATA_FOLDER WORK_FOLDER
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path


def main(data: str, work: str) -> int:
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from ctviewer.core.data.cache import Cache
    from ctviewer.gui.main_window import MainWindow
    from ctviewer.gui.session import Session

    app = QApplication([sys.argv[0]])
    settings = QSettings(str(Path(work) / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings, Session(cache=Cache(Path(work) / "cache")))
    window.show()
    batches: list = []
    quit_action = next(a for a in window.menuBar().actions()[0].menu().actions() if a.text() == "&Quit")

    def start() -> None:
        panel = window.training
        panel.model_box.setCurrentText("default")
        panel.size_spin.setValue(32)
        panel.epochs_spin.setValue(40)
        panel.batch_spin.setValue(2)
        worker = panel.start_training()
        worker.batch_ended.connect(batches.append)
        worker.batch_ended.connect(lambda _e: len(batches) == 3 and QTimer.singleShot(0, quit_action.trigger))

    window.dataset_loaded.connect(lambda _ds: QTimer.singleShot(0, start))
    window.open_source(data)
    QTimer.singleShot(280_000, app.quit)  # never hang the test run
    code = app.exec()
    engine = window.session.engine
    alive = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    runners = [r.is_running() for r in window._runners()]
    print(f"batches={len(batches)} visible={window.isVisible()} engine_running={engine.is_running()} "
          f"runners_running={any(runners)} python_threads={alive}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
