from __future__ import annotations

import pytest


class ManualClock:
    """A clock the test moves by hand, for the fake GPUs and the sampler alike."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
