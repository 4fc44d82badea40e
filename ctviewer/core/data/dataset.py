"""Find images and their labels: class subfolders, a labels.csv, or files a user dropped.

`discover` never raises for a bad file: it lists it in the `LoadReport` with the reason
and carries on. It raises `DatasetError` only when the source itself is unusable.
"""

from __future__ import annotations

import csv
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from ctviewer.core.data.cache import Cache
from ctviewer.core.data.imaging import Preprocessing
from ctviewer.core.errors import Cancelled, DatasetError, ImageReadError
from ctviewer.core.events import EventCallback, ImageFound, Progress, StopCheck, emit, stop_requested

PatientSource = Literal["dicom", "labels", "file"]
LABELS_FILE = "labels.csv"

# Names that say "this is the negative class", for the default choice of positive class.
_NEGATIVE_HINTS = ("no_", "no-", "non", "not_", "normal", "negative", "healthy", "control", "benign", "without")
# Files next to class folders that document the dataset rather than belong to it.
_SIDE_FILES = {".md", ".txt", ".csv", ".json", ".rst", ".pdf", ".html", ".yaml", ".yml"}


@dataclass(frozen=True)
class Item:
    """One image of a dataset."""

    path: str
    label: str | None
    patient: str
    patient_source: PatientSource
    study: str = ""
    series: str = ""
    instance: int | None = None
    slice_position: float | None = None
    format: str = ""
    shape: tuple[int, int] = (0, 0)
    frames: int = 1
    is_hu: bool = False
    modality: str = ""
    content_hash: str = ""
    pixel_hash: str = ""


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class LoadReport:
    """Everything a user should know about what was (not) loaded."""

    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)


@dataclass
class Dataset:
    """Images with labels (class names) and patients; `positive` names the positive class."""

    items: list[Item]
    classes: tuple[str, ...]
    positive: str | None
    source: str
    report: LoadReport = field(default_factory=LoadReport)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def negative(self) -> str | None:
        others = [c for c in self.classes if c != self.positive]
        return others[0] if len(others) == 1 else None

    @property
    def is_labelled(self) -> bool:
        return bool(self.items) and all(item.label is not None for item in self.items)

    @property
    def paths(self) -> list[str]:
        return [item.path for item in self.items]

    @property
    def patients(self) -> np.ndarray:
        return np.array([item.patient for item in self.items])

    @property
    def y(self) -> np.ndarray:
        """1 for the positive class, 0 for any other, -1 where unlabelled."""
        return np.array(
            [-1 if it.label is None else int(it.label == self.positive) for it in self.items], dtype=np.int64
        )

    def class_counts(self) -> dict[str, int]:
        counts = Counter(item.label for item in self.items if item.label is not None)
        return {name: counts.get(name, 0) for name in self.classes}

    def subset(self, indices: Iterable[int]) -> Dataset:
        return replace(self, items=[self.items[i] for i in indices])

    def require_binary(self, min_per_class: int = 2) -> None:
        """Raise DatasetError unless this can train/evaluate a binary classifier."""
        if not self.items:
            raise DatasetError(f"{self.source}: no readable images")
        unlabelled = [it.path for it in self.items if it.label is None]
        if unlabelled:
            raise DatasetError(
                f"{self.source}: {len(unlabelled)} images have no label (e.g. {unlabelled[0]}); "
                "put them in class subfolders or list them in labels.csv"
            )
        counts = self.class_counts()
        present = [c for c, n in counts.items() if n > 0]
        if len(present) < 2:
            only = present[0] if present else "none"
            raise DatasetError(
                f"{self.source}: only one class ({only}) found; a classifier needs images of two classes"
            )
        if len(present) > 2:
            raise DatasetError(
                f"{self.source}: {len(present)} classes found ({', '.join(present)}); ctviewer trains a binary "
                "classifier: keep two class folders"
            )
        small = {c: n for c, n in counts.items() if n < min_per_class}
        if small:
            detail = ", ".join(f"{c}: {n}" for c, n in small.items())
            raise DatasetError(f"{self.source}: too few images per class to train ({detail}; need {min_per_class})")




