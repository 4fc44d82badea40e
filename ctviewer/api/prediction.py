"""`predict_per_sample`: one probability per image, in inference mode, the same every call.

The question's model printed a different probability for the same image from call to call:
it was called in training mode (BatchNorm on the batch's statistics, Dropout on). Here every
call is ``predict_on_batch`` (Keras runs the model with ``training=False``) and every batch is
padded to ``batch_size`` rows, so an image gets the same number alone or among others and on
every call; across different batch sizes the numbers agree to float32 rounding.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np


class InputScaleWarning(UserWarning):
    """The arrays reach the model's first layer unscaled (raw HU or stored values)."""


def predict_per_sample(model: Any, x: Any, batch_size: int = 32, *, check_scale: bool = True) -> np.ndarray:
    """Probability of class 1 for each row of ``x``, computed with ``training=False``.

    Parameters
    ----------
    model
        A ``keras.Model`` with a (N, 1) sigmoid or (N, 2) softmax output (logits are squashed).
    x
        Images in the model's input shape; a missing channel axis of one is added.
    batch_size
        Rows per call; the last batch is padded so the model always sees the same shape.
    check_scale
        Warn (`InputScaleWarning`) when the values look like raw Hounsfield units or stored
        pixel values and the model has no normalising layer: the doctor's input-scale check.

    Returns
    -------
    numpy.ndarray
        (N,) float64 probabilities.

    Raises
    ------
    ValueError
        NaN or infinite values in ``x``, or a batch size below 1.
    ctviewer.core.errors.ModelError
        ``x`` does not fit the model's input.
    """
    from ctviewer.core.doctor.array_checks import model_input
    from ctviewer.core.doctor.model_checks import check_unnormalised_input, positive_probs
    from ctviewer.core.doctor.model_source import array_scale_report

    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1 (got {batch_size})")
    batch_size = int(batch_size)
    rows = np.asarray(x)
    if check_scale and len(rows):
        sample = np.asarray(rows[:256], dtype=np.float32)
        finite = sample[np.isfinite(sample).reshape(len(sample), -1).all(axis=1)]
        findings = check_unnormalised_input(array_scale_report(model, finite)) if len(finite) else []
        for finding in findings:
            warnings.warn(f"{finding.message} {finding.fix}", InputScaleWarning, stacklevel=2)
    raw = []
    for start in range(0, len(rows), batch_size):
        # float32 one batch at a time; NaN or infinity is refused with its row number
        batch = model_input(model, rows[start:start + batch_size], np.arange(start, start + batch_size))
        padded = np.zeros((batch_size, *batch.shape[1:]), dtype=np.float32)
        padded[:len(batch)] = batch
        raw.append(np.asarray(model.predict_on_batch(padded))[:len(batch)])
    # Probabilities or logits is decided once over all rows, never per batch.
    return positive_probs(np.concatenate(raw)) if raw else np.empty(0)
