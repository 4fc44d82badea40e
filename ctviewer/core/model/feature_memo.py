"""Texture features already computed, remembered per frozen feature trunk and image.

The texture recipe's features are a fixed function of the image: frozen random networks, no
statistic of the data in them (the read-out standardises on its own training rows). So the
recipe chooser, every fold of a cross-validation and every member of a fold ensemble that use
the same networks can share one forward pass per image. That is what makes the recipe's
16 networks cheaper to train with than 8 networks drawn anew per fold were (docs/RECIPE.md).

The key of a trunk is a digest of its layers' configuration and weights, so two models built
the same way share entries and a model whose weights differ in one bit does not. The key of an
image is a digest of its preprocessed float32 pixels. Rows are kept as float32 (the networks
compute in float32: nothing is lost) within a memory bound; the oldest go first.
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np

# At most this many bytes of feature rows are kept (500 images x 17k features x 4 B = 35 MB).
MEMO_BYTES = 512 * 2**20

_KEYS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_ROWS: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()
_LOCK = threading.Lock()
_STATS = {"hits": 0, "misses": 0, "bytes": 0}


def trunk_key(extractor: Any) -> str:
    """A digest of a feature extractor's layer configurations and weights (computed once per model)."""
    try:
        return _KEYS[extractor]
    except (KeyError, TypeError):
        pass
    digest = hashlib.blake2b(digest_size=16)
    for layer in extractor.layers:
        config = {k: v for k, v in layer.get_config().items() if k != "name"}
        digest.update(json.dumps(config, sort_keys=True, default=str).encode())
        for weight in layer.get_weights():
            digest.update(np.ascontiguousarray(weight).tobytes())
    key = digest.hexdigest()
    try:
        _KEYS[extractor] = key
    except TypeError:
        pass
    return key


def image_key(image: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(image, dtype=np.float32).tobytes(), digest_size=16).digest()


def recall(trunk: str, keys: list[bytes]) -> list[np.ndarray | None]:
    """The remembered rows of these images (None where not remembered)."""
    with _LOCK:
        rows = []
        for key in keys:
            row = _ROWS.get((trunk, key))
            if row is not None:
                _ROWS.move_to_end((trunk, key))
            rows.append(row)
        found = sum(row is not None for row in rows)
        _STATS["hits"] += found
        _STATS["misses"] += len(rows) - found
        return rows


def remember(trunk: str, keys: list[bytes], rows: np.ndarray) -> None:
    with _LOCK:
        for key, row in zip(keys, np.asarray(rows, dtype=np.float32)):
            if (trunk, key) not in _ROWS:
                _ROWS[(trunk, key)] = row
                _STATS["bytes"] += row.nbytes
        while _STATS["bytes"] > MEMO_BYTES and _ROWS:
            _, old = _ROWS.popitem(last=False)
            _STATS["bytes"] -= old.nbytes


def forget() -> None:
    """Drop every remembered row (tests; a user never needs to)."""
    with _LOCK:
        _ROWS.clear()
        _STATS.update(hits=0, misses=0, bytes=0)


def stats() -> dict[str, int]:
    """Rows found and computed since the last `forget`, and the bytes held."""
    with _LOCK:
        return dict(_STATS)
