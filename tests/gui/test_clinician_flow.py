"""The desktop app as a clinician uses it (issue 14): quit while training, save under a new name,
the training-images mark after reopening a model, a typed threshold, a doctor that follows the
open folder, the caption on the image, and the feedback while things run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from _dialogs import answer_next_question  # tests/gui/_dialogs.py (pytest puts this folder on sys.path)
from _engines import FakeEngine
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from ctviewer.core.errors import Cancelled
from ctviewer.core.events import BatchEnded
from ctviewer.core.metrics.predictions import Predictions
from ctviewer.gui.caption import Call, image_caption
from ctviewer.gui.main_window import HELP_TEXT
from ctviewer.gui.model_files import model_save_target

REPO = Path(__file__).resolve().parents[2]


def _predictions_for(dataset, threshold: float = 0.5) -> Predictions:
    """Made-up probabilities for every image of ``dataset`` (positive images high)."""
    items = dataset.items
    probs = np.array([0.8 if it.label == dataset.positive else 0.2 for it in items]) + np.linspace(0, 0.1, len(items))
    return Predictions(paths=[it.path for it in items], probs=np.clip(probs, 0, 1), threshold=threshold,
                       classes=(dataset.negative, dataset.positive), labels=[it.label for it in items],
                       patients=[it.patient for it in items])


# --------------------------------------------------------------------------- 1. quit while training


@pytest.mark.slow
def test_quitting_during_training_exits_0_with_every_thread_stopped(demo_folder: Path, tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen", "CTVIEWER_CACHE_DIR": str(tmp_path)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("_close_during_training.py")),
                           str(demo_folder), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    out = done.stdout + done.stderr
    assert "Destroyed while thread" not in out, out
    assert done.returncode == 0, out
    assert "batches=3" in done.stdout or "batches=4" in done.stdout, out  # quit while training really ran
    assert "engine_running=False runners_running=False python_threads=[]" in done.stdout, out
    print(f"\nquit during training: process ended after {seconds:.0f} s (includes TensorFlow start-up)")


# --------------------------------------------------------------------------- 2 + 3. save, reopen, the mark


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a training and two predictions in the engine: minutes on a loaded machine
def test_save_under_a_new_name_then_reopen_keeps_the_training_images_mark(window, open_folder, demo_folder,
                                                                          qtbot, tmp_path: Path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    open_folder(window, demo_folder)
    panel = window.training
    panel.model_box.setCurrentText("default")
    panel.size_spin.setValue(32)
    panel.epochs_spin.setValue(1)
    panel.batch_spin.setValue(4)
    done: list = []
    panel.training_finished.connect(done.append)
    assert panel.start_training() is not None
    # TensorFlow's start-up and a 3-fold training: over 200 s when other trainings share the CPU.
    qtbot.waitUntil(lambda: bool(done) or window.last_error is not None, timeout=600_000)
    assert window.last_error is None, window.last_error

    # The whole dataset after training: the mark is there.
    with qtbot.waitSignal(panel.predictions_ready, timeout=300_000) as fresh:
        panel.predict_dataset()
    assert "training images" in fresh.args[1] and "optimistic" in window.results.source_label.text()

    # Save: a name typed into a save dialog (a folder that does not exist yet).
    typed = tmp_path / "deep" / ("a-long-folder-name-" * 6) / "my model"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(typed), "")))
    width_before = panel.minimumSizeHint().width()
    qtbot.waitUntil(lambda: panel.save_button.isEnabled(), timeout=10_000)  # the prediction's thread has ended
    panel.save_button.click()
    qtbot.waitUntil(lambda: not panel.model_runner.is_running() and "Saving" not in panel.epoch_label.text(),
                    timeout=120_000)
    target = model_save_target(typed)
    assert window.last_error is None, window.last_error
    assert target.name == "my model.ctvmodel" and (target / "model_card.json").is_file()
    assert panel.epoch_label.text() == f"Saved to {target}"
    assert panel.progress_bar.format() == "saved" and not panel.model_unsaved
    # The long path wraps: the panel asks for no more width than before.
    assert panel.minimumSizeHint().width() <= width_before

    # Reopen it (as after a restart: everything comes from the saved card and split).
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(target)))
    opened: list = []
    panel.model_ready.connect(opened.append)
    panel.load_button.click()  # usable at once: "not running" above means its button is enabled again
    assert panel.progress_bar.maximum() == 0 and panel.epoch_label.text().startswith("Opening the model")
    qtbot.waitUntil(lambda: bool(opened) or window.last_error is not None, timeout=120_000)
    assert window.last_error is None, window.last_error
    handle = opened[0]
    assert handle.kind == "bundle" and handle.trained_on
    qtbot.waitUntil(lambda: not panel.model_runner.is_running(), timeout=10_000)
    assert panel.epoch_label.text().startswith("Model opened") and "threshold" in panel.epoch_label.text()
    qtbot.waitUntil(lambda: panel.predict_button.isEnabled(), timeout=10_000)
    with qtbot.waitSignal(panel.predictions_ready, timeout=300_000) as again:
        panel.predict_dataset()
    assert "training images" in again.args[1] and "optimistic" in again.args[1]
    np.testing.assert_allclose(again.args[0].probs, fresh.args[0].probs, atol=1e-6)


def test_save_target_gets_the_model_suffix_once():
    assert model_save_target("/x/ward 3").name == "ward 3.ctvmodel"
    assert model_save_target("/x/ward.CTVMODEL").name == "ward.CTVMODEL"
    assert model_save_target("/x/v1.2").name == "v1.2.ctvmodel"


# --------------------------------------------------------------------------- 4. typed threshold


def test_a_threshold_typed_into_the_box_is_applied_on_enter(window, open_folder, demo_folder, qtbot):
    open_folder(window, demo_folder)
    window.results.set_predictions(_predictions_for(window.session.dataset), "made up")
    spin = window.results.spin
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, "0.55")
    assert window.results.threshold == pytest.approx(0.5)  # nothing applied while typing
    qtbot.keyClick(spin, Qt.Key.Key_Return)
    assert window.results.threshold == pytest.approx(0.55)
    assert spin.value() == pytest.approx(0.55) and window.results.slider.value() == 550
    assert window.results.confusion.point.threshold == pytest.approx(0.55)


# --------------------------------------------------------------------------- 5. doctor


def test_doctor_is_cleared_for_another_folder_and_names_what_it_checked(window, open_folder, demo_folder, qtbot,
                                                                        tmp_path: Path):
    import shutil

    open_folder(window, demo_folder)
    window.results.set_predictions(_predictions_for(window.session.dataset), "made up")
    doctor = window.results.doctor
    qtbot.waitUntil(lambda: bool(doctor.findings) and not doctor.is_running(), timeout=30_000)
    assert doctor.subject.startswith(f"{demo_folder.name} ({len(window.session.dataset)} images)")
    assert demo_folder.name in doctor.subject_label.text()
    # Class-ordered folder: the tail-split hazard is information about exported arrays.
    tail = [doctor.tree.topLevelItem(i).text(0) for i in range(doctor.tree.topLevelItemCount())
            if "validation_split" in doctor.tree.topLevelItem(i).text(0)]
    assert tail and all(t.startswith("ℹ If you export these images as arrays") for t in tail)

    other = tmp_path / "other"
    shutil.copytree(demo_folder / "contrast", other / "contrast")
    open_folder(window, other)
    assert doctor.findings == [] and doctor.subject == ""
    assert doctor.tree.topLevelItem(0).text(0).startswith("Findings appear here")


def test_a_late_doctor_answer_about_the_old_folder_is_dropped(window, open_folder, demo_folder, qtbot):
    open_folder(window, demo_folder)
    doctor = window.results.doctor
    gate = threading.Event()

    class _SlowEngine:
        def doctor(self, dataset, model_id, predictions, on_event=None, should_stop=None):
            gate.wait(10)
            from ctviewer.core.doctor.findings import Finding

            return [Finding("small-class", "warning", "about the old folder", {}, "")]

        def shutdown(self, timeout_s: float = 30.0) -> None:
            gate.set()

    window.session.engine = _SlowEngine()
    window.session.model = SimpleNamespace(id="m1", kind="bundle", split=None, history=None)
    doctor.run(full=True)
    window.results.set_predictions(None)  # another folder was opened meanwhile
    gate.set()
    qtbot.waitUntil(lambda: not doctor.is_running(), timeout=10_000)
    qtbot.wait(50)
    assert doctor.findings == []
    window.session.model = None


# --------------------------------------------------------------------------- 8. caption


def test_caption_says_file_patient_true_class_probability_threshold_and_call():
    item = SimpleNamespace(patient="P07", label="no_contrast")
    call = Call(probability=0.071, threshold=0.051, positive="contrast", negative="no_contrast")
    text = image_caption("/data/no_contrast/P07/IM3.dcm", item, call)
    assert text.splitlines() == ["IM3.dcm", "Patient P07 · true class: no_contrast",
                                 "Probability of contrast 0.071 ≥ threshold 0.051 → contrast (WRONG)"]
    assert image_caption("/a/b.png", None, None).splitlines() == ["b.png", "No prediction for this image yet"]


def test_the_image_on_screen_carries_its_caption_and_the_browser_follows_the_wheel(window, open_folder,
                                                                                   demo_folder, qtbot):
    open_folder(window, demo_folder)
    dataset = window.session.dataset
    path = window.viewer.current_path()
    item = next(it for it in dataset.items if it.path == path)
    assert window.viewer.caption().splitlines()[:2] == [Path(path).name, f"Patient {item.patient} · true class: "
                                                        f"{item.label}"]
    window.results.set_predictions(_predictions_for(dataset), "made up")
    caption = window.viewer.caption()
    assert f"Probability of {dataset.positive}" in caption and "threshold 0.500 →" in caption
    window.results.spin.setValue(0.95)  # the caption follows the threshold
    assert "threshold 0.950 →" in window.viewer.caption()

    # The wheel steps to the next slice: the browser selection goes with it.
    window.viewer.view_box.on_slice_step(1)
    shown = window.viewer.current_path()
    assert shown != path and window.browser.tree.currentIndex().data(Qt.ItemDataRole.UserRole + 2) == shown
    assert Path(shown).name in window.viewer.caption()
    # The overlay's colour scale shows with the overlay.
    window.viewer.overlay_check.setChecked(True)
    assert window.viewer.scale_box.isVisible() and all(w.isVisible() for w in window.viewer.scale_widgets)


# --------------------------------------------------------------------------- 9. feedback


class _FakeTrainingEngine(FakeEngine):
    """Stands in for the engine: a training that sends batches until it is told to stop."""

    def __init__(self) -> None:
        self.batches = 0

    def train(self, dataset, model_name, overrides, folds, on_event=None, should_stop=None):
        while not should_stop():
            on_event(BatchEnded(batch=self.batches % 5, batches=5, epoch=self.batches // 5))
            self.batches += 1
            time.sleep(0.01)
        for _ in range(5):  # the engine finishes its batch after the cancel arrived
            on_event(BatchEnded(batch=0, batches=5, epoch=3))
            time.sleep(0.01)
        raise Cancelled("train cancelled")


def test_cancel_says_cancelling_until_the_training_stops(window, use_engine, qtbot):
    engine = use_engine(_FakeTrainingEngine())
    panel = window.training
    panel.start_training()
    qtbot.waitUntil(lambda: engine.batches > 3, timeout=10_000)
    panel.cancel_button.click()
    assert panel.epoch_label.text().startswith("Cancelling")
    qtbot.wait(30)  # batch events still arriving
    assert panel.epoch_label.text().startswith("Cancelling") and panel.progress_bar.format() == "cancelling…"
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=10_000)
    assert panel.epoch_label.text().startswith("Cancelled")


def test_start_training_asks_before_replacing_an_unsaved_model(window, use_engine):
    use_engine(_FakeTrainingEngine())
    panel = window.training
    panel._set_model(SimpleNamespace(id="m1", kind="trained", threshold=0.4), "default trained in this session")
    asked: list = []
    panel.confirm_replace = lambda action, lost: asked.append((action, lost)) or False
    assert panel.start_training() is None and not panel.is_running()
    assert asked and asked[0][0] == "Start training" and "not saved" in asked[0][1][0]


def test_closing_offers_save_discard_cancel_and_save_writes_the_labels(window, open_folder, demo_folder, qtbot,
                                                                       tmp_path: Path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    open_folder(window, demo_folder)
    patient = window.session.dataset.items[0].patient
    window.browser.set_label(window.browser.patient_paths(patient), "no_contrast")
    labels = tmp_path / "labels.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(labels), "")))
    window.ask_before_discarding = True
    seen: list[str] = []
    answer_next_question(QMessageBox.StandardButton.Save, seen, with_buttons=True)
    window.close()
    assert {"Save", "Discard", "Cancel"} <= set(seen[1].replace("&", "").split(","))
    assert labels.is_file() and "no_contrast" in labels.read_text()
    assert not window.isVisible()


def test_results_follow_relabelling_and_moved_images_keep_their_thumbnails(window, open_folder, demo_folder,
                                                                          qtbot):
    open_folder(window, demo_folder)
    browser = window.browser
    qtbot.waitUntil(lambda: browser.thumbnail_count() == len(window.session.dataset), timeout=30_000)
    window.results.set_predictions(_predictions_for(window.session.dataset), "made up")
    item = window.session.dataset.items[0]
    assert item.label != "no_contrast"
    browser.set_label([item.path], "no_contrast")
    results = window.results
    row = results.model.row_of(item.path)
    assert results.model.data(results.model.index(row, 2)) == "no_contrast"
    assert results.predictions.labels[row] == "no_contrast"
    assert sum(results.confusion.counts().values()) == len(window.session.dataset)
    assert browser.thumbnail_count() == len(window.session.dataset)  # the moved image's too


# --------------------------------------------------------------------------- 7. words, 10. help


def test_settings_show_numbers_and_plain_words(window):
    panel = window.training
    assert panel.epochs_spin.text() == "60 epochs (recommended)"
    assert panel.size_spin.text() == "128 px (recommended)"
    assert panel.validation_spin.text() == "20 % of patients"
    assert panel.folds_spin.text() == "5 patient groups"  # the 5-fold ensemble is the default
    assert panel.overrides()["epochs"] is None  # recommended = the model's own value
    panel.epochs_spin.setValue(12)
    assert panel.epochs_spin.text() == "12 epochs" and panel.overrides()["epochs"] == 12
    panel.model_box.setCurrentText("seed")  # a changed value stays; the others follow the model
    assert panel.epochs_spin.value() == 12 and panel.size_spin.text() == "512 px (recommended)"
    shown = " ".join(w.text() for w in panel.findChildren(type(window.status_label)))
    for jargon in ("recipe", "P(positive)", "hold-out", "Folds", "Seed", "val_auc", "bundle", "Wilson"):
        assert jargon not in shown, jargon


def test_help_says_what_a_downward_drag_does(window):
    viewer = window.viewer
    viewer.apply_preset("soft_tissue")
    centre, width = viewer.center, viewer.width
    viewer._on_window_drag(0, 0, True)
    viewer._on_window_drag(0, 40, False)  # 40 px down
    assert viewer.center > centre and viewer.width == width  # higher centre: darker image
    assert "Drag down = higher centre: the image gets darker" in HELP_TEXT
    assert "Drag right = wider window" in HELP_TEXT
