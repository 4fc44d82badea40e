"""Modules the window needs once results arrive, imported ahead of time in a background thread.

Their first import costs 50-200 ms of CPU (numpy imports ``numpy.ma`` at the first ``np.unique``;
the doctor's checks pull in the model-file modules). Paid at the moment a training ends, that is
a stall of the window just when it fills the Results panel. Imported while the engine trains (or
loads a model), the GUI thread keeps the interpreter every few ms, so nobody notices.
"""

from __future__ import annotations

import importlib
import threading

# What the finish of a training (ROC, operating point, doctor's quick checks) imports on first use.
MODULES = ("numpy.ma", "ctviewer.core.metrics.operating", "ctviewer.core.metrics.aggregate", "ctviewer.core.doctor")

_started = threading.Event()


def warm_up_in_background() -> threading.Thread | None:
    """Import `MODULES` in a daemon thread, once per process; the thread (None if already done)."""
    if _started.is_set():
        return None
    _started.set()
    thread = threading.Thread(target=_import_all, name="warm-up imports", daemon=True)
    thread.start()
    return thread


def _import_all() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a warm-up only: the real import will report the error
            pass
