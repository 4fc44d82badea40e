"""What every worker process of ctviewer does first: end when the process that started it is gone.

A caller killed by a signal (the desktop session ending, a crash, ``kill``) runs no clean-up, and
Python's own workers would outlive it: a `ProcessPoolExecutor` worker waits on a queue whose both
ends it holds itself, and every process a fork server started keeps that server alive. The
sentinel of `multiprocessing.parent_process` becomes ready when the caller ends (under forkserver
too: it is the caller's end of the server's pipe), so a daemon thread waits on it.
"""

from __future__ import annotations

import multiprocessing
import os
import threading


def exit_with_the_caller() -> None:
    """Start the watch (nothing to do in a process that was not started by multiprocessing)."""
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)  # nothing to save: whatever this process computed had nowhere to go

    threading.Thread(target=watch, name="ctviewer-caller-watch", daemon=True).start()
