"""Time and bytes of each phase of a step, on one rank.

A step calls `start()` once, then `mark(phase, bytes_sent)` at the end of each phase. On a GPU
each mark records a CUDA event on the current stream, so nothing waits for the device while the
steps run; the events are read once, after the pass (`summary()` synchronises). On a CPU work is
synchronous, so each mark reads the host clock. A phase's time is the gap between its mark and
the previous one; `summary()` gives each phase's mean over the steps. Used in a timed pass apart
from the energy windows: recording events is cheap, but not free.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PhaseSample:
    """One phase on one rank: mean seconds per step and mean bytes sent to other ranks per step."""

    time_s: float
    bytes_sent: float


class PhaseClock:
    """Records phase boundaries of steps on `device` (see the module's docstring)."""

    def __init__(self, device: torch.device) -> None:
        self._cuda = device.type == "cuda"
        self._steps: list[list[tuple[str, object, int]]] = []

    def _now(self) -> object:
        if self._cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def start(self) -> None:
        """A step begins."""
        self._steps.append([("", self._now(), 0)])

    def mark(self, phase: str, bytes_sent: int = 0) -> None:
        """`phase` of the current step ends here, having sent `bytes_sent` bytes to other ranks."""
        if not self._steps:
            raise RuntimeError("mark() before start()")
        self._steps[-1].append((phase, self._now(), bytes_sent))

    @property
    def steps(self) -> int:
        return len(self._steps)

    def _gap_s(self, a: object, b: object) -> float:
        if isinstance(a, torch.cuda.Event) and isinstance(b, torch.cuda.Event):
            return float(a.elapsed_time(b)) / 1e3
        if isinstance(a, float) and isinstance(b, float):
            return b - a
        raise TypeError("mixed clock marks")

    def summary(self) -> dict[str, PhaseSample]:
        """Each phase's mean time and bytes per step, in the order phases were first marked."""
        if self._cuda and self._steps:
            torch.cuda.synchronize()
        totals: dict[str, list[float]] = {}
        for marks in self._steps:
            for (_, before, _), (phase, after, sent) in zip(marks, marks[1:]):
                acc = totals.setdefault(phase, [0.0, 0.0, 0.0])
                acc[0] += self._gap_s(before, after)
                acc[1] += sent
                acc[2] += 1
        return {phase: PhaseSample(time_s=t / n, bytes_sent=b / n) for phase, (t, b, n) in totals.items()}
