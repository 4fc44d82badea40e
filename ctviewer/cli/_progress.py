"""Progress bars on stderr for the CLI: turns `ctviewer.core.events` into tqdm bars and lines.

stdout is kept for results (tables, JSON); everything transient goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ctviewer.core.events import BatchEnded, EpochEnded, Event, FoldStarted, Message, Progress

# Logs shown next to the epoch bar, in this order, when present.
_SHOWN_LOGS = ("loss", "auc", "val_loss", "val_auc", "val_accuracy")


def quiet_tensorflow_logs() -> None:
    """Hide TensorFlow's Python-side chatter (e.g. the retracing notice when each CV fold builds a new
    model): it reads like a problem to a user and is not one."""
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars (errors and results only)")
    # Also accepted after the subcommand; SUPPRESS keeps `ctviewer --verbose train` working.
    parser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show TensorFlow's start-up and debug lines (hidden by default)")


class ProgressBars:
    """A callable ``on_event``: a bar per loading task, one for epochs and one for batches.

    Use as a context manager so bars are closed even when training fails.
    """

    def __init__(self, disable: bool = False, stream: Any = None, epochs: int | None = None) -> None:
        self.disable = disable
        self.epochs = epochs  # known up front: the epoch bar then times the whole training
        self.stream = stream if stream is not None else sys.stderr
        self._bars: dict[str, Any] = {}
        self._fold = ""

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def _bar(self, key: str, total: int, desc: str, leave: bool = True) -> Any:
        from tqdm import tqdm

        bar = self._bars.get(key)
        if bar is None or bar.total != total:
            if bar is not None:
                bar.close()
            bar = tqdm(total=total, desc=desc, file=self.stream, disable=self.disable, leave=leave,
                       dynamic_ncols=True, unit="it" if key != "epoch" else "epoch")
            self._bars[key] = bar
        return bar

    def _finish(self, key: str) -> None:
        bar = self._bars.pop(key, None)
        if bar is not None:
            bar.close()

    def write(self, text: str) -> None:
        from tqdm import tqdm

        if not self.disable or text.startswith(("warning", "error")):
            tqdm.write(text, file=self.stream)

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            bar = self._bar(f"progress:{event.what}", event.total, event.what)
            bar.n = event.done
            bar.refresh()
            if event.done >= event.total:
                self._finish(f"progress:{event.what}")
        elif isinstance(event, FoldStarted):
            self._finish("epoch")
            self._fold = f"fold {event.fold + 1}/{event.folds} "
            self.write(f"{self._fold.strip()}: training")
        elif isinstance(event, BatchEnded):
            epochs = event.epochs or self.epochs
            if epochs and "epoch" not in self._bars:
                self._bar("epoch", epochs, f"{self._fold}training")
            bar = self._bar("batch", event.batches, f"{self._fold}epoch {event.epoch + 1}", leave=False)
            bar.n = event.batch + 1
            if "loss" in event.logs:  # the texture recipe's feature batches have no loss
                bar.set_postfix_str(f"loss {event.logs['loss']:.3f}", refresh=True)
            else:
                bar.refresh()
            if event.batch + 1 >= event.batches:
                self._finish("batch")
        elif isinstance(event, EpochEnded):
            self._finish("batch")
            bar = self._bar("epoch", event.epochs, f"{self._fold}training")
            bar.n = event.epoch + 1
            shown = [f"{k} {event.logs[k]:.3f}" for k in _SHOWN_LOGS if k in event.logs]
            bar.set_postfix_str(", ".join(shown), refresh=True)
        elif isinstance(event, Message):
            prefix = "" if event.level == "info" else f"{event.level}: "
            self.write(prefix + event.text)


class InterruptToStop:
    """First Ctrl-C: ask the running work to stop gracefully (training keeps its best epoch and is
    saved); a second Ctrl-C aborts at once. Use as ``with InterruptToStop(bars) as stop: fit(...,
    should_stop=stop)``. Outside the main thread (no signals there) it never asks to stop.
    """

    def __init__(self, bars: ProgressBars | None = None) -> None:
        self.bars = bars
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> InterruptToStop:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _on_interrupt(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        message = "stopping after this batch (the best epoch so far is kept); press Ctrl-C again to abort"
        if self.bars is not None:
            self.bars.write(f"warning: {message}")
        else:
            print(message, file=sys.stderr)

    def __call__(self) -> bool:
        return self.requested