def discover(
    source: str | Path | Sequence[str | Path],
    positive: str | None = None,
    cache: Cache | None = None,
    on_event: EventCallback | None = None,
    should_stop: StopCheck | None = None,
) -> Dataset:
    """Find the images of a dataset.

    Parameters
    ----------
    source
        A folder of class subfolders (``<root>/<class>/**/<image>``), a folder with a
        ``labels.csv`` (columns ``path,label[,patient]``, paths relative to it; or
        ``patient,label`` for every image under its folder, see `core.data.patient_labels`), the
        ``labels.csv`` itself, a folder of unlabelled images, or a list of files and
        folders (a user's drop; unlabelled, for prediction).
    positive
        Name of the positive class. Default: for two classes, the one whose partner's name
        reads as negative (``no_contrast``, ``normal``, ``control``...); otherwise the
        second in alphabetical order. The choice is written in ``report.notes``.
    cache
        Inspection cache (a fresh default `Cache()` when None).
    on_event
        ``ImageFound(path)`` for each readable image as soon as it is read (a viewer can show
        the first image while the rest of a large folder is still being scanned), then
        ``Progress(done, total, "reading images")`` after each file.
    should_stop
        Checked before each file; raises `Cancelled` when it says stop.
    """
    cache = cache if cache is not None else Cache()
    report = LoadReport()
    patient_csv: Path | None = None
    if isinstance(source, (str, Path)):
        root = Path(source)
        if not root.exists():
            raise DatasetError(f"{root}: no such file or folder")
        labels_csv = root if root.is_file() and root.name.lower() == LABELS_FILE else (
            root / LABELS_FILE if root.is_dir() and (root / LABELS_FILE).is_file() else None)
        if labels_csv is not None and _has_patient_labels(labels_csv):
            patient_csv = labels_csv
            candidates = _under_patient_labels(labels_csv, report)
        elif labels_csv is not None:
            candidates = _from_labels_csv(labels_csv, report)
        elif root.is_dir():
            candidates = _from_folder(root, report)
        else:
            candidates = [(root, None, None)]
        source_name = str(root)
    else:
        candidates = []
        for entry in source:
            entry = Path(entry)
            if entry.is_dir():
                candidates.extend((p, None, None) for p in _walk_files(entry, report))
            else:
                candidates.append((entry, None, None))
        source_name = ", ".join(str(Path(s)) for s in source[:3]) + (" ..." if len(source) > 3 else "")

    items: list[Item] = []
    total = len(candidates)
    records = cache.inspect_many([path for path, _, _ in candidates], should_stop)
    for done, ((path, label, csv_patient), record) in enumerate(zip(candidates, records), start=1):
        if stop_requested(should_stop):
            raise Cancelled("loading cancelled")
        if isinstance(record, ImageReadError):
            report.skipped.append(Skipped(str(path), record.reason))
        else:
            items.append(_make_item(path, label, csv_patient, record))
            emit(on_event, ImageFound(items[-1].path))
        emit(on_event, Progress(done, total, "reading images"))

    if not items and not report.skipped and not candidates:
        raise DatasetError(f"{source_name}: no files found (empty folder?)")
    if patient_csv is not None:
        from ctviewer.core.data.patient_labels import apply_patient_labels, read_patient_labels

        items = apply_patient_labels(items, read_patient_labels(patient_csv), patient_csv.parent, patient_csv,
                                     report.notes)
    classes = tuple(sorted({it.label for it in items if it.label is not None}))
    chosen = _choose_positive(classes, positive, source_name, report)
    _note_patients(items, report)
    _note_modalities(items, report)
    report.duplicates = _find_duplicates(items)
    if report.duplicates:
        n = sum(len(g) for g in report.duplicates)
        report.notes.append(
            f"{len(report.duplicates)} groups of identical images ({n} files): an identical image on both "
            "sides of a split inflates accuracy"
        )
    return Dataset(items=items, classes=classes, positive=chosen, source=source_name, report=report)


def _make_item(path: Path, label: str | None, csv_patient: str | None, record) -> Item:
    meta = record.meta
    if meta.patient_id:
        patient, source = meta.patient_id, "dicom"
    elif csv_patient:
        patient, source = csv_patient, "labels"
    else:
        patient, source = f"file:{path.name}:{record.content_hash[:8]}", "file"
    return Item(
        path=str(path),
        label=label,
        patient=patient,
        patient_source=source,  # type: ignore[arg-type]
        study=meta.study_uid,
        series=meta.series_uid,
        instance=meta.instance_number,
        slice_position=meta.slice_position,
        format=meta.format,
        shape=(meta.rows, meta.columns),
        frames=meta.frames,
        is_hu=meta.is_hu,
        modality=meta.modality,
        content_hash=record.content_hash,
        pixel_hash=record.pixel_hash,
    )


