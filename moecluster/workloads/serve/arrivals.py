"""Open-loop arrivals: when each request of a `request_rate` load is due, from a seeded generator.

Follows vLLM's serving benchmark (`vllm bench serve --request-rate R --burstiness B`): the gaps between
arrivals are gamma-distributed with shape `B` and scale `1 / (R · B)`, so their mean is `1 / R` whatever
`B`; `B = 1` makes them exponential (a Poisson process), `B < 1` burstier, `B > 1` more even. Unlike it,
the schedule is drawn from its own `random.Random(seed)` (not a process-wide generator) and is endless
(the load runs until the task's last window closes, not for a fixed number of prompts), so the MoE and
dense sides of a pair, each a fresh task, replay exactly the same arrival times from their own start.
Gaps are drawn in fixed blocks, so how far a caller reads never changes the values it gets.
"""
from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

BLOCK = 256


@dataclass(frozen=True)
class Arrivals:
    """A renewal process of `rate_per_s` mean arrivals per second, gamma gaps of shape `burstiness`."""

    rate_per_s: float
    burstiness: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_per_s) and self.rate_per_s > 0):
            raise ValueError(f"request rate must be a finite number > 0, not {self.rate_per_s!r}")
        if not (math.isfinite(self.burstiness) and self.burstiness > 0):
            raise ValueError(f"burstiness must be a finite number > 0, not {self.burstiness!r}")

    def gaps_s(self) -> Iterator[float]:
        """The gaps between consecutive arrivals, seconds, endlessly (the first is the wait before the second)."""
        rng = random.Random(self.seed)
        scale = 1.0 / (self.rate_per_s * self.burstiness)
        while True:
            yield from [rng.gammavariate(self.burstiness, scale) for _ in range(BLOCK)]

    def offsets_s(self) -> Iterator[float]:
        """Each arrival's time after the load's start, seconds: the first at 0, then after each gap."""
        t = 0.0
        yield t
        for gap in self.gaps_s():
            t += gap
            yield t

    def schedule_s(self, n: int) -> list[float]:
        """The first `n` arrival offsets (what `offsets_s` yields first)."""
        out: list[float] = []
        for t in self.offsets_s():
            if len(out) >= n:
                break
            out.append(t)
        return out
