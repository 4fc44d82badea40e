"""The layering holds: the core is grouped by role and stays headless, the CLI never needs Qt.

The contract itself is in pyproject.toml ([tool.importlinter]); import-linter checks every import,
function-local ones included. The subprocess test below also catches an import made at run time.
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import ctviewer.core

FORBIDDEN = ("PySide6", "pyqtgraph", "PyQt5", "PyQt6", "qtpy")


def test_core_modules_never_import_qt() -> None:
    modules = [m.name for m in pkgutil.walk_packages(ctviewer.core.__path__, "ctviewer.core.")]
    modules += ["ctviewer.cli"] + [f"ctviewer.cli.{m.name}" for m in pkgutil.iter_modules(
        [str(Path(ctviewer.core.__path__[0]).parent / "cli")])]
    modules += ["ctviewer.engine"] + [f"ctviewer.engine.{m.name}" for m in pkgutil.iter_modules(
        [str(Path(ctviewer.core.__path__[0]).parent / "engine")])]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"core/cli/engine imported GUI toolkits: {done.stdout}"


def test_core_sources_have_no_qt_import_lines() -> None:
    root = Path(ctviewer.core.__path__[0])
    for path in root.rglob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                assert not any(name in stripped for name in FORBIDDEN), f"{path}: {stripped}"


def test_config_module_never_imports_tensorflow() -> None:
    """The GUI reads MODEL_NAMES from ctviewer.core.model.config at start-up, before TensorFlow may load."""
    code = (
        "import sys\n"
        "import ctviewer.core.model.config\n"
        "assert ctviewer.core.model.config.MODEL_NAMES\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"ctviewer.core.model.config imported: {done.stdout}"


def test_import_contract_of_pyproject_is_kept() -> None:
    """data <- metrics <- model <- training <- explain <- doctor; no GUI below the GUI (pyproject.toml)."""
    from importlinter.cli import lint_imports

    root = Path(ctviewer.core.__path__[0]).parents[1]
    assert (root / "pyproject.toml").is_file()
    cwd = Path.cwd()
    try:
        os.chdir(root)
        code = lint_imports(config_filename="pyproject.toml", no_cache=True)
    finally:
        os.chdir(cwd)
    assert code == 0, "import contract broken: run `lint-imports` for the chain"
