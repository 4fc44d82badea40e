"""`keras_callback`: the doctor's cheap checks while ``model.fit`` runs, after epoch 1 and at the end.

What a Keras 3 callback can see: ``self.model``, ``self.params`` (``epochs``, ``steps``,
``verbose``) and each epoch's ``logs`` (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``...).
``fit`` hands it neither the training arrays nor the rows ``validation_split`` held out
(keras/src/backend/tensorflow/trainer.py builds the CallbackList with only those params). So
the callback takes the arrays itself: given ``x``, ``y`` and the same ``validation_split``, it
knows exactly which rows Keras validates on (the last ones, unshuffled). With no arrays it
still checks the logs (perfect validation while training is not, 0/1-only accuracy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ctviewer.core.doctor.findings import Finding, format_finding

# Rows used for the collapse check and for the training-vs-inference check.
CHECK_ROWS = 128
MODE_ROWS = 16


class _Checks:
    """The checks and what they already said, apart from Keras (so they can be tested and reused)."""

    def __init__(self, x: Any, y: Any, validation_split: float | None, validation_data: Any, patients: Any,
                 classes: tuple[str, str] | None, threshold: float) -> None:
        from ctviewer.core.data.arrays import array_index
        from ctviewer.core.doctor.array_checks import data_findings, tail_split_of

        self.threshold = threshold
        self.data: list[Finding] = []
        self.val_x: np.ndarray | None = None
        self.val_y: np.ndarray | None = None
        self.classes = classes or ("class 0", "class 1")
        self.where = "the validation rows"
        if x is not None and y is not None:
            dataset = array_index(x, y, patients, classes)
            split = tail_split_of(dataset, validation_split)
            self.data = data_findings(dataset, split, patients is not None)
            self.classes = (str(dataset.negative), str(dataset.positive))
            rows = split.indices("validation") if split is not None else np.arange(len(dataset))
            self.where = (f"the last {len(rows)} rows (validation_split={validation_split:g})"
                          if split is not None else "x")
            self.val_x, self.val_y = np.asarray(x)[rows], dataset.y[rows]
        if validation_data is not None:
            from ctviewer.core.doctor.data_checks import small_class_findings

            vx, vy = validation_data[0], validation_data[1]
            vset = array_index(vx, vy, None, classes)
            self.data += small_class_findings([it.label for it in vset.items], "validation", vset.classes,
                                              vset.positive)
            self.classes = (str(vset.negative), str(vset.positive))
            self.val_x, self.val_y, self.where = np.asarray(vx), vset.y, "validation_data"
        self.said: set[tuple[str, str]] = set()

    def run(self, model: Any, history: dict[str, list[float]], with_data: bool) -> list[Finding]:
        from ctviewer.core.doctor import _spread_indices
        from ctviewer.core.doctor import model_checks as mc
        from ctviewer.core.doctor.array_checks import model_input
        from ctviewer.core.doctor.data_checks import check_history
        from ctviewer.core.doctor.findings import sort_findings

        found = list(self.data) if with_data else []
        found += check_history(history)
        if self.val_x is not None and len(self.val_x) >= 2:
            x = model_input(model, self.val_x)
            rows = _spread_indices(len(x), CHECK_ROWS)
            xs, ys = x[rows], self.val_y[rows]
            probs = mc.call_probs(model, xs, training=False)
            found += mc.check_non_finite(probs, self.where, [f"row {int(i)}" for i in rows], "as given")
            if np.isfinite(probs).all():
                found += mc.check_prediction_collapse(probs, self.threshold, ys, self.classes, where=self.where)
                few = _spread_indices(len(xs), MODE_ROWS)
                found += mc.check_mode_mismatch(model, xs[few], self.threshold, ys[few])
        return sort_findings(found)

    def new(self, findings: list[Finding]) -> list[Finding]:
        """Findings not said before (by code and message)."""
        fresh = [f for f in findings if (f.code, f.message) not in self.said]
        self.said |= {(f.code, f.message) for f in fresh}
        return fresh


def _report(title: str, findings: list[Finding], printer: Callable[[str], Any]) -> None:
    if not findings:
        printer(f"ctviewer doctor {title}: nothing new found")
        return
    printer(f"ctviewer doctor {title}: {len(findings)} finding(s)")
    for finding in findings:
        printer(format_finding(finding))


def keras_callback(x: Any = None, y: Any = None, *, validation_split: float | None = None,
                   validation_data: Any = None, patients: Any = None, classes: tuple[str, str] | None = None,
                   threshold: float = 0.5, every_epoch: bool = False,
                   printer: Callable[[str], Any] = print) -> Any:
    """A ``keras.callbacks.Callback`` that runs the doctor's cheap checks after epoch 1 and at the end.

    Pass the same arrays and ``validation_split`` (or ``validation_data``) as to ``fit``:
    Keras does not give them to callbacks. It then reports, after the first epoch, a
    validation part holding one class, class-sorted arrays, a model that calls every
    validation image the same class, and BatchNorm/Dropout outputs that differ between
    training and inference mode; from the logs, validation accuracy that is perfect while
    training accuracy is not. At the end of training it says what is new.

    Parameters
    ----------
    x, y
        The training arrays as given to ``fit`` (``y`` 0/1, one-hot rows or class names).
    validation_split, validation_data
        As given to ``fit``.
    patients
        One patient id per row of ``x``.
    classes
        Names for class 0 and class 1, for the messages.
    threshold
        Class 1 when its probability is at least this.
    every_epoch
        Check after every epoch, not only the first and the last.
    printer
        Where the text goes (``print`` by default).

    Returns
    -------
    keras.callbacks.Callback
        Its ``findings`` attribute maps ``"epoch 1"``, ``"end"``... to the findings of each check.
    """
    import keras

    checks = _Checks(x, y, validation_split, validation_data, patients, classes, threshold)

    class DoctorCallback(keras.callbacks.Callback):
        """Runs ctviewer's doctor checks during ``fit`` (see `ctviewer.api.keras_callback`)."""

        def __init__(self) -> None:
            super().__init__()
            self.history: dict[str, list[float]] = {}
            self.findings: dict[str, list[Finding]] = {}

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            self.history = {}

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            for key, value in (logs or {}).items():
                try:
                    self.history.setdefault(key, []).append(float(value))
                except (TypeError, ValueError):
                    continue
            if epoch == 0 or every_epoch:
                found = checks.run(self.model, self.history, with_data=epoch == 0)
                self.findings[f"epoch {epoch + 1}"] = found
                _report(f"after epoch {epoch + 1}", checks.new(found), printer)

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            found = checks.run(self.model, self.history, with_data=False)
            self.findings["end"] = found
            _report("at the end of training", checks.new(found), printer)

    return DoctorCallback()
