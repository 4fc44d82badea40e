"""Dataset browser: class > patient > series > image tree with counts, thumbnails, filter,
relabelling, and the load report (what was skipped and why)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QModelIndex, QSize, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QAction, QIcon, QImage, QPixmap, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QSplitter,
    QTreeView,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ctviewer.core.data.dataset import Dataset
from ctviewer.core.data.labels import relabel
from ctviewer.core.data.series import UNLABELLED, group_items
from ctviewer.gui.form_widgets import wrap_rows
from ctviewer.gui.session import Change, Session
from ctviewer.gui.thumbnails import make_thumbnail
from ctviewer.gui.wording import for_screen
from ctviewer.gui.workers import ThumbnailPool

KIND_ROLE = Qt.ItemDataRole.UserRole + 1  # "class", "patient", "series", "image"
PATH_ROLE = Qt.ItemDataRole.UserRole + 2
THUMBNAIL_SIZE = 32


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


class BrowserPanel(QWidget):
    """Shows the session's `Dataset` (a new one as it is set); relabelling sets the session's
    labels (`Session.set_labels`); emits the image the user picked."""

    image_activated = Signal(str)  # path
    save_labels_requested = Signal()

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.dataset: Dataset | None = None
        self.labels_dirty = False
        # Label edits since the folder was read: each entry is the dataset before one edit.
        self._before_edits: list[Dataset] = []
        self._saved_at = 0  # len(_before_edits) when the labels on disk matched; -1: no such state left
        self._cache = session.cache
        self._image_items: dict[str, QStandardItem] = {}
        self._icons: dict[str, QIcon] = {}  # thumbnails by path: kept when relabelling rebuilds the tree
        self._quiet = False  # selecting to follow the viewer: do not ask it to show the image again
        self._series_of: dict[str, list[str]] = {}
        self.thumbnails = ThumbnailPool(self._make_thumbnail, parent=self)
        self.thumbnails.signals.thumbnail_ready.connect(self._on_thumbnail_ready)
        self._build()
        session.subscribe(self._on_session_changed)

    def _on_session_changed(self, change: Change) -> None:
        if change == "dataset":  # a folder was read (the same one again too): no label edits pending
            self.set_dataset(self.session.dataset, fresh=True)

    def _build(self) -> None:
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter: class, patient, file…")
        self.filter_edit.setClearButtonEnabled(True)
        self.model = QStandardItemModel(self)
        self.model.setHorizontalHeaderLabels(["Images"])
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setRecursiveFilteringEnabled(True)
        self.proxy.setAutoAcceptChildRows(True)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.filter_edit.textChanged.connect(self._on_filter_changed)
        self.tree = QTreeView()
        self.tree.setModel(self.proxy)
        self.tree.setHeaderHidden(True)
        self.tree.setIconSize(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._on_context_menu)
        self.tree.selectionModel().currentChanged.connect(self._on_current_changed)

        self.summary_label = QLabel("No dataset. File > Open, or drop a folder.")
        self.summary_label.setWordWrap(True)
        self.save_button = QPushButton("Save labels…")
        self.save_button.setToolTip("Write the (changed) classes to labels.csv")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(self.save_labels_requested)
        row = QHBoxLayout()
        row.addWidget(self.summary_label, 1)
        row.addWidget(self.save_button)

        self.report_tree = QTreeWidget()
        self.report_tree.setHeaderLabels(["Load report", "Reason"])
        self.report_tree.setColumnWidth(0, 200)
        wrap_rows(self.report_tree)  # notes and reasons are sentences: wrapped, never cut to "…"

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.filter_edit)
        top_layout.addWidget(self.tree, 1)
        top_layout.addLayout(row)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(top)
        self.splitter.addWidget(self.report_tree)
        self.splitter.setStretchFactor(0, 4)
        self.splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.splitter)

    # ------------------------------------------------------------------ dataset

    def set_dataset(self, dataset: Dataset | None, keep_path: str | None = None, fresh: bool = False) -> None:
        """Show ``dataset`` (None clears); thumbnails are requested in the background.

        ``fresh``: just read from disk (even the same folder again), so no label edits are pending.
        """
        new_source = fresh or dataset is None or self.dataset is None or dataset.source != self.dataset.source
        self.dataset = dataset
        if new_source:
            self.thumbnails.cancel()
            self._icons.clear()
            self.labels_dirty = False
            self._before_edits, self._saved_at = [], 0
        self._rebuild_tree()
        self._fill_report()
        self.save_button.setEnabled(dataset is not None and self.labels_dirty)
        if dataset is not None and new_source:
            self.thumbnails.request([it.path for it in dataset.items], size=THUMBNAIL_SIZE)
        if keep_path:
            self.select_path(keep_path)

    def _rebuild_tree(self) -> None:
        self.model.removeRows(0, self.model.rowCount())
        self._image_items.clear()
        self._series_of.clear()
        dataset = self.dataset
        if dataset is None:
            self.summary_label.setText("No dataset. File > Open, or drop a folder.")
            return
        grouped = group_items(dataset)
        for label in sorted(grouped, key=lambda c: (c == UNLABELLED, c)):
            patients = grouped[label]
            n_images = sum(len(imgs) for series in patients.values() for imgs in series.values())
            marker = " (positive)" if label == dataset.positive else ""
            class_item = self._node(f"{label}{marker} — {_plural(n_images, 'image')}, "
                                    f"{_plural(len(patients), 'patient')}", "class")
            class_item.setData(label, PATH_ROLE)
            for patient in sorted(patients):
                series_map = patients[patient]
                count = sum(len(v) for v in series_map.values())
                patient_item = self._node(f"{patient} ({count})", "patient")
                patient_item.setData(patient, PATH_ROLE)
                for series_uid in sorted(series_map):
                    images = series_map[series_uid]
                    paths = [it.path for it in images]
                    name = f"series …{series_uid[-8:]}" if series_uid else "(no series)"
                    series_item = self._node(f"{name} ({len(images)})", "series")
                    for it in images:
                        self._series_of[it.path] = paths
                        number = f"  #{it.instance}" if it.instance is not None else ""
                        image_item = self._node(f"{Path(it.path).name}{number}", "image")
                        image_item.setData(it.path, PATH_ROLE)
                        image_item.setToolTip(f"{it.path}\n{it.shape[1]} x {it.shape[0]} {it.format}")
                        if it.path in self._icons:
                            image_item.setIcon(self._icons[it.path])
                        self._image_items[it.path] = image_item
                        series_item.appendRow(image_item)
                    patient_item.appendRow(series_item)
                class_item.appendRow(patient_item)
            self.model.appendRow(class_item)
        for row in range(self.proxy.rowCount()):
            self.tree.expand(self.proxy.index(row, 0))
        n_patients = len({it.patient for it in dataset.items})
        skipped = len(dataset.report.skipped)
        self.summary_label.setText(
            f"{_plural(len(dataset), 'image')}, {_plural(n_patients, 'patient')}, "
            f"{_plural(len(dataset.classes), 'class', 'classes')}"
            + (f"; {skipped} skipped" if skipped else "")
            + ("; labels changed (not saved)" if self.labels_dirty else "")
        )

    @staticmethod
    def _node(text: str, kind: str) -> QStandardItem:
        item = QStandardItem(text)
        item.setEditable(False)
        item.setData(kind, KIND_ROLE)
        return item

    def _fill_report(self) -> None:
        self.report_tree.clear()
        if self.dataset is None:
            return
        report = self.dataset.report
        groups = (
            (f"Skipped files ({len(report.skipped)})", [(s.path, s.reason) for s in report.skipped]),
            (f"Notes ({len(report.notes)})", [(for_screen(note), "") for note in report.notes]),
            (f"Identical images ({len(report.duplicates)} groups)",
             [(", ".join(Path(p).name for p in group), "same pixels") for group in report.duplicates]),
        )
        for title, rows in groups:
            parent = QTreeWidgetItem([title, ""])
            self.report_tree.addTopLevelItem(parent)
            parent.setFirstColumnSpanned(True)
            for first, second in rows:
                child = QTreeWidgetItem([first, second])
                child.setToolTip(0, first)
                child.setToolTip(1, second)
                parent.addChild(child)
                if not second:  # a note is one sentence: the whole width is its
                    child.setFirstColumnSpanned(True)
            parent.setExpanded(bool(rows) and len(rows) <= 20)

    def class_rows(self) -> list[str]:
        """The top-level texts of the tree (class name with image and patient counts)."""
        return [self.model.item(r).text() for r in range(self.model.rowCount())]

    def series_paths(self, path: str) -> list[str]:
        """Paths of the series that ``path`` belongs to, in slice order."""
        return list(self._series_of.get(path, [path]))

    # ------------------------------------------------------------------ selection / navigation

    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self._quiet:
            return
        path = self._first_image_under(current)
        if path:
            self.image_activated.emit(path)

    def _first_image_under(self, proxy_index: QModelIndex) -> str | None:
        index = proxy_index
        while index.isValid() and index.data(KIND_ROLE) != "image":
            if self.proxy.rowCount(index) == 0:
                return None
            index = self.proxy.index(0, 0, index)
        return index.data(PATH_ROLE) if index.isValid() else None

    def _visible_image_indexes(self, parent: QModelIndex | None = None) -> list[QModelIndex]:
        parent = parent or QModelIndex()
        found = []
        for row in range(self.proxy.rowCount(parent)):
            index = self.proxy.index(row, 0, parent)
            if index.data(KIND_ROLE) == "image":
                found.append(index)
            else:
                found.extend(self._visible_image_indexes(index))
        return found

    def visible_paths(self) -> list[str]:
        return [index.data(PATH_ROLE) for index in self._visible_image_indexes()]

    def select_path(self, path: str, activate: bool = True) -> bool:
        """Select ``path`` in the tree; ``activate`` False only follows the viewer (the wheel moved
        through the series) without asking it to show the image again."""
        item = self._image_items.get(path)
        if item is None:
            return False
        index = self.proxy.mapFromSource(item.index())
        if not index.isValid():
            return False
        if not activate and self.tree.currentIndex() == index:
            return True
        self.tree.scrollTo(index)
        self._quiet = not activate
        try:
            self.tree.setCurrentIndex(index)
        finally:
            self._quiet = False
        return True

    def step_image(self, delta: int) -> None:
        """Select the next (+1) or previous (-1) visible image, across series and patients."""
        indexes = self._visible_image_indexes()
        if not indexes:
            return
        current = self.tree.currentIndex()
        paths = [i.data(PATH_ROLE) for i in indexes]
        here = current.data(PATH_ROLE) if current.isValid() and current.data(KIND_ROLE) == "image" else None
        position = paths.index(here) + delta if here in paths else (0 if delta > 0 else len(paths) - 1)
        self.tree.setCurrentIndex(indexes[min(max(position, 0), len(paths) - 1)])

    def _on_filter_changed(self, text: str) -> None:
        self.proxy.setFilterFixedString(text.strip())
        if text.strip():
            self.tree.expandAll()

    # ------------------------------------------------------------------ relabelling

    def selected_paths(self) -> list[str]:
        """Image paths under every selected node (an image, a series, a patient or a class)."""
        paths: list[str] = []
        for proxy_index in self.tree.selectionModel().selectedIndexes():
            item = self.model.itemFromIndex(self.proxy.mapToSource(proxy_index))
            paths.extend(self._paths_under(item))
        return list(dict.fromkeys(paths))

    def _paths_under(self, item: QStandardItem) -> list[str]:
        if item.data(KIND_ROLE) == "image":
            return [item.data(PATH_ROLE)]
        out: list[str] = []
        for row in range(item.rowCount()):
            out.extend(self._paths_under(item.child(row)))
        return out

    def patient_paths(self, patient: str) -> list[str]:
        return [it.path for it in self.dataset.items if it.patient == patient] if self.dataset else []

    def set_label(self, paths: list[str], label: str | None) -> None:
        """Give ``paths`` the class ``label`` and show the result (not saved until Save labels)."""
        if self.dataset is None or not paths:
            return
        self._before_edits.append(self.dataset)
        self._show_edit(relabel(self.dataset, paths, label), keep=paths[0])

    def can_undo(self) -> bool:
        return bool(self._before_edits)

    def undo_label_change(self) -> bool:
        """Put back the labels as they were before the last change; False if there is none."""
        if not self._before_edits:
            return False
        before = self._before_edits.pop()
        if len(self._before_edits) < self._saved_at:
            self._saved_at = -1  # undone past what is on disk: only a new save matches it again
        self._show_edit(before, keep=None)
        return True

    def _show_edit(self, dataset: Dataset, keep: str | None) -> None:
        current = self.tree.currentIndex()
        if current.isValid() and current.data(KIND_ROLE) == "image":
            keep = current.data(PATH_ROLE)
        self.labels_dirty = len(self._before_edits) != self._saved_at
        self.set_dataset(dataset, keep_path=keep)
        self.save_button.setEnabled(self.labels_dirty)
        self.session.set_labels(dataset)

    def mark_saved(self) -> None:
        self.labels_dirty = False
        self._saved_at = len(self._before_edits)
        self.save_button.setEnabled(False)
        self._rebuild_tree()

    def _on_context_menu(self, pos) -> None:
        if self.dataset is None:
            return
        paths = self.selected_paths()
        if not paths:
            return
        menu = QMenu(self)
        menu.addSection(f"Set class of {_plural(len(paths), 'image')}")
        for name in self.dataset.classes:
            action = QAction(name, menu)
            action.triggered.connect(lambda _=False, n=name: self.set_label(paths, n))
            menu.addAction(action)
        new_class = menu.addAction("New class…")
        new_class.triggered.connect(lambda: self._ask_new_class(paths))
        clear = menu.addAction("Remove label")
        clear.triggered.connect(lambda: self.set_label(paths, None))
        menu.exec(self.tree.viewport().mapToGlobal(pos))

    def _ask_new_class(self, paths: list[str]) -> None:
        name, ok = QInputDialog.getText(self, "New class", "Class name:")
        if ok and name.strip():
            self.set_label(paths, name.strip())

    # ------------------------------------------------------------------ thumbnails

    def _make_thumbnail(self, path: str, size: int) -> QImage:
        # Runs in the thumbnail pool thread: reads files, never touches widgets.
        return make_thumbnail(self._cache, path, size)

    def _on_thumbnail_ready(self, path: str, image: QImage) -> None:
        icon = QIcon(QPixmap.fromImage(image))
        self._icons[path] = icon
        item = self._image_items.get(path)
        if item is not None:
            item.setIcon(icon)

    def thumbnail_count(self) -> int:
        return sum(1 for item in self._image_items.values() if not item.icon().isNull())

    def shutdown(self) -> None:
        self.thumbnails.shutdown()


if __name__ == "__main__":  # a quick look: python -m ctviewer.gui.browser [FOLDER]
    import sys

    from PySide6.QtWidgets import QApplication

    from ctviewer.core.data.dataset import discover

    app = QApplication(sys.argv)
    if len(sys.argv) > 1:
        folder = sys.argv[1]
    else:
        from ctviewer.core.data.demo import demo_dataset_dir

        folder = str(demo_dataset_dir())
    session = Session()
    panel = BrowserPanel(session)
    session.set_dataset(discover(folder, cache=session.cache))
    panel.resize(420, 700)
    panel.show()
    code = app.exec()
    panel.shutdown()
    sys.exit(code)
