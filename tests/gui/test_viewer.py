"""The image viewer on its own: window presets, mouse window/level, slices, HU under cursor, overlay."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from ctviewer.core.data.imaging import WINDOW_PRESETS, load
from ctviewer.gui.viewer import ImageViewer


@pytest.fixture
def viewer(qtbot, demo_folder: Path) -> ImageViewer:
    widget = ImageViewer()
    qtbot.addWidget(widget)
    widget.resize(600, 600)
    widget.show()
    patient = min((demo_folder / "contrast").iterdir())
    widget.show_series([str(p) for p in sorted(patient.glob("*.dcm"))])
    return widget


@pytest.mark.parametrize("preset", ["lung", "bone", "soft_tissue", "brain"])
def test_presets_set_displayed_levels_in_hu(viewer: ImageViewer, preset: str):
    viewer.apply_preset(preset)
    center, width = WINDOW_PRESETS[preset]
    assert viewer.displayed_levels() == pytest.approx((center - width / 2, center + width / 2))
    assert viewer.preset_box.currentText() == preset
    assert viewer.center_spin.value() == pytest.approx(center)


def test_choosing_a_preset_in_the_combo_applies_it(viewer: ImageViewer):
    viewer.preset_box.setCurrentText("lung")
    assert viewer.displayed_levels() == pytest.approx((-1350.0, 150.0))


def test_preset_persists_across_slices(viewer: ImageViewer):
    viewer.apply_preset("bone")
    viewer.step(1)
    assert viewer.index == 1
    assert viewer.displayed_levels() == pytest.approx((-500.0, 1300.0))


def _send_mouse(widget, kind, pos: QPoint, button, buttons) -> None:
    event = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button, buttons,
                        Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def test_left_drag_changes_window_and_level(viewer: ImageViewer, qtbot):
    viewer.apply_preset("soft_tissue")
    vp = viewer.view.viewport()
    start = QPoint(vp.width() // 2, vp.height() // 2)
    left = Qt.MouseButton.LeftButton
    _send_mouse(vp, QMouseEvent.Type.MouseButtonPress, start, left, left)
    for step in range(1, 11):  # right and down: wider window, higher centre (radiology viewers' convention)
        _send_mouse(vp, QMouseEvent.Type.MouseMove, start + QPoint(8 * step, 5 * step), Qt.MouseButton.NoButton, left)
        qtbot.wait(5)
    _send_mouse(vp, QMouseEvent.Type.MouseButtonRelease, start + QPoint(80, 50), left, Qt.MouseButton.NoButton)
    assert viewer.preset == "manual"
    assert viewer.width > 400 and viewer.center > 40
    lo, hi = viewer.displayed_levels()
    assert (lo + hi) / 2 == pytest.approx(viewer.center) and hi - lo == pytest.approx(viewer.width)


def test_wheel_and_keys_scroll_slices(viewer: ImageViewer, qtbot):
    assert viewer.index == 0 and len(viewer.series) == 2
    viewer.view_box.on_slice_step(1)
    assert viewer.index == 1 and viewer.slice_label.text() == "2/2"
    viewer.setFocus()
    qtbot.keyClick(viewer, Qt.Key.Key_Up)
    assert viewer.index == 0
    qtbot.keyClick(viewer, Qt.Key.Key_End)
    assert viewer.index == 1
    viewer.slice_slider.setValue(0)
    assert viewer.index == 0


def test_value_under_cursor_is_the_pixel_in_hu(viewer: ImageViewer):
    pixels = load(viewer.current_path()).pixels
    assert viewer.value_at(QPointF(10.7, 20.2)) == f"x 10, y 20: {pixels[20, 10]:.0f} HU"
    assert viewer.value_at(QPointF(-1, 5)) == ""
    # Through the scene: the mouse over the image centre shows that pixel.
    centre = viewer.view_box.mapViewToScene(QPointF(32.5, 32.5))
    viewer._on_mouse_moved(centre)
    assert viewer.value_label.text() == f"x 32, y 32: {pixels[32, 32]:.0f} HU"


def test_overlay_covers_the_model_square_with_opacity(viewer: ImageViewer):
    heat = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    viewer.set_overlay(viewer.current_path(), heat, resize="pad")
    assert viewer.has_overlay() and not viewer.overlay_item.isVisible()  # checkbox still off
    viewer.overlay_check.setChecked(True)
    assert viewer.overlay_item.isVisible()
    rect = viewer.overlay_item.mapRectToParent(viewer.overlay_item.boundingRect())
    assert (rect.width(), rect.height()) == pytest.approx((64, 64))
    viewer.opacity_slider.setValue(30)
    assert viewer.overlay_item.opacity() == pytest.approx(0.3)
    viewer.step(1)  # another image: the old overlay does not belong to it
    assert not viewer.has_overlay() and not viewer.overlay_item.isVisible()


def test_window_level_is_fast_at_1024(qtbot, tmp_path: Path):
    from ctviewer.core.data.demo import phantom_slice, write_ct_dicom

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        path = tmp_path / f"big{i}.dcm"
        write_ct_dicom(path, phantom_slice(rng, 1024, True, 0.6), "P", "1.2.3", "1.2.3.4", i + 1, z_mm=float(i))
        paths.append(str(path))
    widget = ImageViewer()
    qtbot.addWidget(widget)
    widget.resize(900, 900)
    widget.show()
    widget.show_series(paths)
    for i in range(3):  # load once (decoding is not what is measured)
        widget.show_index(i)
    QApplication.processEvents()
    times = []
    for k in range(20):
        start = time.perf_counter()
        widget.set_window(40 + 10 * k, 400 + 5 * k)
        widget.repaint()
        QApplication.processEvents()
        times.append(time.perf_counter() - start)
    # One window/level change redrawn at 1024 x 1024; generous for a shared 2-core machine.
    assert float(np.median(times)) < 0.1, times


def _multiframe_ct(path: Path, frames: int = 5) -> np.ndarray:
    """pydicom's CT slice as a multi-frame file whose frames differ (frame k: pixels + 100 k)."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    base = ds.pixel_array.astype(np.int16)
    stack = np.stack([base + 100 * k for k in range(frames)]).astype(np.int16)
    ds.NumberOfFrames = frames
    ds.PixelData = stack.tobytes()
    ds.save_as(path)
    return load(path).pixels