def _walk_files(root: Path, report: LoadReport) -> list[Path]:
    """All files under root, sorted, following folder links once (a link loop is reported, not followed)."""
    found: list[Path] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=lambda e: report.skipped.append(
        Skipped(str(e.filename), f"folder cannot be read ({e.strerror})"))):
        real = os.path.realpath(dirpath)
        if real in seen:
            report.skipped.append(Skipped(dirpath, "folder link loop (already visited); not followed"))
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue  # .DS_Store and friends are not data
            found.append(Path(dirpath) / name)
    return found


def _from_folder(root: Path, report: LoadReport) -> list[tuple[Path, str | None, str | None]]:
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        raise DatasetError(f"{root}: folder cannot be read ({exc.strerror or exc})") from None
    class_dirs = [e for e in entries if e.is_dir() and not e.name.startswith(".")]
    top_files = [e for e in entries if e.is_file() and not e.name.startswith(".")]
    if not class_dirs:
        if not top_files:
            raise DatasetError(f"{root}: empty folder (no images, no class subfolders)")
        report.notes.append("no class subfolders: images are unlabelled (fine for prediction, not for training)")
        return [(p, None, None) for p in _walk_files(root, report)]
    candidates = []
    for class_dir in class_dirs:
        files = _walk_files(class_dir, report)
        if not files:
            report.notes.append(f"class folder {class_dir.name}/ is empty")
        candidates.extend((p, class_dir.name, None) for p in files)
    for path in top_files:
        if path.suffix.lower() in _SIDE_FILES:
            report.notes.append(f"ignored {path.name}: a side file next to the class folders")
        else:
            report.skipped.append(Skipped(str(path), "not inside a class folder, so it has no label"))
    return candidates


def _from_labels_csv(csv_path: Path, report: LoadReport) -> list[tuple[Path, str | None, str | None]]:
    base = csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = [(reader.line_num, row) for row in reader]
            header = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{csv_path}: cannot be read as CSV ({exc})") from None
    if not rows:
        raise DatasetError(f"{csv_path}: no rows")
    if "path" not in header or "label" not in header:
        raise DatasetError(f"{csv_path}: needs columns 'path' and 'label' (found: {', '.join(header)})")
    candidates = []
    lines_of: dict[Path, list[tuple[int, str | None]]] = defaultdict(list)
    for line, row in rows:
        if None in row:
            # csv puts the fields beyond the header under the key None: which column was meant is unknown.
            n = len(header) + len(row[None])
            report.skipped.append(Skipped(f"{csv_path}:{line}", f"row has {n} fields but the header has "
                                          f"{len(header)} (a comma in a value? quote it)"))
            continue
        row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        if not row.get("path"):
            report.skipped.append(Skipped(f"{csv_path}:{line}", "row has no path"))
            continue
        path = Path(row["path"])
        path = path if path.is_absolute() else base / path
        if not path.exists():
            report.skipped.append(Skipped(str(path), f"listed in {csv_path.name} (line {line}) but not found"))
            continue
        label = row.get("label") or None
        key = Path(os.path.normpath(path))
        lines_of[key].append((line, label))
        if len(lines_of[key]) == 1:
            candidates.append((path, label, row.get("patient") or None))
    _check_repeated_rows(csv_path, lines_of, report)
    return candidates


def _has_patient_labels(csv_path: Path) -> bool:
    from ctviewer.core.data.patient_labels import is_patient_labels

    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False  # _from_labels_csv reports the reason
    return is_patient_labels(header)


def _under_patient_labels(csv_path: Path, report: LoadReport) -> list[tuple[Path, str | None, str | None]]:
    """Every image under a ``patient,label`` CSV's folder, with its patient folder as a fallback id."""
    from ctviewer.core.data.patient_labels import patient_folder

    base = csv_path.parent
    files = [p for p in _walk_files(base, report) if p != csv_path and not (
        p.parent == base and p.suffix.lower() in _SIDE_FILES)]
    return [(p, None, patient_folder(base, p)) for p in files]


def _check_repeated_rows(csv_path: Path, lines_of: dict[Path, list[tuple[int, str | None]]],
                         report: LoadReport) -> None:
    """A file listed twice with different labels is a contradiction to resolve, not to guess."""
    conflicts = {p: seen for p, seen in lines_of.items() if len({label for _, label in seen}) > 1}
    if conflicts:
        shown = "; ".join(
            f"{p.name}: " + ", ".join(f"line {line} says {label or '(empty)'}" for line, label in seen)
            for p, seen in list(conflicts.items())[:5]
        )
        more = f" (and {len(conflicts) - 5} more files)" if len(conflicts) > 5 else ""
        raise DatasetError(f"{csv_path}: {len(conflicts)} files are listed with different labels: {shown}{more}; "
                           "keep one row per file")
    repeated = [(p, seen) for p, seen in lines_of.items() if len(seen) > 1]
    if repeated:
        p, seen = repeated[0]
        report.notes.append(f"{len(repeated)} files are listed more than once in {csv_path.name} with the same label "
                            f"(e.g. {p.name}, lines {', '.join(str(line) for line, _ in seen)}); each is used once")


