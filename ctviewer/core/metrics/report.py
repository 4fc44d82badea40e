"""Report files: the per-image prediction CSV and the metrics JSON, every one written atomically.

Atomic means: the content goes to a temporary file in the target's folder, is flushed and
fsynced, then ``os.replace`` puts it where the target was. A crash or an exception midway
leaves the previous file (or no file) in place, never half a file. A set of files that
belong together (cross-validation's predictions, metrics and folds) is written with
`ctviewer.core.folders.output_set`: staged in a folder and swapped in whole.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import numpy as np

from ctviewer.core.errors import CTViewerError
from ctviewer.core.jsonable import json_safe
from ctviewer.core.metrics.evaluation import Metrics
from ctviewer.core.metrics.predictions import Predictions

PREDICTION_COLUMNS: tuple[str, ...] = (
    "path", "patient", "study", "series", "label", "prob", "pred", "correct", "threshold", "fold", "model_id",
    "uncertainty", "training_image",
)
REQUIRED_COLUMNS: tuple[str, ...] = ("path", "prob")
DEFAULT_THRESHOLD = 0.5
# Stands in for the negative class name when a report holds only positive labels and calls.
UNKNOWN_NEGATIVE = "not {positive}"


class ReportError(CTViewerError):
    """A report file cannot be read or written; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


