"""`diagnose`: the doctor's checks on a Keras model and arrays; `Diagnosis`, its printable result."""

from __future__ import annotations

import html
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctviewer.core.doctor import MAX_IMAGES, MODE_IMAGES
from ctviewer.core.doctor.findings import Finding, format_finding


@dataclass(frozen=True)
class Diagnosis(Sequence[Finding]):
    """The doctor's findings, errors first; prints as text, shows as a table in a notebook.

    Attributes
    ----------
    findings
        `Finding` objects (``code``, ``severity``, ``message``, ``evidence``, ``fix``).
    subject
        What was examined, in words.
    """

    findings: tuple[Finding, ...]
    subject: str = ""
    notes: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.findings)

    def __getitem__(self, index: Any) -> Any:
        return self.findings[index]

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.findings)

    @property
    def codes(self) -> list[str]:
        """The finding codes in order (a code may appear more than once)."""
        return [f.code for f in self.findings]

    def by_code(self, code: str) -> list[Finding]:
        """The findings with this code (empty when there is none)."""
        return [f for f in self.findings if f.code == code]

    def to_json_dicts(self) -> list[dict[str, Any]]:
        """The findings as ``{code, severity, message, evidence, fix}`` dicts (``ctviewer doctor --json``)."""
        return [f.to_json_dict() for f in self.findings]

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_json_dicts(), indent=indent, ensure_ascii=False, allow_nan=False)

    def _summary(self) -> str:
        counts = {s: sum(1 for f in self.findings if f.severity == s) for s in ("error", "warning", "info")}
        return ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items() if n) or "no findings"

    def __str__(self) -> str:
        lines = [f"ctviewer doctor: {self.subject}" if self.subject else "ctviewer doctor", self._summary(), ""]
        lines += [line for f in self.findings for line in (format_finding(f), "")]
        lines += list(self.notes)
        if not self.findings:
            lines.append("Nothing found. (The doctor checks common pitfalls; it cannot prove a model right.)")
        return "\n".join(lines).rstrip()

    def __repr__(self) -> str:
        return f"Diagnosis({self._summary()}: {', '.join(self.codes) or 'none'})"

    def _repr_html_(self) -> str:
        colour = {"error": "#b00020", "warning": "#a15c00", "info": "#555"}
        rows = "".join(
            f"<tr><td style='color:{colour[f.severity]};font-weight:bold'>{f.severity}</td>"
            f"<td><code>{html.escape(f.code)}</code></td><td style='text-align:left'>{html.escape(f.message)}</td>"
            f"<td style='text-align:left'>{html.escape(f.fix)}</td></tr>"
            for f in self.findings
        ) or "<tr><td colspan='4'>Nothing found.</td></tr>"
        caption = html.escape(f"{self.subject}: {self._summary()}" if self.subject else self._summary())
        return (f"<table><caption style='text-align:left'>ctviewer doctor: {caption}</caption>"
                "<tr><th>severity</th><th>code</th><th>finding</th><th>fix</th></tr>"
                f"{rows}</table>")


def diagnose(model: Any, x: Any, y: Any = None, *, validation_split: float | None = None, history: Any = None,
             patients: Any = None, classes: tuple[str, str] | None = None, threshold: float = 0.5,
             baseline: bool = True, max_images: int = MAX_IMAGES, mode_images: int = MODE_IMAGES) -> Diagnosis:
    """Run the doctor on a Keras model and the arrays it was (or will be) trained on.

    Parameters
    ----------
    model
        A ``keras.Model`` taking ``x``, with a (N, 1) sigmoid or (N, 2) softmax output
        (probability of class 1), or the path of a ``.keras``/``.h5`` file (loaded in safe
        mode); None checks the data and history only.
    x, y
        The arrays *in the order given to* ``model.fit``; ``y`` as 0/1 or one-hot rows (the
        model's output column 1 is class 1). Class names work for the data checks; with a
        model, give the 0/1 labels it was trained on.
    validation_split
        The fraction given to ``model.fit(validation_split=...)``: Keras validates on the last
        rows, unshuffled. Without it, the doctor says what 0.1 and 0.2 would hold.
    history
        The ``History`` that ``model.fit`` returned, or its ``.history`` dict.
    patients
        One patient id per row (slices of one patient must stay on one side of a split).
    classes
        Names for class 0 and class 1, for the messages.
    threshold
        Class 1 when its probability is at least this.
    baseline
        Fit the histogram baseline (a logistic regression on intensity histograms, grouped
        cross-validation; needs scikit-learn) and say when it matches the model.
    max_images, mode_images
        Rows (spread evenly) the model checks use, and rows the training-vs-inference checks use.

    Returns
    -------
    Diagnosis
        Errors first, then warnings, then info; ``print()`` it, show it, or ``.to_json()``.

    Examples
    --------
    >>> report = diagnose(model, x_train, y_train, validation_split=0.1, history=history)  # doctest: +SKIP
    >>> report.codes  # doctest: +SKIP
    ['tail-split-one-class', 'small-class', 'batchnorm-mode-mismatch', ...]
    """
    from ctviewer.core.doctor.array_checks import run_array_checks

    if isinstance(model, (str, Path)):
        from ctviewer.core.doctor.model_source import load_plain_model

        model = load_plain_model(model)
    findings = run_array_checks(model, x, y, validation_split=validation_split, history=history, patients=patients,
                                classes=classes, threshold=threshold, baseline=baseline, max_images=max_images,
                                mode_images=mode_images)
    n = len(x)
    parts = [f"{n} arrays"]
    if validation_split is not None:
        parts.append(f"validation_split={validation_split:g}")
    if model is not None:
        parts.append(f"model {getattr(model, 'name', type(model).__name__)}")
    return Diagnosis(tuple(findings), ", ".join(parts))
