"""The entry point: --screenshot, --demo, arguments, and a window that shows before TensorFlow loads."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtGui import QImage

from ctviewer.gui.app import run

REPO = Path(__file__).resolve().parents[2]


def test_screenshot_of_a_folder_writes_the_window_png(demo_folder: Path, tmp_path: Path, qapp):
    out = tmp_path / "shots" / "main.png"
    assert run(["--screenshot", str(out), "--size", "1000x700", str(demo_folder)]) == 0
    image = QImage(str(out))
    assert (image.width(), image.height()) == (1000, 700)
    # Not a blank grab: the CT (grey levels) and the panels (light background) are both there.
    greys = {image.pixelColor(x, y).lightness() for x in range(0, 1000, 25) for y in range(0, 700, 25)}
    assert len(greys) > 20
    # The folder was remembered in this test's own settings file.
    settings = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "ctviewer", "ctviewer")
    assert str(demo_folder.resolve()) in settings.value("recent_folders", [])


def test_bad_arguments_exit_2_with_a_message(capsys, qapp, tmp_path: Path):
    assert run([str(tmp_path / "missing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert run(["--size", "big"]) == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_demo_screenshot_in_a_fresh_process_without_tensorflow(tmp_path: Path):
    """`python -m ctviewer --demo --screenshot OUT` exits 0, and TensorFlow was never imported."""
    out = tmp_path / "demo.png"
    code = (
        "import sys\n"
        "from ctviewer.__main__ import main\n"
        f"rc = main(['--demo', '--screenshot', {str(out)!r}])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'sklearn'))\n"
        "print('heavy modules:', loaded[:3])\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "CTVIEWER_STARTUP_TIMING": "1",
           "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"), "PYTHONPATH": str(REPO)}
    started = time.time()
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "heavy modules: []" in result.stdout
    assert QImage(str(out)).width() == 1400
    timing = dict(line.split()[1:] for line in result.stdout.splitlines() if line.startswith("ctviewer-timing"))
    shown, first_image = float(timing["window_shown"]) - started, float(timing["first_image"]) - started
    print(f"\nwindow shown after {shown:.2f} s, first image after {first_image:.2f} s (demo made on first use)")
    assert shown < first_image
    assert shown < 15  # loose: a loaded 2-core CI machine; bench/bench_gui.py measures it properly


def test_panel_choices_and_window_state_persist(qtbot, gui_settings: QSettings, _private_cache: Path):
    from ctviewer.core.data.cache import Cache
    from ctviewer.gui.main_window import MainWindow
    from ctviewer.gui.session import Session

    first = MainWindow(gui_settings, Session(cache=Cache(_private_cache)))
    qtbot.addWidget(first)
    first.training.epochs_spin.setValue(7)
    first.training.model_box.setCurrentText("seed")
    first.viewer.apply_preset("lung")
    first.tags_dock.hide()
    first.close()

    second = MainWindow(gui_settings, Session(cache=Cache(_private_cache)))
    qtbot.addWidget(second)
    assert second.training.epochs_spin.value() == 7
    assert second.training.model_box.currentText() == "seed"
    assert second.viewer.preset == "lung"
    assert second.tags_dock.isHidden() and not second.results_dock.isHidden()
    second.close()
