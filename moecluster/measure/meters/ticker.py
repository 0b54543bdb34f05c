"""A daemon thread that calls one function every `interval_s`.

Both of the node's power samplers run on it: the meter's `PowerTrace` (every sample of a window,
for GPUs without NVML's energy counter) and the agent's `exporter.PowerSampler` (each GPU's average
and peak power between two scrapes). After a stall (a suspended or overloaded process) it goes on
from now rather than calling the function in a burst to catch up: a burst would put many samples
at one instant and none over the stall.
"""
from __future__ import annotations

import threading
import time
from typing import Callable


class Ticker:
    """Calls `tick` every `interval_s` on a daemon thread until `stop()` or `tick` returns False."""

    def __init__(self, tick: Callable[[], bool], interval_s: float, *, name: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if interval_s <= 0:
            raise ValueError(f"sampler interval must be > 0 s, got {interval_s}")
        self.interval_s = interval_s
        self._tick = tick
        self._clock = clock
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _loop(self) -> None:
        next_t = self._clock()
        while not self._stop.is_set():
            if not self._tick():
                return
            now = self._clock()
            next_t = max(next_t + self.interval_s, now)
            self._stop.wait(next_t - now)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """Ends the thread and waits for it (at most `timeout_s`; None: until it ends)."""
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout_s)
