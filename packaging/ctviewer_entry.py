"""Entry script of the frozen (PyInstaller) ctviewer: GUI by default, CLI subcommands when given."""

import multiprocessing
import os
import sys


def _run() -> int:
    # A frozen program re-executes itself for multiprocessing children (joblib, Keras data workers).
    multiprocessing.freeze_support()
    # A user's ~/.keras/keras.json naming another backend must not break the bundle: only TF is inside.
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from ctviewer.__main__ import main

    return main()


if __name__ == "__main__":
    sys.exit(_run())
