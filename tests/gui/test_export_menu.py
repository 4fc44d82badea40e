"""Model > Export for deployment: runs in the engine (the window stays free) and writes a checked export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtWidgets import QFileDialog, QInputDialog

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def seed_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The question's seed network at 32 px, 1 epoch, on a tiny demo set, saved as a bundle."""
    from ctviewer.core.data.cache import Cache
    from ctviewer.core.data.dataset import discover
    from ctviewer.core.data.demo import make_demo_dataset
    from ctviewer.core.model.bundle import save_bundle
    from ctviewer.core.model.recipes import config_for
    from ctviewer.core.training.fit import fit

    folder = tmp_path_factory.mktemp("export_menu")
    make_demo_dataset(folder / "data", n_patients=3, slices_per_patient=2, size=48)
    cache = Cache(folder / "cache")
    dataset = discover(folder / "data", positive="contrast", cache=cache)
    trained = fit(dataset, config_for("seed", input_size=32, epochs=1, batch_size=4), cache=cache)
    return save_bundle(trained, folder / "bundle")


def _menu_action(window, text: str):
    for menu_action in window.menuBar().actions():
        for action in menu_action.menu().actions():
            if action.text().replace("&", "") == text:
                return action
    raise AssertionError(f"no menu item {text!r}")


def test_model_export_runs_in_the_engine_and_writes_a_checked_export(window, qtbot, seed_bundle: Path,
                                                                     tmp_path: Path, monkeypatch):
    window.training.load_bundle(seed_bundle)  # the engine's first call also starts it: TensorFlow loads
    qtbot.waitUntil(lambda: window.session.model is not None or window.last_error is not None, timeout=300_000)
    assert window.last_error is None, f"{window.last_error.message}\n{window.last_error.details}"
    qtbot.waitUntil(lambda: not window.training.model_runner.is_running(), timeout=10_000)

    monkeypatch.setattr(QInputDialog, "getItem", staticmethod(lambda *a, **k: ("savedmodel", True)))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(tmp_path)))
    with qtbot.waitSignal(window.training.exported, timeout=300_000) as exported:
        _menu_action(window, "Export for deployment…").trigger()
        # The menu returns at once: the conversion runs in the engine process, not on the GUI thread.
        assert window.training.model_runner.is_running()
    assert window.last_error is None, window.last_error
    folder = Path(exported.args[0])
    assert folder.parent == tmp_path and folder.name.startswith("ctviewer-savedmodel-")
    assert (folder / "saved_model" / "saved_model.pb").is_file() and (folder / "predict_example.py").is_file()
    contract = json.loads((folder / "preprocessing.json").read_text())
    assert contract["model_id"] == window.session.model.model_id
    assert contract["verification"]["max_abs_difference"] <= 1e-5
    assert "exported as savedmodel" in window.statusBar().currentMessage()


def test_export_without_a_model_says_so(window, monkeypatch):
    asked = []
    monkeypatch.setattr(QInputDialog, "getItem", staticmethod(lambda *a, **k: asked.append(a) or ("onnx", True)))
    _menu_action(window, "Export for deployment…").trigger()
    assert not asked and "no model to export" in window.statusBar().currentMessage()
