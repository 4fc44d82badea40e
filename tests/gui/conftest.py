"""GUI fixtures: private QSettings and folders per test, a tiny demo dataset, the real window."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

try:
    import pytestqt  # noqa: F401
    from PySide6.QtCore import QSettings
except ImportError:  # a headless install (core only): the GUI tests are not collected at all
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(autouse=True)
def gui_settings(tmp_path: Path) -> QSettings:
    """Each test's own settings file: nothing read from or written to the user's settings."""
    folder = tmp_path / "settings"
    folder.mkdir()
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, str(folder))
        QSettings.setPath(QSettings.Format.NativeFormat, scope, str(folder))
    return QSettings(str(folder / "ctviewer.ini"), QSettings.Format.IniFormat)


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 patients per class, 2 slices each, 64 x 64 px: 12 CT DICOM files in class folders."""
    from ctviewer.core.data.demo import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "demo", n_patients=3, slices_per_patient=2, size=64)


@pytest.fixture
def window(qtbot, gui_settings: QSettings, _private_cache: Path):
    """The real main window with private settings and cache; closed (workers stopped) after the test."""
    from ctviewer.core.data.cache import Cache
    from ctviewer.gui.main_window import MainWindow
    from ctviewer.gui.session import Session

    win = MainWindow(gui_settings, Session(cache=Cache(_private_cache)))
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()


@pytest.fixture
def open_folder(qtbot) -> Callable:
    """open_folder(window, folder): open through the window's loader and wait for the first image."""

    def _open(win, folder: Path | str) -> None:
        with qtbot.waitSignal(win.dataset_loaded, timeout=60_000):
            win.open_source(str(folder))
        qtbot.waitUntil(lambda: win.viewer.image is not None, timeout=10_000)

    return _open


@pytest.fixture
def use_engine(window, open_folder, demo_folder: Path) -> Callable:
    """use_engine(engine): the demo folder open in the window, ``engine`` in place of the model engine."""

    def _use(engine):
        open_folder(window, demo_folder)
        window.session.engine = engine
        return engine

    return _use
