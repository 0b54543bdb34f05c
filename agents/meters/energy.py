"""Energy of a set of GPUs over a window: the hardware counter first, sampled power as fallback.

`EnergyMeter.window()` reads NVML's monotonic energy counter of every GPU the task owns at
the start and at the end. A background `PowerSampler` integrates instantaneous power
(trapezoids) over the same window: it gives average and maximum power, the cross-check of
the counter, and the energy itself on GPUs without a counter (labelled as such). With no
GPU the reading is unavailable, with the reason; it is never a zero.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from ..devices import DeviceError, DeviceSet, Gpu, Unsupported

SOURCE_COUNTER = "nvml-energy-counter"
SOURCE_SAMPLED = "nvml-sampled-power"
SOURCE_FAKE = "fake-power-model"


@dataclass(frozen=True)
class EnergyReading:
    duration_s: float
    energy_j: float | None
    source: str | None
    unavailable_reason: str | None = None
    sampled_energy_j: float | None = None
    avg_power_w: float | None = None
    max_power_w: float | None = None
    samples: int = 0


class PowerSampler:
    """Sums the instantaneous power of `gpus` every `interval_s` on a daemon thread."""

    def __init__(self, gpus: Sequence[Gpu], interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._gpus = list(gpus)
        self._interval_s = interval_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="power-sampler", daemon=True)
        self.times: list[float] = []
        self.power_w: list[float] = []
        self.error: str | None = None

    def _sample(self) -> None:
        total = sum(g.power_w() for g in self._gpus)
        self.times.append(self._clock())
        self.power_w.append(total)

    def _loop(self) -> None:
        next_t = self._clock()
        while not self._stop.is_set():
            try:
                self._sample()
            except DeviceError as exc:
                self.error = str(exc)
                return
            next_t += self._interval_s
            self._stop.wait(max(0.0, next_t - self._clock()))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self._sample()  # close the window with a final point
        except DeviceError:
            pass

    def energy_j(self) -> float | None:
        if len(self.times) < 2:
            return None
        return sum((self.power_w[i] + self.power_w[i + 1]) / 2 * (self.times[i + 1] - self.times[i])
                   for i in range(len(self.times) - 1))

    def avg_power_w(self) -> float | None:
        e = self.energy_j()
        span = self.times[-1] - self.times[0] if len(self.times) >= 2 else 0.0
        return e / span if e is not None and span > 0 else None

    def max_power_w(self) -> float | None:
        return max(self.power_w) if self.power_w else None


class EnergyMeter:
    """Measures the energy of `gpus` (all from `devices`) over windows of work."""

    def __init__(self, devices: DeviceSet, gpus: Sequence[Gpu], *, sample_interval_s: float | None = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.devices = devices
        self.gpus = list(gpus)
        self.sample_interval_s = sample_interval_s
        self._clock = clock
        self.unavailable_reason = devices.unavailable_reason or (None if self.gpus else "no GPU assigned to the task")
        self._has_counter = self._probe_counter()

    def _probe_counter(self) -> bool:
        if self.unavailable_reason:
            return False
        try:
            for g in self.gpus:
                g.energy_j()
            return True
        except Unsupported:
            return False

    @property
    def source(self) -> str | None:
        if self.unavailable_reason:
            return None
        if self.devices.kind == "fake":
            return SOURCE_FAKE
        return SOURCE_COUNTER if self._has_counter else SOURCE_SAMPLED

    def _counter_j(self) -> float:
        return sum(g.energy_j() for g in self.gpus)

    def measure(self, work: Callable[[], object]) -> tuple[object, EnergyReading]:
        """Run `work()` (which must end with the device idle: synchronise inside it)."""
        if self.unavailable_reason:
            t0 = self._clock()
            out = work()
            return out, EnergyReading(self._clock() - t0, None, None, self.unavailable_reason)
        sampler = None
        interval = self.sample_interval_s or (None if self._has_counter else 0.1)
        if interval:
            sampler = PowerSampler(self.gpus, interval, self._clock)
            sampler.start()
        e0 = self._counter_j() if self._has_counter else None
        t0 = self._clock()
        try:
            out = work()
        finally:
            t1 = self._clock()
            e1 = self._counter_j() if self._has_counter else None
            if sampler:
                sampler.stop()
        sampled = sampler.energy_j() if sampler else None
        if e0 is not None and e1 is not None:
            energy = e1 - e0
        else:
            energy = sampled
        reason = None
        if energy is None:
            reason = f"power sampling failed: {sampler.error}" if sampler and sampler.error else "too few power samples"
        duration = t1 - t0
        return out, EnergyReading(
            duration_s=duration, energy_j=energy, source=self.source if energy is not None else None,
            unavailable_reason=reason, sampled_energy_j=sampled,
            avg_power_w=(energy / duration if energy is not None and duration > 0 else None),
            max_power_w=sampler.max_power_w() if sampler else None,
            samples=len(sampler.times) if sampler else 0)

    def idle_power_w(self, duration_s: float = 1.0) -> float | None:
        """Average power of the task's GPUs while nothing runs on them."""
        if self.unavailable_reason:
            return None
        _, reading = self.measure(lambda: time.sleep(duration_s))
        return reading.avg_power_w
