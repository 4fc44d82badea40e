"""Start TensorFlow without its start-up lines on the terminal (unless asked for).

TensorFlow's native code writes ``oneDNN custom operations are on...``, ``Could not find
cuda drivers...`` and ``E0000 ... failed call to cuInit ... (303)`` straight to file
descriptor 2 before any Python logging exists, so neither ``TF_CPP_MIN_LOG_LEVEL`` nor the
``logging`` module hides them; they read like faults to a user and are not. While TensorFlow
starts (import and device discovery, where cuInit runs), descriptor 2 points at a
temporary file; the lines are shown when ``verbose`` or when the start fails.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile

VERBOSE_ENV = "CTVIEWER_VERBOSE"


def verbose_requested() -> bool:
    """``$CTVIEWER_VERBOSE`` set to 1 (the CLI's and the app's ``--verbose``)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes")


def start_tensorflow(verbose: bool | None = None) -> None:
    """Import TensorFlow and Keras and discover devices, keeping TensorFlow's start-up lines quiet.

    Does nothing more once TensorFlow is imported. ``verbose`` (default: `verbose_requested`)
    lets every line through.
    """
    verbose = verbose_requested() if verbose is None else verbose
    if "tensorflow" in sys.modules:
        return
    if verbose:
        _import()
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        failed = True
        try:
            _import()
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                # The start failed: what TensorFlow said is the clue, show it.
                sink.seek(0)
                sys.stderr.write(sink.read().decode("utf-8", "replace"))
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _import() -> None:
    import keras  # noqa: F401 - imported here so its own start-up happens inside the quiet window
    import tensorflow as tf

    tf.config.list_physical_devices()
