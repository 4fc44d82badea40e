"""Help > About lists ctviewer and every bundled component with its version and licence."""

from __future__ import annotations

from ctviewer import __version__
from ctviewer.licences import component_table


def test_about_dialog_from_the_help_menu(window, qtbot) -> None:
    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
    about = next(a for a in help_menu.actions() if "About" in a.text())
    about.trigger()
    dialog = window._about
    qtbot.waitExposed(dialog)
    table = dialog.table
    names = [table.item(r, 0).text() for r in range(table.rowCount())]
    assert names == [c.name for c in component_table()]
    assert {"ctviewer", "TensorFlow", "pydicom", "Qt"} <= set(names)
    row = names.index("ctviewer")
    assert table.item(row, 1).text() == __version__
    assert all(table.item(r, 2).text() for r in range(table.rowCount()))  # a licence on every row
    dialog.close()


def test_application_has_the_ctviewer_icon(window) -> None:
    from PySide6.QtWidgets import QApplication

    from ctviewer.gui.app import _set_icon

    _set_icon(QApplication.instance())
    assert not QApplication.instance().windowIcon().isNull()
