"""What the doctor returns: `Finding`, one per problem, with a stable code scripts can rely on.

No TensorFlow, no scikit-learn: the GUI imports this at start-up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ctviewer.core.jsonable import json_safe

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")

# Every code the doctor can emit, with the question it answers. Codes never change meaning.
CODES: dict[str, str] = {
    "tail-split-one-class": "would Keras' validation_split (the last fraction, unshuffled) validate on one class?",
    "small-class": "does a validation/test set have one class, or too few of a class for its metric to mean much?",
    "patient-leak": "is a patient on both sides of a split?",
    "duplicate-leak": "is an identical image on both sides of a split (or could a split separate copies)?",
    "class-imbalance": "is one class so frequent that accuracy says little?",
    "no-patient-ids": "can a split keep one patient's slices together at all?",
    "slices-per-patient": "how many slices does each patient contribute; do image-level intervals mislead?",
    "prediction-collapse": "does the model call every image the same class?",
    "non-finite-output": "does the model output NaN or infinity (diverged training, wrong input scale)?",
    "batchnorm-mode-mismatch": "do outputs change between training=True and training=False?",
    "unstable-predictions": "does the same image get different outputs from call to call, or alone vs batched?",
    "perfect-validation": "are validation metrics perfect from the first epochs while training metrics are not?",
    "validation-all-or-nothing": "is validation accuracy only ever 0 or 1 (a one-class validation set)?",
    "unnormalised-input": "do raw HU or 0-4095 values reach the first layer?",
    "baseline-beats-model": "does a histogram logistic regression match or beat the model's AUC?",
    "evaluated-on-training-data": "are the model's numbers on this data optimistic because it trained on it?",
    "check-skipped": "a check that could not run, and why",
}


@dataclass(frozen=True)
class Finding:
    """One problem the doctor found.

    Attributes
    ----------
    code
        Stable identifier (a key of `CODES`), e.g. ``"tail-split-one-class"``.
    severity
        ``"error"`` (results cannot be trusted), ``"warning"`` (they may mislead) or ``"info"``.
    message
        One plain sentence saying what is wrong, with the numbers.
    evidence
        JSON-serialisable numbers and file names behind the message.
    fix
        One sentence saying what to do.
    """

    code: str
    severity: Severity
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")
        if self.code not in CODES:
            raise ValueError(f"unknown finding code {self.code!r}")
        object.__setattr__(self, "evidence", json_safe(dict(self.evidence), digits=6))

    def to_json_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "message": self.message,
                "evidence": self.evidence, "fix": self.fix}


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Errors first, then warnings, then info; the checks' own order within a severity."""
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def format_finding(finding: Finding, width: int = 100) -> str:
    """A finding as readable text: severity and code, message, evidence, fix."""
    import textwrap

    def wrap(label: str, text: str) -> list[str]:
        return textwrap.wrap(text, width=width, initial_indent=f"  {label}", subsequent_indent="      ") or []

    lines = [f"{finding.severity.upper():<7} {finding.code}"]
    lines += wrap("", finding.message)
    if finding.evidence:
        parts = [f"{k}={_short(v)}" for k, v in finding.evidence.items()]
        lines += wrap("evidence: ", "; ".join(parts))
    if finding.fix:
        lines += wrap("fix: ", finding.fix)
    return "\n".join(lines)


def _short(value: Any, limit: int = 6) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        shown = ", ".join(_short(v) for v in value[:limit])
        more = f", ... ({len(value)} in all)" if len(value) > limit else ""
        return f"[{shown}{more}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return str(value)