def test_a_multiframe_file_scrolls_through_its_frames_and_overlays_only_the_models_frame(qtbot, tmp_path: Path):
    pixels = _multiframe_ct(tmp_path / "enhanced.dcm")
    widget = ImageViewer()
    qtbot.addWidget(widget)
    widget.resize(600, 600)
    widget.show()
    widget.activateWindow()
    qtbot.waitUntil(widget.isActiveWindow)
    widget.show_series([str(tmp_path / "enhanced.dcm")])
    assert widget.scrolls_frames() and widget.frame == 2 and widget.slice_label.text() == "3/5 frames"
    np.testing.assert_array_equal(widget.image_item.image, pixels[2])

    widget.set_overlay(widget.current_path(), np.ones((8, 8), np.float32))
    widget.overlay_check.setChecked(True)
    assert widget.overlay_item.isVisible()  # the middle frame is the one the model saw

    widget.view_box.on_slice_step(1)
    assert widget.frame == 3 and widget.slice_label.text() == "4/5 frames"
    np.testing.assert_array_equal(widget.image_item.image, pixels[3])
    assert widget.value_at(QPointF(5, 7)) == f"x 5, y 7: {pixels[3, 7, 5]:.0f} HU"
    assert not widget.overlay_item.isVisible()

    widget.setFocus()
    qtbot.keyClick(widget, Qt.Key.Key_End)
    assert widget.frame == 4
    widget.slice_slider.setValue(0)
    assert widget.frame == 0 and widget.index == 0
    np.testing.assert_array_equal(widget.image_item.image, pixels[0])
    widget.step(2)
    assert widget.frame == 2 and widget.overlay_item.isVisible()
