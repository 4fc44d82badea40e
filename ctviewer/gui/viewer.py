"""Image viewer: window/level in HU, zoom/pan, slice scrolling, value under the cursor, Grad-CAM overlay.

Mouse: left-drag = window/level as in radiology viewers (down = higher centre, darker image;
right = wider window, less contrast), shift+left or middle drag = pan, right drag or ctrl+wheel
= zoom, wheel = previous/next slice of the series.
Keys: Up/Down or PgUp/PgDn = slice, Home/End = first/last slice, R = reset view.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from ctviewer.core.data.imaging import WINDOW_PRESETS, Image, load, model_rect, parse_window, resolve_window
from ctviewer.core.errors import ImageReadError

pg.setConfigOptions(imageAxisOrder="row-major")

PRESET_NAMES = (*WINDOW_PRESETS, "dicom", "minmax")
DEFAULT_PRESET = "soft_tissue"


class WindowLevelViewBox(pg.ViewBox):
    """A ViewBox whose left drag sets window/level and whose wheel steps through slices."""

    def __init__(self) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self.on_window_drag: Callable[[float, float, bool], None] | None = None
        self.on_slice_step: Callable[[int], None] | None = None

    def mouseDragEvent(self, ev, axis=None) -> None:
        shift = bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if ev.button() == Qt.MouseButton.LeftButton and not shift and self.on_window_drag is not None:
            ev.accept()
            delta = ev.screenPos() - ev.buttonDownScreenPos()
            self.on_window_drag(float(delta.x()), float(delta.y()), bool(ev.isStart()))
            return
        super().mouseDragEvent(ev, axis)

    def wheelEvent(self, ev, axis=None) -> None:
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier or self.on_slice_step is None:
            super().wheelEvent(ev, axis)
            return
        ev.accept()
        if ev.delta():
            self.on_slice_step(-1 if ev.delta() > 0 else 1)


def colour_scale_pixmap(lut: np.ndarray, width: int = 90, height: int = 12) -> QPixmap:
    """The overlay's colours from low (left) to high (right), opaque, for a legend."""
    colours = np.ascontiguousarray(lut[np.linspace(0, len(lut) - 1, width).astype(int), :3], dtype=np.uint8)
    rows = np.ascontiguousarray(np.repeat(colours[None, :, :], height, axis=0))
    image = QImage(rows.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())


def overlay_lut() -> np.ndarray:
    """Heat colours whose alpha grows with the heat, so cold areas leave the CT visible."""
    lut = pg.colormap.get("inferno").getLookupTable(0.0, 1.0, 256, alpha=True)
    lut[:, 3] = np.clip(np.linspace(0, 255 * 1.6, 256), 0, 255).astype(np.uint8)
    return lut


