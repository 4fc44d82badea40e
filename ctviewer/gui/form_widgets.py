"""Small widgets of the panels' forms: a spin box that shows its unit and marks the recommended
value, and a label whose long text (paths, error messages) wraps instead of widening its panel."""

from __future__ import annotations

import re

from PySide6.QtCore import QEvent, QModelIndex, QObject, QRect, QSize, Qt
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (
    QLabel,
    QSizePolicy,
    QSpinBox,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeView,
    QWidget,
)

_BREAK_AFTER = re.compile(r"([/\\_.,;:=-])")
_LEADING_NUMBER = re.compile(r"\s*(\d*)")


def breakable(text: str) -> str:
    """``text`` with invisible break chances after path separators and punctuation, so a long
    path or file name wraps inside a narrow panel instead of widening it."""
    return _BREAK_AFTER.sub("\\1\u200b", text)


class WrappingLabel(QLabel):
    """A label that wraps (anywhere in long paths) and never asks its panel to be wider."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        # Ignored: the label takes the width the panel has, whatever the length of its text.
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(40)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt API
        self.setToolTip(text if len(text) > 60 else "")
        super().setText(breakable(text))

    def text(self) -> str:
        """The text as set (without the invisible break chances)."""
        return super().text().replace("\u200b", "")


class RecommendedSpin(QSpinBox):
    """Whole numbers with a unit ("60 epochs"); the model's recommended value says so
    ("60 epochs (recommended)"). `override()` is None while the value is the recommended one."""

    def __init__(self, low: int, high: int, step: int, unit: str, tip: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.recommended: int | None = None
        self._unit = unit
        self.setRange(low, high)
        self.setSingleStep(step)
        self.setToolTip(tip)

    def set_recommended(self, value: int) -> None:
        """The model's own value; the box moves to it unless the user had chosen another one."""
        follow = self.recommended is None or self.value() == self.recommended
        self.recommended = int(value)
        if follow:
            self.setValue(self.recommended)
        self.lineEdit().setText(self.textFromValue(self.value()))

    def override(self) -> int | None:
        return None if self.value() == self.recommended else self.value()

    def textFromValue(self, value: int) -> str:  # noqa: N802 - Qt API
        text = f"{value} {self._unit}"
        return f"{text} (recommended)" if value == self.recommended else text

    def valueFromText(self, text: str) -> int:  # noqa: N802 - Qt API
        digits = _LEADING_NUMBER.match(text).group(1)
        return int(digits) if digits else self.value()

    def validate(self, text: str, pos: int) -> object:
        digits = _LEADING_NUMBER.match(text).group(1)
        if not digits:
            return QValidator.State.Intermediate, text, pos
        ok = self.minimum() <= int(digits) <= self.maximum()
        return (QValidator.State.Acceptable if ok else QValidator.State.Intermediate), text, pos


class WrappingDelegate(QStyledItemDelegate):
    """Rows as tall as their wrapped text at the column's current width (Qt's tree views
    otherwise cut long text to one line with "…")."""

    def __init__(self, view: QTreeView) -> None:
        super().__init__(view)
        self._view = view
        view.setWordWrap(True)
        view.setUniformRowHeights(False)
        view.setTextElideMode(Qt.TextElideMode.ElideNone)
        view.header().sectionResized.connect(lambda *_: view.scheduleDelayedItemsLayout())

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802 - Qt API
        hint = super().sizeHint(option, index)
        text = index.data(Qt.ItemDataRole.DisplayRole)
        if not text:
            return hint
        depth, parent = 0, index.parent()
        while parent.isValid():
            depth, parent = depth + 1, parent.parent()
        indent = self._view.indentation() * (depth + (1 if self._view.rootIsDecorated() else 0))
        width = self._view.columnWidth(index.column())
        if self._view.isFirstColumnSpanned(index.row(), index.parent()):
            width = self._view.viewport().width()
        width = max(width - indent - 12, 40)
        if self._view.iconSize().isValid() and index.data(Qt.ItemDataRole.DecorationRole) is not None:
            width -= self._view.iconSize().width() + 4
        box = QRect(0, 0, width, 100_000)
        rect = option.fontMetrics.boundingRect(box, Qt.TextFlag.TextWordWrap, str(text))
        if rect.width() > width:  # a word longer than the column (a path): Qt breaks it anywhere
            rect = option.fontMetrics.boundingRect(box, Qt.TextFlag.TextWrapAnywhere, str(text))
        return QSize(hint.width(), max(hint.height(), rect.height() + 6))


def wrap_rows(view: QTreeView) -> WrappingDelegate:
    """Make ``view`` wrap long rows instead of eliding them; re-laid out when it is resized."""
    delegate = WrappingDelegate(view)
    view.setItemDelegate(delegate)
    view.installEventFilter(_RelayoutOnResize(view))
    return delegate


class _RelayoutOnResize(QObject):
    def __init__(self, view: QTreeView) -> None:
        super().__init__(view)
        self._view = view

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.Resize:
            self._view.scheduleDelayedItemsLayout()
        return False
