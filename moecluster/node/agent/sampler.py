"""Background power sampling between scrapes: each GPU's average and maximum power.

A scrape every 15 s sees one instantaneous power value; a 300 ms burst between two scrapes
would be invisible. `PowerSampler` reads every GPU's power every `interval_s` on one daemon
thread (a `meters.ticker.Ticker`) and keeps, per GPU, the samples since the last
`take_window()`: their time-weighted mean (trapezoids) and maximum. It also integrates power
into energy, which the collector exports as the energy counter on GPUs without NVML's hardware
counter.

A GPU whose reading fails is skipped for that tick (its error is kept for the collector);
the thread never dies of a GPU error.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from moecluster.devices import DeviceError, Gpu
from moecluster.measure.meters.ticker import Ticker


@dataclass(frozen=True)
class PowerWindow:
    """Power of one GPU over the window since the previous `take_window()`."""

    avg_power_w: float
    max_power_w: float
    samples: int
    duration_s: float


class _Track:
    """Running sums of one GPU's samples (only touched under the sampler's lock)."""

    def __init__(self) -> None:
        self.last_t: float | None = None
        self.last_w: float | None = None
        self.energy_j = 0.0  # trapezoid integral since the sampler started
        self.reset_window()

    def reset_window(self) -> None:
        self.win_energy_j = 0.0
        self.win_start_t: float | None = self.last_t
        self.win_max_w: float | None = None
        self.win_samples = 0

    def add(self, t: float, w: float) -> None:
        if self.last_t is not None and self.last_w is not None:
            e = (self.last_w + w) / 2 * (t - self.last_t)
            self.energy_j += e
            self.win_energy_j += e
        if self.win_start_t is None:
            self.win_start_t = t
        self.last_t, self.last_w = t, w
        self.win_max_w = w if self.win_max_w is None else max(self.win_max_w, w)
        self.win_samples += 1


class PowerSampler:
    """Samples `gpus` every `interval_s` on a daemon thread; `take_window()` per GPU index."""

    def __init__(self, gpus: Sequence[Gpu], interval_s: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._gpus = list(gpus)
        self._clock = clock
        self._lock = threading.Lock()
        self._tracks = {g.info.index: _Track() for g in self._gpus}
        self._errors: dict[int, str] = {}
        self._ticker = Ticker(self._tick, interval_s, name="moecluster-power-sampler", clock=clock)
        self.interval_s = interval_s

    def sample_once(self) -> None:
        """Read every GPU's power now (the thread's tick; callable directly in tests)."""
        for gpu in self._gpus:
            index = gpu.info.index
            try:
                w = gpu.power_w()
            except DeviceError as exc:
                with self._lock:
                    self._errors[index] = str(exc)
                continue
            t = self._clock()
            with self._lock:
                self._errors.pop(index, None)
                self._tracks[index].add(t, w)

    def _tick(self) -> bool:
        self.sample_once()
        return True  # a GPU that fails to read is skipped for this tick, never the thread's end

    def start(self) -> "PowerSampler":
        self._ticker.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._ticker.stop(timeout_s)

    @property
    def thread(self) -> threading.Thread:
        return self._ticker.thread

    def error(self, index: int) -> str | None:
        """The last sampling error of GPU `index`, None once it reads again."""
        with self._lock:
            return self._errors.get(index)

    def integrated_energy_j(self, index: int) -> float:
        """Energy of GPU `index` integrated from samples since the sampler started."""
        with self._lock:
            return self._tracks[index].energy_j

    def take_window(self, index: int) -> PowerWindow | None:
        """Average and maximum power of GPU `index` since the previous call; starts a new
        window. None when no sample arrived in the window."""
        with self._lock:
            track = self._tracks[index]
            if track.win_samples == 0 or track.win_max_w is None:
                return None
            start, end = track.win_start_t, track.last_t
            span = (end - start) if start is not None and end is not None else 0.0
            avg = track.win_energy_j / span if span > 0 else track.win_max_w
            window = PowerWindow(avg_power_w=avg, max_power_w=track.win_max_w,
                                 samples=track.win_samples, duration_s=span)
            track.reset_window()
            return window
