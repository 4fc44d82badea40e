"""A model's identity: a short hash of its weights, the same for the same weights wherever they are."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def weights_id(model: Any) -> str:
    """Short hash of a model's weights (and weight shapes): equal weights, equal id."""
    h = hashlib.blake2b(digest_size=6)
    for w in model.get_weights():
        arr = np.ascontiguousarray(w)
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()