# --------------------------------------------------------------------------- atomic writes


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8",
                newline: str | None = None, errors: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on a clean exit it replaces ``path`` atomically.

    If the ``with`` body raises, the temporary file is removed and ``path`` is untouched.
    The new file keeps the permission bits of the file it replaces (0o644 for a new file).

    Parameters
    ----------
    mode
        ``"w"`` (text) or ``"wb"`` (binary).
    encoding, newline, errors
        As for :func:`open`, text mode only.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', not {mode!r}")
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise ReportError(target, f"folder {folder} does not exist")
    try:
        permissions = target.stat().st_mode & 0o777
    except FileNotFoundError:
        permissions = 0o644
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        binary = "b" in mode
        handle_cm: IO[Any] = os.fdopen(fd, mode, encoding=None if binary else encoding,
                                       newline=None if binary else newline, errors=None if binary else errors)
        with handle_cm as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, permissions)
        os.replace(tmp_name, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; not possible (nor needed) everywhere.
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text_atomic(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`); return the path."""
    with atomic_open(path, "w", encoding=encoding, newline="") as handle:
        handle.write(text)
    return Path(path)


# --------------------------------------------------------------------------- pseudonyms


def pseudonym(value: str, salt: str, kind: str = "patient") -> str:
    """Salted HMAC-SHA256 pseudonym of an identifier: the same id and salt give the same
    pseudonym; without the salt it cannot be traced back by hashing candidate ids.
    ``kind`` keeps a patient and a study that share an id apart. Empty stays empty."""
    if not value:
        return ""
    digest = hmac.new(salt.encode("utf-8"), f"{kind}:{value}".encode(), hashlib.sha256)
    return f"{kind}-{digest.hexdigest()[:16]}"


# --------------------------------------------------------------------------- prediction CSV


def write_predictions_csv(pred: Predictions, path: str | os.PathLike[str], pseudonymise_salt: str | None = None,
                          pseudonymise_paths: bool = False) -> Path:
    """Write one row per image: ``path, patient, study, series, label, prob, pred, correct,
    threshold, fold, model_id, uncertainty, training_image`` (UTF-8, header, no index column), atomically.

    ``prob`` and ``threshold`` are written with ``repr`` (shortest exact form), so reading the
    file back gives bit-identical floats. ``correct`` is 1/0 (blank when unlabelled), so a
    spreadsheet's AVERAGE of the column is the accuracy; ``fold`` is blank outside
    cross-validation. ``uncertainty`` is the spread (standard deviation) of an ensemble's
    member probabilities (blank for a single model); ``training_image`` is 1 where the image
    was one of the model's own training images (its probability is optimistic), 0 where not,
    blank when the model does not say.

    Parameters
    ----------
    pseudonymise_salt
        When given, patient, study and series ids are replaced by salted pseudonyms
        (:func:`pseudonym`); keep the salt secret and reuse it to link files.
    pseudonymise_paths
        Also replace each path by a pseudonym with the original suffix: file and folder names
        often contain patient names or ids. Needs ``pseudonymise_salt``.
    """
    if pseudonymise_salt is not None and not pseudonymise_salt:
        raise ValueError("pseudonymise_salt must be a non-empty secret: an empty salt hides nothing")
    if pseudonymise_paths and not pseudonymise_salt:
        raise ValueError("pseudonymise_paths needs a pseudonymise_salt")
    salt = pseudonymise_salt
    bad = [pred.paths[i] for i in np.flatnonzero(~np.isfinite(np.asarray(pred.probs, dtype=np.float64)))]
    if bad:
        # A NaN probability is no prediction: refuse the report rather than write "nan" rows.
        raise ReportError(path, f"{len(bad)} probabilities are not finite (e.g. {bad[0]}): the model gives "
                          "NaN/Inf outputs; nothing written")
    preds = pred.y_pred()
    correct = pred.correct()
    row_thresholds = pred.thresholds()
    # A file name that is not valid UTF-8 is written with \x escapes, so the CSV stays readable UTF-8.
    with atomic_open(path, "w", encoding="utf-8", newline="", errors="backslashreplace") as handle:
        writer = csv.writer(handle)
        writer.writerow(PREDICTION_COLUMNS)
        for i in range(len(pred)):
            writer.writerow(_prediction_row(pred, i, int(preds[i]), correct[i], float(row_thresholds[i]), salt,
                                            pseudonymise_paths))
    return Path(path)


def _prediction_row(pred: Predictions, i: int, called: int, correct: bool | None, row_threshold: float,
                    salt: str | None, hide_paths: bool) -> list[str]:
    patient, study, series = utf8_text(pred.patients[i] or ""), pred.studies[i] or "", pred.series[i] or ""
    path = utf8_text(pred.paths[i])  # a non-UTF-8 file name as \xNN, before hashing or writing
    if salt:
        patient, study, series = (pseudonym(patient, salt, "patient"), pseudonym(study, salt, "study"),
                                  pseudonym(series, salt, "series"))
        if hide_paths:
            path = pseudonym(path, salt, "image") + Path(path).suffix
    fold = ""
    if pred.folds is not None and int(pred.folds[i]) >= 0:
        fold = str(int(pred.folds[i]))
    label = pred.labels[i]
    uncertainty = "" if pred.uncertainty is None else repr(float(pred.uncertainty[i]))
    in_training = "" if pred.in_training is None else str(int(bool(pred.in_training[i])))
    return [
        path, patient, study, series, "" if label is None else label, repr(float(pred.probs[i])),
        pred.classes[called], "" if correct is None else str(int(correct)), repr(float(row_threshold)),
        fold, pred.model_id, uncertainty, in_training,
    ]


def utf8_text(text: str) -> str:
    """A file name that is not valid UTF-8 (its bytes kept as surrogates) with those bytes as \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def read_predictions_csv(path: str | os.PathLike[str], positive: str | None = None,
                         threshold: float | None = None) -> Predictions:
    """Read a prediction CSV written by :func:`write_predictions_csv` (or by hand).

    Needs ``path`` and ``prob`` columns; ``label``, ``patient``, ``study``, ``series``,
    ``pred``, ``threshold``, ``fold`` and ``model_id`` are used when present, other columns
    are ignored. A UTF-8 byte-order mark (as spreadsheets write) is accepted.

    The class names come from the ``label`` and ``pred`` columns. Unless ``positive`` names
    the positive class, it is the ``pred`` of rows with ``prob >= threshold`` (each row's own
    threshold, else 0.5). A report holding a single class gets ``"not <positive>"`` as its
    negative name.

    Parameters
    ----------
    positive
        Name of the positive class, when the file cannot tell (or to check it).
    threshold
        Overrides the thresholds of the file. Without it, rows that carry different thresholds
        (out-of-fold predictions, one per fold) keep them as ``row_thresholds``.

    Raises
    ------
    ReportError
        Missing or unreadable file, missing columns, a bad number (with its line), more than
        two classes, or classes that cannot be told apart.
    """
    source = Path(path)
    rows = _read_rows(source)
    probs, row_thresholds = [], []
    for line, row in rows:
        probs.append(_parse_prob(source, line, row.get("prob")))
        row_thresholds.append(_parse_float(source, line, "threshold", row.get("threshold")))
    classes = _infer_classes(source, rows, probs, row_thresholds, positive)
    labels = [(row.get("label") or "").strip() or None for _, row in rows]
    file_thresholds = sorted({t for t in row_thresholds if t is not None})
    per_row = None
    if threshold is None:
        if len(file_thresholds) > 1:
            # Each row keeps the threshold it was called at; rows without one get the median.
            threshold = float(np.median(file_thresholds))
            per_row = np.array([threshold if t is None else t for t in row_thresholds], dtype=np.float64)
        else:
            threshold = file_thresholds[0] if file_thresholds else DEFAULT_THRESHOLD
    model_ids = list(dict.fromkeys(row.get("model_id") or "" for _, row in rows))
    spread = [_parse_float(source, line, "uncertainty", row.get("uncertainty")) for line, row in rows]
    marks = [(row.get("training_image") or "").strip() for _, row in rows]
    return Predictions(
        paths=[row.get("path") or "" for _, row in rows],
        probs=np.asarray(probs, dtype=np.float64),
        threshold=float(threshold),
        classes=classes,
        labels=labels,
        patients=[row.get("patient") or "" for _, row in rows],
        studies=[row.get("study") or "" for _, row in rows],
        series=[row.get("series") or "" for _, row in rows],
        folds=_parse_folds(source, rows),
        # One id per report; a cross-validation report may list one per fold.
        model_id=";".join(m for m in model_ids if m),
        row_thresholds=per_row,
        uncertainty=None if any(v is None for v in spread) else np.asarray(spread, dtype=np.float64),
        in_training=None if not all(m in ("0", "1") for m in marks) else np.asarray([m == "1" for m in marks]),
    )


def _read_rows(source: Path) -> list[tuple[int, dict[str, str]]]:
    if not source.exists():
        raise ReportError(source, "no such file")
    if not source.is_file():
        raise ReportError(source, "not a file")
    try:
        with open(source, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in (reader.fieldnames or [])]
            if "path" not in header and "unit" in header:
                # A series/patient report (core.metrics.unit_report): its unit id stands for the path.
                header = ["path" if name == "unit" else name for name in header]
            if not header:
                raise ReportError(source, "empty file: expected a CSV header with path and prob columns")
            reader.fieldnames = header
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise ReportError(source, f"not a prediction CSV: missing column(s) {', '.join(missing)} "
                                          f"(found {', '.join(header[:12])})")
            rows = [(reader.line_num, row) for row in reader if any((v or "").strip()
                                                                    for k, v in row.items() if k)]
    except UnicodeDecodeError as exc:
        raise ReportError(source, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise ReportError(source, f"malformed CSV: {exc}") from None
    except OSError as exc:
        raise ReportError(source, exc.strerror or str(exc)) from None
    if not rows:
        raise ReportError(source, "no rows after the header")
    return rows


def _parse_float(source: Path, line: int, column: str, text: str | None) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ReportError(source, f"line {line}: {column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ReportError(source, f"line {line}: {column} is {text}, not a finite number")
    return value


def _parse_prob(source: Path, line: int, text: str | None) -> float:
    value = _parse_float(source, line, "prob", text)
    if value is None:
        raise ReportError(source, f"line {line}: prob is empty")
    if not 0.0 <= value <= 1.0:
        raise ReportError(source, f"line {line}: prob {value:g} is not a probability in [0, 1]")
    return value


def _parse_folds(source: Path, rows: list[tuple[int, dict[str, str]]]) -> np.ndarray | None:
    texts = [(line, (row.get("fold") or "").strip()) for line, row in rows]
    if not any(text for _, text in texts):
        return None
    folds = []
    for line, text in texts:
        try:
            folds.append(int(text) if text else -1)
        except ValueError:
            raise ReportError(source, f"line {line}: fold {text!r} is not a whole number") from None
    return np.asarray(folds, dtype=np.int64)


def _infer_classes(source: Path, rows: list[tuple[int, dict[str, str]]], probs: list[float],
                   row_thresholds: list[float | None], positive: str | None) -> tuple[str, str]:
    labels = {(row.get("label") or "").strip() for _, row in rows} - {""}
    called = [(row.get("pred") or "").strip() for _, row in rows]
    names = labels | (set(called) - {""})
    if len(names) > 2:
        raise ReportError(source, f"more than two classes: {', '.join(sorted(names))}")
    # The writer called a row positive when prob >= its threshold: read that back.
    sides: dict[bool, set[str]] = {True: set(), False: set()}
    for prob, t, name in zip(probs, row_thresholds, called):
        if name:
            sides[prob >= (DEFAULT_THRESHOLD if t is None else t)].add(name)
    if len(sides[True]) > 1 or len(sides[False]) > 1 or sides[True] & sides[False]:
        if positive is None:
            raise ReportError(source, "the pred column does not follow prob >= threshold, so the positive "
                                      "class cannot be read from it; name the positive class")
    elif positive is not None and (sides[True] - {positive} or positive in sides[False]):
        # prob is the probability of the class the writer called positive; another reading is wrong.
        side, name = (">=", next(iter(sides[True]))) if sides[True] - {positive} else ("<", positive)
        raise ReportError(source, f"the pred column calls rows with prob {side} threshold {name!r}, "
                                  f"so prob is not the probability of {positive!r}")
    if positive is None:
        if sides[True]:
            positive = next(iter(sides[True]))
        elif sides[False] and len(names - sides[False]) == 1:
            positive = next(iter(names - sides[False]))
        else:
            raise ReportError(source, f"cannot tell which class is positive (classes: "
                                      f"{', '.join(sorted(names)) or 'none'}); name the positive class")
    others = names - {positive}
    if len(others) > 1:
        raise ReportError(source, f"positive class {positive!r} is not one of the classes "
                                  f"{', '.join(sorted(names))}")
    negative = next(iter(others)) if others else UNKNOWN_NEGATIVE.format(positive=positive)
    return negative, positive


# --------------------------------------------------------------------------- metrics JSON


def write_metrics_json(metrics: Metrics, path: str | os.PathLike[str],
                       extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``metrics.to_json_dict()`` (plus ``extra`` keys, e.g. dataset or model id)
    as indented JSON, atomically. NaN becomes null; numpy values become plain numbers."""
    payload: dict[str, Any] = dict(metrics.to_json_dict())
    for key, value in (extra or {}).items():
        if key in payload:
            raise ValueError(f"extra key {key!r} would overwrite a metric")
        payload[key] = json_safe(value)
    return write_text_atomic(path, json.dumps(payload, indent=2, allow_nan=False, ensure_ascii=False) + "\n")
