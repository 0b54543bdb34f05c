"""A test double: a clock that moves only when something sleeps on it (no real seconds pass)."""
from __future__ import annotations


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
