"""Help > About: ctviewer's version and the version and licence of every bundled component."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ctviewer import __version__
from ctviewer.licences import component_table

COLUMNS = ("Component", "Version", "Licence", "Notes")


class AboutDialog(QDialog):
    """Version, purpose and the licence table (read from package metadata, no TensorFlow import)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About ctviewer")
        self.resize(760, 480)
        header = QHBoxLayout()
        try:
            from ctviewer.resources import icon_path

            icon = QLabel()
            icon.setPixmap(QPixmap(str(icon_path(64))))
            header.addWidget(icon)
        except (ImportError, ValueError, OSError):
            pass  # an icon is decoration: the dialog still says everything without it
        header.addWidget(QLabel(
            f"<b>ctviewer {__version__}</b><br>Train, check and use a binary CNN classifier on CT images,"
            "<br>with per-image predictions and honest confidence intervals.<br>"
            "Not a medical device: for research use."
        ), 1)

        rows = component_table()
        self.table = QTableWidget(len(rows), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for r, comp in enumerate(rows):
            values = (comp.name, comp.version or "not installed", comp.licence, comp.note)
            for c, value in enumerate(values):
                item = QTableWidgetItem(str(value))
                item.setToolTip(comp.url)
                self.table.setItem(r, c, item)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(QLabel("Bundled components (full licence texts: <tt>ctviewer about --licence NAME</tt>):"))
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons, 0, Qt.AlignmentFlag.AlignRight)


if __name__ == "__main__":  # quick look: python -m ctviewer.gui.about_dialog
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    AboutDialog().exec()
