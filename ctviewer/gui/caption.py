"""The caption drawn on the image: which file, whose, its true class, and the model's call with
the threshold it was made at. Pure text, so it is tested without a window."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Call:
    """The model's call on one image, as the Results panel shows it now."""

    probability: float
    threshold: float
    positive: str
    negative: str

    @property
    def label(self) -> str:
        return self.positive if self.probability >= self.threshold else self.negative

    def describe(self) -> str:
        """"Probability of contrast 0.071 ≥ threshold 0.051 → contrast": the threshold beside the call."""
        sign = "≥" if self.probability >= self.threshold else "<"
        return (f"Probability of {self.positive} {self.probability:.3f} {sign} threshold {self.threshold:.3f}"
                f" → {self.label}")


def image_caption(path: str, item: Any = None, call: Call | None = None) -> str:
    """Two or three lines: file; patient and true class; the model's call (when predicted)."""
    lines = [Path(path).name]
    if item is not None:
        label = getattr(item, "label", None)
        lines.append(f"Patient {item.patient} · true class: {label if label is not None else 'not labelled'}")
    if call is not None:
        verdict = ""
        if item is not None and getattr(item, "label", None) is not None:
            verdict = " (right)" if call.label == item.label else " (WRONG)"
        lines.append(call.describe() + verdict)
    else:
        lines.append("No prediction for this image yet")
    return "\n".join(lines)