class ImageViewer(QWidget):
    """Shows one image of a series with HU window/level and an optional heat-map overlay."""

    image_shown = Signal(str)  # path
    levels_changed = Signal(float, float)  # centre, width
    cursor_text = Signal(str)

    def __init__(self, parent: QWidget | None = None, cache_images: int = 32) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.series: list[str] = []
        self.index = -1
        self.frame = 0  # frame of a multi-frame image (its middle one, the model's, when shown)
        self.image: Image | None = None
        self.preset = DEFAULT_PRESET
        self.center, self.width = WINDOW_PRESETS[DEFAULT_PRESET]
        self._drag_start = (self.center, self.width)
        self._images: OrderedDict[str, Image] = OrderedDict()
        self._cache_images = cache_images
        self._overlay_path: str | None = None
        self._build()

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        self.preset_box = QComboBox()
        self.preset_box.addItems([*PRESET_NAMES, "manual"])
        self.preset_box.setCurrentText(self.preset)
        self.preset_box.setToolTip("Window presets in Hounsfield units (left-drag on the image to adjust)")
        self.preset_box.currentTextChanged.connect(self._on_preset_chosen)
        self.center_spin = self._spin("Window centre (level)", -3000, 5000)
        self.width_spin = self._spin("Window width", 1, 10000)
        self.center_spin.editingFinished.connect(self._on_spin_edited)
        self.width_spin.editingFinished.connect(self._on_spin_edited)
        self.overlay_check = QCheckBox("Grad-CAM")
        self.overlay_check.setToolTip("Show where the model looked (needs a model)")
        self.overlay_check.toggled.connect(self._on_overlay_toggled)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(50)
        self.opacity_slider.setMaximumWidth(100)
        self.opacity_slider.setToolTip("Overlay opacity")
        self.opacity_slider.valueChanged.connect(self._on_opacity_changed)
        self.opacity_slider.setMinimumWidth(50)

        bar = QHBoxLayout()
        for widget in (QLabel("Window"), self.preset_box, QLabel("C"), self.center_spin, QLabel("W"),
                       self.width_spin):
            bar.addWidget(widget)
        bar.addStretch(1)
        bar.addWidget(self.overlay_check)
        bar.addWidget(self.opacity_slider)

        self.view = pg.GraphicsView()
        self.view.setBackground("k")
        self.view_box = WindowLevelViewBox()
        self.view_box.on_window_drag = self._on_window_drag
        self.view_box.on_slice_step = self.step
        self.view.setCentralItem(self.view_box)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.overlay_item = pg.ImageItem(axisOrder="row-major")
        self.overlay_item.setLookupTable(overlay_lut())
        self.overlay_item.setOpacity(self.opacity_slider.value() / 100)
        self.overlay_item.setZValue(10)
        self.overlay_item.hide()
        self.view_box.addItem(self.image_item)
        self.view_box.addItem(self.overlay_item)
        self.message_item = pg.TextItem("Open a folder (File > Open) or drop one here", color=(200, 200, 200),
                                        anchor=(0.5, 0.5))
        self.view_box.addItem(self.message_item)
        self.view.scene().sigMouseMoved.connect(self._on_mouse_moved)
        # The caption: a label on top of the image (fixed size and place, whatever the zoom).
        self.caption_label = QLabel(self.view)
        self.caption_label.setStyleSheet("QLabel { color: #f0f0f0; background: rgba(0, 0, 0, 150); "
                                         "padding: 3px 6px; border-radius: 3px; }")
        self.caption_label.move(6, 6)
        self.caption_label.hide()
        # The overlay's colour scale, on the image's bottom-left corner while the overlay is on.
        self.scale_box = QWidget(self.view)
        self.scale_box.setStyleSheet("QWidget { background: rgba(0, 0, 0, 150); } QLabel { color: #f0f0f0; }")
        scale_row = QHBoxLayout(self.scale_box)
        scale_row.setContentsMargins(6, 3, 6, 3)
        self.scale_low = QLabel("Grad-CAM: less")
        self.scale_bar = QLabel()
        self.scale_bar.setPixmap(colour_scale_pixmap(overlay_lut()))
        self.scale_high = QLabel("more")
        self.scale_widgets = (self.scale_low, self.scale_bar, self.scale_high)
        for widget in self.scale_widgets:
            scale_row.addWidget(widget)
        self.scale_box.setToolTip("Grad-CAM colours: how much each region raised the model's probability of the "
                                  "positive class, relative to the strongest region of this image")
        self.scale_box.adjustSize()
        self.scale_box.hide()
        self.view.installEventFilter(self)

        self.slice_slider = QSlider(Qt.Orientation.Horizontal)
        self.slice_slider.setRange(0, 0)
        self.slice_slider.setToolTip("Slice in the series, or frame of a multi-frame file (wheel, Up/Down)")
        self.slice_slider.valueChanged.connect(self._on_slider)
        self.slice_label = QLabel("–")
        self.value_label = QLabel("")
        self.value_label.setMinimumWidth(220)
        bottom = QHBoxLayout()
        bottom.addWidget(QLabel("Slice"))
        bottom.addWidget(self.slice_slider, 1)
        bottom.addWidget(self.slice_label)
        bottom.addWidget(self.value_label)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(bar)
        layout.addWidget(self.view, 1)
        layout.addLayout(bottom)

        for keys, handler in (
            (("Up", "PgUp"), lambda: self.step(-1)),
            (("Down", "PgDown"), lambda: self.step(1)),
            (("Home",), lambda: self._on_slider(0)),
            (("End",), lambda: self._on_slider(self.slice_slider.maximum())),
            (("R",), self.reset_view),
        ):
            for key in keys:
                shortcut = QShortcut(QKeySequence(key), self)
                shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
                shortcut.activated.connect(handler)

    @staticmethod
    def _spin(tip: str, low: float, high: float) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setRange(low, high)
        spin.setDecimals(0)
        spin.setToolTip(tip)
        spin.setKeyboardTracking(False)
        return spin

    # ------------------------------------------------------------------ images

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt API
        if watched is self.view and event.type() == QEvent.Type.Resize:
            self._place_scale()
        return super().eventFilter(watched, event)

    def _place_scale(self) -> None:
        self.scale_box.move(6, max(self.view.height() - self.scale_box.height() - 6, 0))

    def set_caption(self, text: str) -> None:
        """Text drawn on the image's top-left corner ("" hides it)."""
        self.caption_label.setText(text)
        self.caption_label.adjustSize()
        self.caption_label.setVisible(bool(text))

    def caption(self) -> str:
        return self.caption_label.text() if self.caption_label.isVisible() else ""

    def clear(self) -> None:
        self.set_caption("")
        self.series, self.index, self.image, self.frame = [], -1, None, 0
        self.image_item.clear()
        self.clear_overlay()
        self.slice_slider.setRange(0, 0)
        self.slice_label.setText("–")
        self._show_message("Open a folder (File > Open) or drop one here")

    def show_series(self, paths: list[str], index: int = 0) -> None:
        """Show ``paths`` (one series, in slice order) starting at ``index``."""
        self.series = list(paths)
        self.index = -1
        self.show_index(index)

    def show_path(self, path: str) -> None:
        """Show a single image (and keep the series if it is part of it)."""
        if path in self.series:
            self.show_index(self.series.index(path))
        else:
            self.show_series([path], 0)

    def scrolls_frames(self) -> bool:
        """One multi-frame file on its own (an enhanced CT series): the slider and keys move
        through its frames instead of through files."""
        return len(self.series) == 1 and self.image is not None and self.image.frame_count > 1

    def step(self, delta: int) -> None:
        if self.scrolls_frames():
            self.show_frame(self.frame + delta)
        elif self.series:
            self.show_index(min(max(self.index + delta, 0), len(self.series) - 1))

    def _on_slider(self, value: int) -> None:
        if self.scrolls_frames():
            self.show_frame(value)
        else:
            self.show_index(value)

    def _sync_slider(self) -> None:
        if self.scrolls_frames():
            count, value, unit = self.image.frame_count, self.frame, " frames"
        else:
            count, value, unit = len(self.series), self.index, ""
        self.slice_slider.blockSignals(True)
        self.slice_slider.setRange(0, max(0, count - 1))
        self.slice_slider.setValue(max(value, 0))
        self.slice_slider.blockSignals(False)
        self.slice_label.setText(f"{value + 1}/{count}{unit}" if count else "–")

    def show_index(self, index: int) -> None:
        if not self.series or not 0 <= index < len(self.series) or index == self.index:
            return
        self.index = index
        path = self.series[index]
        try:
            image = self._load(path)
        except ImageReadError as exc:
            self.image = None
            self.image_item.clear()
            self._sync_slider()
            self._show_message(f"Cannot show {Path(path).name}:\n{exc.reason}")
            return
        first = self.image is None
        self.image = image
        # The middle frame first: it is the one the model sees (imaging.Image.frame()).
        self.frame = image.frame_count // 2
        self._sync_slider()
        self.message_item.hide()
        if self.preset not in ("manual",):
            self.center, self.width = self._resolve(self.preset)
        self.image_item.setImage(image.frame(self.frame), autoLevels=False, levels=self.levels())
        self._sync_spins()
        if self._overlay_path != path:
            self.clear_overlay()
        if first:
            self.reset_view()
        self.image_shown.emit(path)

    def show_frame(self, frame: int) -> None:
        """Show frame ``frame`` of the current multi-frame image (clamped to its frames)."""
        if self.image is None:
            return
        frame = min(max(frame, 0), self.image.frame_count - 1)
        if frame == self.frame:
            return
        self.frame = frame
        self.image_item.setImage(self.image.frame(frame), autoLevels=False, levels=self.levels())
        self._sync_slider()
        self.overlay_item.setVisible(self.overlay_check.isChecked() and self.has_overlay())

    def _load(self, path: str) -> Image:
        image = self._images.get(path)
        if image is None:
            image = load(path)
            self._images[path] = image
            while len(self._images) > self._cache_images:
                self._images.popitem(last=False)
        else:
            self._images.move_to_end(path)
        return image

    def current_path(self) -> str | None:
        return self.series[self.index] if 0 <= self.index < len(self.series) else None

    def reset_view(self) -> None:
        if self.image is not None:
            h, w = self.image.frame().shape
            self.view_box.setRange(QRectF(0, 0, w, h), padding=0.02)

    def _show_message(self, text: str) -> None:
        self.message_item.setText(text)
        rect = self.view_box.viewRect()
        self.message_item.setPos(rect.center())
        self.message_item.show()

    # ------------------------------------------------------------------ window / level

    def levels(self) -> tuple[float, float]:
        """Display levels (low, high) from the current centre and width."""
        return self.center - self.width / 2.0, self.center + self.width / 2.0

    def displayed_levels(self) -> tuple[float, float]:
        """The levels the image item actually draws with."""
        lo, hi = self.image_item.getLevels()
        return float(lo), float(hi)

    def apply_preset(self, name: str) -> None:
        """Use a named window ("lung", "bone", "dicom", ...), resolved for the current image."""
        if name == "manual":
            return
        parse_window(name)  # raises ValueError for a name that does not exist
        self.preset = name
        self.center, self.width = self._resolve(name)
        self._apply_levels()
        self.preset_box.blockSignals(True)
        self.preset_box.setCurrentText(name)
        self.preset_box.blockSignals(False)

    def set_window(self, center: float, width: float) -> None:
        self.preset = "manual"
        self.center, self.width = float(center), max(float(width), 1.0)
        self.preset_box.blockSignals(True)
        self.preset_box.setCurrentText("manual")
        self.preset_box.blockSignals(False)
        self._apply_levels()

    def _resolve(self, name: str) -> tuple[float, float]:
        if self.image is None:
            return WINDOW_PRESETS.get(name, (self.center, self.width))
        single = Image(self.image.frame(self.frame), self.image.meta)
        return resolve_window(parse_window(name), single)

    def _apply_levels(self) -> None:
        if self.image is not None:
            self.image_item.setLevels(self.levels())
        self._sync_spins()
        self.levels_changed.emit(self.center, self.width)

    def _sync_spins(self) -> None:
        for spin, value in ((self.center_spin, self.center), (self.width_spin, self.width)):
            spin.blockSignals(True)
            spin.setValue(value)
            spin.blockSignals(False)

    def _on_preset_chosen(self, name: str) -> None:
        self.apply_preset(name)

    def _on_spin_edited(self) -> None:
        if (self.center_spin.value(), self.width_spin.value()) != (self.center, self.width):
            self.set_window(self.center_spin.value(), self.width_spin.value())

    def _on_window_drag(self, dx: float, dy: float, start: bool) -> None:
        if start:
            self._drag_start = (self.center, self.width)
        center, width = self._drag_start
        # Sensitivity follows the current width, so fine windows stay controllable. Radiology
        # convention: dragging down raises the centre (darker), dragging right widens the window.
        scale = max(width / 256.0, 0.5)
        self.set_window(center + dy * scale, max(1.0, width + dx * scale))

    # ------------------------------------------------------------------ cursor

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        text = self.value_at(self.view_box.mapSceneToView(scene_pos))
        self.value_label.setText(text)
        self.cursor_text.emit(text)

    def value_at(self, view_pos: QPointF) -> str:
        """"x, y: value HU" for a point in image coordinates, or "" outside the image."""
        if self.image is None:
            return ""
        pixels = self.image.frame(self.frame)
        x, y = int(np.floor(view_pos.x())), int(np.floor(view_pos.y()))
        if not (0 <= y < pixels.shape[0] and 0 <= x < pixels.shape[1]):
            return ""
        unit = " HU" if self.image.meta.is_hu else ""
        return f"x {x}, y {y}: {pixels[y, x]:.0f}{unit}"

    # ------------------------------------------------------------------ overlay

    def set_overlay(self, path: str, heatmap: np.ndarray, resize: str = "pad") -> None:
        """Lay a heat map (H, W in [0, 1], on the model's input square) over image ``path``.

        The model saw the image letterboxed (``pad``) or centre-cropped (``crop``) to a square;
        the overlay is stretched back over that same square of the original image.
        """
        if path != self.current_path() or self.image is None:
            return
        left, top, width, height = model_rect(self.image.frame().shape, resize)
        rect = QRectF(left, top, width, height)
        self.overlay_item.setImage(np.asarray(heatmap, dtype=np.float32), autoLevels=False, levels=(0.0, 1.0))
        self.overlay_item.setRect(rect)
        self._overlay_path = path
        self.overlay_item.setVisible(self.overlay_check.isChecked() and self.has_overlay())

    def has_overlay(self) -> bool:
        """An overlay for what is on screen: Grad-CAM explains the model's frame (the middle one) only."""
        on_models_frame = self.image is None or self.frame == self.image.frame_count // 2
        return self._overlay_path is not None and self._overlay_path == self.current_path() and on_models_frame

    def clear_overlay(self) -> None:
        self._overlay_path = None
        self.overlay_item.clear()
        self.overlay_item.hide()

    def _on_overlay_toggled(self, on: bool) -> None:
        self.overlay_item.setVisible(on and self.has_overlay())
        self._place_scale()
        self.scale_box.setVisible(on)

    def _on_opacity_changed(self, value: int) -> None:
        self.overlay_item.setOpacity(value / 100.0)


if __name__ == "__main__":  # a quick look: python -m ctviewer.gui.viewer [image files...]
    import sys

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv)
    viewer = ImageViewer()
    viewer.resize(800, 800)
    viewer.show()
    files = sys.argv[1:]
    if not files:
        from ctviewer.core.data.demo import demo_dataset_dir

        files = sorted(str(p) for p in (demo_dataset_dir() / "contrast").rglob("*.dcm"))[:3]
    viewer.show_series(files)
    sys.exit(app.exec())
