"""The browser through the real window: open, counts, thumbnails, filter, report, relabel, drop."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from ctviewer.core.data.dataset import discover


def _disk_counts(folder: Path) -> dict[str, tuple[int, int]]:
    """class -> (files, patient folders), counted from the disk, not from the app."""
    return {d.name: (len(list(d.rglob("*.dcm"))), len([p for p in d.iterdir() if p.is_dir()]))
            for d in sorted(folder.iterdir()) if d.is_dir()}


def test_open_folder_shows_tree_counts_first_image_tags_and_thumbnails(window, open_folder, demo_folder, qtbot):
    open_folder(window, demo_folder)
    rows = window.browser.class_rows()
    counts = _disk_counts(demo_folder)
    assert len(rows) == len(counts) == 2
    for row, (name, (files, patients)) in zip(rows, counts.items()):
        assert row.startswith(name)
        assert f"{files} images, {patients} patients" in row
    total = sum(files for files, _ in counts.values())
    assert window.browser.summary_label.text().startswith(f"{total} images")
    assert window.viewer.image is not None
    assert window.viewer.image.meta.is_hu
    assert "Modality" in window.tags.tag_names()
    qtbot.waitUntil(lambda: window.browser.thumbnail_count() == total, timeout=30_000)
    assert f"{total} images" in window.status_label.text()


def test_filter_keeps_only_matching_patient(window, open_folder, demo_folder):
    open_folder(window, demo_folder)
    patient = sorted(p.name for p in (demo_folder / "contrast").iterdir())[1]
    window.browser.filter_edit.setText(patient)
    visible = window.browser.visible_paths()
    assert visible and all(f"/{patient}/" in p for p in visible)
    assert len(visible) == len(list((demo_folder / "contrast" / patient).glob("*.dcm")))
    window.browser.filter_edit.clear()
    assert len(window.browser.visible_paths()) == len(window.session.dataset)


def test_keyboard_navigation_steps_through_images(window, open_folder, demo_folder, qtbot):
    open_folder(window, demo_folder)
    paths = window.browser.visible_paths()
    assert window.viewer.current_path() == paths[0]
    window.browser.step_image(1)
    assert window.viewer.current_path() == paths[1]
    window.browser.step_image(1)
    window.browser.step_image(-1)
    assert window.viewer.current_path() == paths[1]
    # Within a series, Down moves to the next slice.
    window.browser.select_path(paths[0])
    window.viewer.setFocus()
    qtbot.keyClick(window.viewer, Qt.Key.Key_Down)
    assert window.viewer.index == 1


def test_unreadable_file_is_listed_in_load_report(window, open_folder, demo_folder, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(demo_folder, folder)
    (folder / "contrast" / "broken.dcm").write_text("not a dicom at all")
    open_folder(window, folder)
    report = window.browser.report_tree
    skipped = report.topLevelItem(0)
    assert skipped.text(0) == "Skipped files (1)"
    assert skipped.child(0).text(0).endswith("broken.dcm")
    assert skipped.child(0).text(1)  # the reason is shown
    assert "1 skipped" in window.browser.summary_label.text()


def test_relabel_patient_and_save_labels_csv(window, open_folder, demo_folder, tmp_path):
    open_folder(window, demo_folder)
    dataset = window.session.dataset
    patient = next(it.patient for it in dataset.items if it.label == "contrast")
    paths = window.browser.patient_paths(patient)
    before = dataset.class_counts()
    window.browser.set_label(paths, "no_contrast")
    after = window.session.dataset.class_counts()
    assert after["contrast"] == before["contrast"] - len(paths)
    assert after["no_contrast"] == before["no_contrast"] + len(paths)
    assert window.browser.save_button.isEnabled()
    assert f"{after['contrast']} images" in window.browser.class_rows()[0]

    written = window.save_labels(tmp_path / "labels.csv")
    assert not window.browser.save_button.isEnabled()
    reread = discover(written)
    labels = {Path(it.path).resolve(): it.label for it in reread.items}
    assert len(labels) == len(dataset)
    for path in paths:
        assert labels[Path(path).resolve()] == "no_contrast"
    assert reread.class_counts() == after


def test_drop_folder_anywhere_opens_it(window, demo_folder, qtbot):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(demo_folder))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.dataset_loaded, timeout=60_000):
        window.dropEvent(event)
    assert len(window.session.dataset) == len(list(demo_folder.rglob("*.dcm")))
    assert window._recent()[0] == str(demo_folder.resolve())


def test_missing_folder_reaches_an_error_dialog(window, qtbot, tmp_path):
    with qtbot.waitSignal(window.load_failed, timeout=10_000) as blocker:
        window.open_source(str(tmp_path / "nowhere"))
    error = blocker.args[0]
    assert error.user_error
    assert "nowhere" in error.message and "no such file" in error.message
    box = window.error_boxes[-1]
    assert box.isVisible() and box.text() == error.message
    assert "Traceback" in box.detailedText()
    box.close()


def test_first_image_shows_while_the_rest_of_the_folder_is_still_being_read(window, demo_folder, qtbot, monkeypatch):
    # Hold the scan after its first file: the viewer must already show that file, and keep it
    # (selected in the browser) once the whole folder is in.
    cache = window.session.cache
    real_inspect = cache.inspect
    release = threading.Event()
    read: list[str] = []

    def held_inspect(path):
        if read:
            release.wait(30)
        read.append(str(path))
        return real_inspect(path)

    monkeypatch.setattr(cache, "inspect", held_inspect)
    try:
        with qtbot.waitSignal(window.viewer.image_shown, timeout=30_000) as shown:
            window.open_source(str(demo_folder))
        assert window.session.dataset is None  # the scan is still held
        assert shown.args[0] == read[0]
    finally:
        release.set()
    qtbot.waitUntil(lambda: window.session.dataset is not None, timeout=60_000)
    assert set(read) == set(window.session.dataset.paths)
    assert window.viewer.series[window.viewer.index] == read[0]
    assert window.browser.selected_paths() == [read[0]]


def test_undo_puts_labels_back_step_by_step_and_knows_what_is_saved(window, open_folder, demo_folder, tmp_path):
    open_folder(window, demo_folder)
    original = {it.path: it.label for it in window.session.dataset.items}
    assert not window.undo_action.isEnabled()
    patients = sorted({it.patient for it in window.session.dataset.items if it.label == "contrast"})[:2]
    first = window.browser.patient_paths(patients[0])
    second = window.browser.patient_paths(patients[1])

    window.browser.set_label(first, "no_contrast")
    window.save_labels(tmp_path / "labels.csv")  # saved with the first change
    window.browser.set_label(second, None)
    assert window.undo_action.isEnabled() and window.browser.labels_dirty

    window.undo_action.trigger()  # back to what is saved
    labels = {it.path: it.label for it in window.session.dataset.items}
    assert all(labels[p] == "no_contrast" for p in first) and all(labels[p] == "contrast" for p in second)
    assert not window.browser.labels_dirty and not window.browser.save_button.isEnabled()

    window.undo_action.trigger()  # past the save: the folder's own labels, which differ from the file
    assert {it.path: it.label for it in window.session.dataset.items} == original
    assert window.browser.labels_dirty and window.browser.save_button.isEnabled()
    assert not window.undo_action.isEnabled()
    assert window.session.dataset.class_counts() == window.browser.dataset.class_counts()