def _choose_positive(classes: tuple[str, ...], positive: str | None, source: str, report: LoadReport) -> str | None:
    if positive is not None:
        if positive not in classes:
            raise DatasetError(
                f"{source}: positive class {positive!r} not found; classes are: {', '.join(classes) or 'none'}"
            )
        return positive
    if len(classes) != 2:
        return classes[0] if len(classes) == 1 else None
    negative_like = [c for c in classes if c.lower().startswith(_NEGATIVE_HINTS)]
    chosen = [c for c in classes if c not in negative_like][0] if len(negative_like) == 1 else classes[1]
    report.notes.append(f"positive class: {chosen} (default rule; choose with --positive)")
    return chosen


def _note_patients(items: list[Item], report: LoadReport) -> None:
    by_file = sum(1 for it in items if it.patient_source == "file")
    if by_file:
        report.notes.append(
            f"{by_file} images have no patient id (no DICOM PatientID, no 'patient' column): each counts as its "
            "own patient, so a split cannot keep one patient's slices together"
        )
    labels_by_patient: dict[str, set[str]] = defaultdict(set)
    for it in items:
        if it.label is not None:
            labels_by_patient[it.patient].add(it.label)
    mixed = sorted(p for p, labels in labels_by_patient.items() if len(labels) > 1)
    if mixed:
        report.notes.append(f"{len(mixed)} patients have images in more than one class (e.g. {mixed[0]})")


def _note_modalities(items: list[Item], report: LoadReport) -> None:
    """Say when a set mixes CT with other modalities, or Hounsfield with non-Hounsfield images."""
    dicom = [it for it in items if it.format == "dicom"]
    others = Counter(it.modality or "no modality" for it in dicom if it.modality != "CT")
    if others and any(it.modality == "CT" for it in dicom):
        detail = ", ".join(f"{name}: {n}" for name, n in sorted(others.items()))
        report.notes.append(f"{sum(others.values())} DICOM images are not CT ({detail}) in a CT set: their pixels "
                            "are not Hounsfield units and the model would learn the modality, not the question")
    n_hu = sum(1 for it in items if it.is_hu)
    if 0 < n_hu < len(items):
        report.notes.append(f"{n_hu} images are in Hounsfield units and {len(items) - n_hu} are not (PNG/JPEG/TIFF or "
                            "DICOM without a CT rescale): an HU window means something different for each kind")


def _find_duplicates(items: list[Item]) -> list[list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for it in items:
        groups[it.pixel_hash].append(it.path)
    return [paths for paths in groups.values() if len(paths) > 1]


def iter_arrays(
    dataset: Dataset,
    prep: Preprocessing,
    cache: Cache,
    on_event: EventCallback | None = None,
    should_stop: StopCheck | None = None,
    out: np.ndarray | None = None,
) -> Iterator[tuple[int, Item, np.ndarray]]:
    """``(index, item, preprocessed array)`` of every image, in order, through the cache (cached arrays
    read straight into the rows of ``out``, an (N, size, size) float32 stack, when given).

    ``Progress(done, total, "loading images")`` after each image; `Cancelled` when
    ``should_stop()`` says stop; an unreadable file raises `ImageReadError`.
    """
    n = len(dataset)
    arrays = cache.arrays(dataset.paths, prep, should_stop, out)  # in worker processes for a large set
    for i, (item, arr) in enumerate(zip(dataset.items, arrays)):
        if stop_requested(should_stop):
            raise Cancelled("loading cancelled")
        yield i, item, arr
        emit(on_event, Progress(i + 1, n, "loading images"))


def load_stack(
    dataset: Dataset,
    prep: Preprocessing,
    cache: Cache | None = None,
    on_event: EventCallback | None = None,
    should_stop: StopCheck | None = None,
) -> np.ndarray:
    """All preprocessed images as one (N, size, size) float32 array (small datasets)."""
    cache = cache if cache is not None else Cache()
    out = np.empty((len(dataset), prep.size, prep.size), dtype=np.float32)
    for i, _item, arr in iter_arrays(dataset, prep, cache, on_event, should_stop, out):
        if not np.may_share_memory(arr, out[i]):  # a cached array is read into its row already
            out[i] = arr
    return out

