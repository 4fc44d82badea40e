"""Engines that GUI tests script in place of the model engine process."""

from __future__ import annotations


class FakeEngine:
    """The base of a scripted engine: a test adds the calls it needs; closing the window stops nothing."""

    def shutdown(self, timeout_s: float = 30.0) -> None:
        pass
