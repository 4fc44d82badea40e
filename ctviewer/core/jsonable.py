"""`json_safe`: any value ctviewer writes to JSON (cards, metrics, findings) as plain JSON types."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np


def json_safe(value: Any, digits: int | None = None) -> Any:
    """Plain JSON types: NaN/inf -> None, numpy -> Python, tuples/arrays -> lists, sets -> sorted lists.

    Parameters
    ----------
    value
        Anything; objects with ``to_list()`` (e.g. an `Interval`) and dataclasses are
        converted through it, paths become strings, unknown objects their ``str``.
    digits
        Round floats to this many decimals (findings' evidence), or keep them exact (None).
    """
    if hasattr(value, "to_list") and callable(value.to_list) and not isinstance(value, np.ndarray):
        return json_safe(value.to_list(), digits)
    if is_dataclass(value) and not isinstance(value, type):
        return json_safe(asdict(value), digits)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, digits) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return [json_safe(v, digits) for v in sorted(value, key=str)]
    if isinstance(value, (np.ndarray, list, tuple)):
        return [json_safe(v, digits) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        return json_safe(value.item(), digits)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return value if digits is None else round(value, digits)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)
