"""The core's and the CLI's words, said the way a clinician reads them on screen.

The core's messages (errors, training notes, doctor findings) are written for the command line
and its users: "model bundle", "out-of-fold", "5-fold ensemble". The CLI keeps them (its tests
and its users rely on them); the app passes what it shows through :func:`for_screen`. File
paths are left alone: a folder may well be called ``bundle`` or ``fold1``.
"""

from __future__ import annotations

import re

# Not inside a path or a name: no slash, word character, dot or dash right before or after
# (a full stop that ends a sentence is fine).
_BEFORE = r"(?<![/\\\w.-])"
_AFTER = r"(?![/\\\w-]|\.\w)"


def _word(pattern: str) -> re.Pattern[str]:
    return re.compile(_BEFORE + pattern + _AFTER, re.IGNORECASE)


# In order: the longer phrases first, so "model bundle folder" is not said as "model saved model folder".
_PLAIN: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?:use )?--folds 1"), "turn cross-validation off"),
    (re.compile(r" \(default rule; choose with --positive\)"), " (chosen from the class names)"),
    (_word(r"(?:ctviewer )?model bundle folder"), "saved model folder"),
    (_word(r"ctviewer model bundle"), "saved ctviewer model"),
    (_word(r"ctviewer bundle"), "saved ctviewer model"),
    (_word(r"model bundle"), "saved model"),
    (_word(r"bundle folder"), "saved model folder"),
    (_word(r"bundle"), "saved model"),
    (_word(r"pooled out-of-fold"), "measured on held-out patients"),
    (_word(r"\(out-of-fold\)"), "(on held-out patients)"),
    (_word(r"out-of-fold"), "held-out"),
    (_word(r"validation hold-out"), "validation patients"),
    (_word(r"hold-out"), "held-out patients"),
    (_word(r"(\d+)-fold ensemble"), r"ensemble of \1 models (one per patient group)"),
    (_word(r"(?:patient-grouped )?(\d+)-fold CV"), r"cross-validated over \1 patient groups"),
    (_word(r"fold model\(s\)"), "patient-group model(s)"),
    (_word(r"fold models"), "patient-group models"),
    (_word(r"fold's"), "patient group's"),
    (_word(r"patient-grouped folds"), "patient groups"),
    (_word(r"folds"), "patient groups"),
    (_word(r"fold (\d+)"), r"patient group \1"),
    (_word(r"fold"), "patient group"),
    (re.compile(r" \(youden\)", re.IGNORECASE), ""),
    (_word(r"Youden's J"), "the best sum of sensitivity and specificity"),
    (_word(r"Wilson/DeLong intervals"), "95 % ranges"),
    (_word(r"default recipe"), "recommended network"),
    (_word(r"texture recipe"), "texture network"),
    (_word(r"recipe"), "recommended settings"),
)


def for_screen(text: str) -> str:
    """``text`` in plain words: the replacements of ``_PLAIN``; paths and file names are kept."""
    for pattern, plain in _PLAIN:
        text = pattern.sub(lambda m, plain=plain: _keep_capital(m.group(0), m.expand(plain)), text)
    return text


def _keep_capital(old: str, new: str) -> str:
    return new[:1].upper() + new[1:] if old[:1].isupper() and new[:1].islower() else new
