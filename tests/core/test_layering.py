"""The core stays headless: importing any core module must not pull in Qt or pyqtgraph."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import ctviewer.core

FORBIDDEN = ("PySide6", "pyqtgraph", "PyQt5", "PyQt6", "qtpy")


def test_core_modules_never_import_qt() -> None:
    modules = [f"ctviewer.core.{m.name}" for m in pkgutil.iter_modules(ctviewer.core.__path__)]
    modules += ["ctviewer.cli"] + [f"ctviewer.cli.{m.name}" for m in pkgutil.iter_modules(
        [str(Path(ctviewer.core.__path__[0]).parent / "cli")])]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"core/cli imported GUI toolkits: {done.stdout}"


def test_core_sources_have_no_qt_import_lines() -> None:
    root = Path(ctviewer.core.__path__[0])
    for path in root.rglob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                assert not any(name in stripped for name in FORBIDDEN), f"{path}: {stripped}"


def test_config_module_never_imports_tensorflow() -> None:
    """The GUI reads MODEL_NAMES from ctviewer.core.config at start-up, before TensorFlow may load."""
    code = (
        "import sys\n"
        "import ctviewer.core.config\n"
        "assert ctviewer.core.config.MODEL_NAMES\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"ctviewer.core.config imported: {done.stdout}"
