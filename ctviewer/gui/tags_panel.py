"""DICOM tags (and basic file facts) of the image on screen, filterable."""

from __future__ import annotations

from PySide6.QtWidgets import QHeaderView, QLineEdit, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from ctviewer.core.data.imaging import Image
from ctviewer.gui.session import Change, Session


def describe_image(image: Image) -> list[tuple[str, str]]:
    """(name, value) rows: the file facts first, then the DICOM summary tags."""
    meta = image.meta
    rows = [
        ("File", meta.path),
        ("Format", meta.format.upper()),
        ("Size", f"{meta.columns} x {meta.rows}" + (f" x {meta.frames} frames" if meta.frames > 1 else "")),
        ("Units", "Hounsfield (HU)" if meta.is_hu else "stored values"),
        ("Pixel range", f"{float(image.pixels.min()):.0f} .. {float(image.pixels.max()):.0f}"),
    ]
    if meta.transfer_syntax:
        rows.append(("Transfer syntax", meta.transfer_syntax))
    if meta.source_mode:
        rows.append(("Image mode", meta.source_mode))
    rows.extend(sorted(meta.tags.items()))
    return rows


class TagsPanel(QWidget):
    """A two-column table of tag name and value with a filter box; emptied when another dataset opens."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter tags…")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self._apply_filter)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Tag", "Value"])
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.table)
        session.subscribe(self._on_session_changed)

    def _on_session_changed(self, change: Change) -> None:
        if change == "dataset":
            self.show_image(None)  # the tags were of an image of the old dataset

    def show_image(self, image: Image | None) -> None:
        rows = describe_image(image) if image is not None else []
        self.table.setRowCount(len(rows))
        for r, (name, value) in enumerate(rows):
            self.table.setItem(r, 0, QTableWidgetItem(name))
            item = QTableWidgetItem(value)
            item.setToolTip(value)
            self.table.setItem(r, 1, item)
        self._apply_filter(self.filter_edit.text())

    def tag_names(self) -> list[str]:
        return [self.table.item(r, 0).text() for r in range(self.table.rowCount())]

    def _apply_filter(self, text: str) -> None:
        needle = text.strip().lower()
        for r in range(self.table.rowCount()):
            hay = f"{self.table.item(r, 0).text()} {self.table.item(r, 1).text()}".lower()
            self.table.setRowHidden(r, bool(needle) and needle not in hay)


if __name__ == "__main__":  # a quick look: python -m ctviewer.gui.tags_panel FILE
    import sys

    from PySide6.QtWidgets import QApplication

    from ctviewer.core.data.imaging import load

    app = QApplication(sys.argv)
    panel = TagsPanel(Session())
    if len(sys.argv) > 1:
        panel.show_image(load(sys.argv[1]))
    panel.resize(500, 600)
    panel.show()
    sys.exit(app.exec())
