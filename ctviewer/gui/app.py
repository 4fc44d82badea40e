"""Start the desktop application: ``run(argv) -> exit code``.

Flags: a folder (or labels.csv) to open, ``--demo``, ``--screenshot OUT.png`` (render the
window offscreen once the data is shown, then exit), ``--self-test`` (offscreen: open a tiny
demo set, train a tiny model for one epoch, predict, exit 0 when every step worked).

TensorFlow is never imported here: the window shows first, TensorFlow loads with the first
training or prediction, in a worker thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_STARTED = time.time()
TIMING_ENV = "CTVIEWER_STARTUP_TIMING"  # set to 1: print when the window and the first image showed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctviewer", description="CT image browser and CNN workbench (desktop app)")
    parser.add_argument("source", nargs="?", help="folder of class subfolders, a labels.csv, or an image")
    parser.add_argument("--demo", action="store_true", help="open the bundled synthetic CT demo dataset")
    parser.add_argument("--screenshot", metavar="OUT.png", help="render the window offscreen to OUT.png and exit")
    parser.add_argument("--self-test", action="store_true",
                        help="offscreen: load a tiny demo set, train one epoch, predict, exit 0 if all worked")
    parser.add_argument("--size", default="1400x860", help="window size WxH (default 1400x860)")
    parser.add_argument("--verbose", action="store_true",
                        help="let TensorFlow's start-up and debug lines through to the log (hidden by default)")
    return parser


def wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    """Run the event loop until ``predicate()`` is true or the time is up."""
    from PySide6.QtCore import QEventLoop

    loop = QEventLoop()
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        loop.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.01)
    return True


def _make_app(offscreen: bool) -> object:
    if offscreen:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtWidgets import QApplication

    QCoreApplication.setOrganizationName("ctviewer")
    QCoreApplication.setApplicationName("ctviewer")
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "ctviewer"])
    _set_icon(app)
    return app


def _set_icon(app: object) -> None:
    from PySide6.QtGui import QGuiApplication, QIcon

    from ctviewer.resources import icon_paths

    icon = QIcon()
    for path in icon_paths().values():
        icon.addFile(str(path))
    app.setWindowIcon(icon)  # type: ignore[attr-defined]
    QGuiApplication.setDesktopFileName("ctviewer")  # matches the menu entry on Wayland


def _settings() -> object:
    from PySide6.QtCore import QSettings

    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "ctviewer", "ctviewer")


def run(argv: Sequence[str] | None = None) -> int:
    """Open the main window (blocking until it closes), or do one offscreen job; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--engine"]:
        # A frozen (PyInstaller) app starts its model engine by running itself with --engine.
        from ctviewer.engine.server import main as engine_main

        return engine_main(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the message
        return int(exc.code or 0)
    if args.source and not Path(args.source).exists():
        print(f"ctviewer: {args.source}: no such file or folder", file=sys.stderr)
        return 2
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        print(f"ctviewer: --size {args.size!r}: use WIDTHxHEIGHT, e.g. 1400x860", file=sys.stderr)
        return 2
    offscreen = bool(args.screenshot or args.self_test)
    if args.verbose:
        os.environ["CTVIEWER_VERBOSE"] = "1"  # read by the engine process (ctviewer.core.model.tf_runtime)
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the engine's TensorFlow: no C++ log noise
    app = _make_app(offscreen)

    import pyqtgraph as pg

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    from ctviewer.gui.main_window import MainWindow

    window = MainWindow(_settings())
    if offscreen:
        window.resize(width, height)
    window.show()
    _report_timing(window, app)
    if args.self_test:
        from ctviewer.gui.self_test import self_test

        return self_test(window)
    if args.source:
        window.open_source(args.source)
    elif args.demo:
        window.open_demo()
    if args.screenshot:
        return screenshot(window, Path(args.screenshot), expect_data=bool(args.source or args.demo))
    return int(app.exec())


def _report_timing(window: object, app: object) -> None:
    if not os.environ.get(TIMING_ENV):
        return
    from PySide6.QtCore import QTimer

    # The first event-loop turn after show() is when the window is actually on screen.
    QTimer.singleShot(0, lambda: print(f"ctviewer-timing window_shown {time.time():.4f}", flush=True))
    printed: list[bool] = []

    def first_image(_path: str) -> None:
        if not printed:
            printed.append(True)
            print(f"ctviewer-timing first_image {time.time():.4f}", flush=True)

    window.viewer.image_shown.connect(first_image)


def screenshot(window: object, out: Path, expect_data: bool, timeout_s: float = 120.0) -> int:
    """Wait for the data (and thumbnails) to show, render the window to ``out``, close it."""
    if expect_data:
        # The whole folder, not only its first image (shown while the rest is still being read).
        ready = wait_until(lambda: (window.viewer.image is not None and window.session.dataset is not None
                                    and not window.loader.is_running()) or window.last_error is not None, timeout_s)
        if window.last_error is not None:
            print(f"ctviewer: {window.last_error.message}", file=sys.stderr)
            window.close()
            return 1
        if not ready:
            print("ctviewer: timed out waiting for the dataset to load", file=sys.stderr)
            window.close()
            return 1
        window.browser.thumbnails.wait(30_000)
    wait_until(lambda: False, 0.3)  # let layouts and queued thumbnails settle
    out.parent.mkdir(parents=True, exist_ok=True)
    ok = window.grab().save(str(out))
    window.close()
    if not ok:
        print(f"ctviewer: {out}: could not write the PNG", file=sys.stderr)
        return 1
    print(f"ctviewer: screenshot written to {out}")
    return 0
