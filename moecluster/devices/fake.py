"""A deterministic fake GPU: the test double for NVML.

Power follows a known model: `idle_w` when unloaded, `idle_w + load * (busy_w - idle_w)`
while `set_load(load)` is in effect. Energy is the exact integral of that power over the
injected clock, so a test can predict every reading. A fault file (one GPU index per line)
turns GPUs faulty from outside the process, the way a real GPU falls off the bus.

Two optional behaviours of real GPUs, both off by default (then every reading is as above):
`power_tau_s` > 0 makes power approach a new load's level exponentially with that time
constant (a GPU still warm from load draws more than idle for a while: settling), and
`counter_period_s` > 0 makes the energy counter update only every that many seconds from
the GPU's creation (NVML's counter on an H100 steps about every 100 ms), reporting the exact
energy at its latest update. Both stay exact integrals, so tests can still predict them.
"""
from __future__ import annotations

import math
import threading
import time
import uuid as uuidlib
from pathlib import Path
from typing import Callable, Sequence

from moecluster.devices.base import DeviceError, DeviceSet, Gpu, GpuInfo

Clock = Callable[[], float]


class FakeGpu(Gpu):
    def __init__(
        self,
        index: int,
        *,
        node: str = "fake",
        idle_w: float = 60.0,
        busy_w: float = 300.0,
        clock: Clock = time.monotonic,
        fault_file: Path | None = None,
        name: str = "Fake GPU",
        power_tau_s: float = 0.0,
        counter_period_s: float = 0.0,
    ) -> None:
        if power_tau_s < 0 or counter_period_s < 0:
            raise ValueError(f"power_tau_s and counter_period_s must be >= 0 ({power_tau_s}, {counter_period_s})")
        uid = uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"{node}/{index}")
        self._info = GpuInfo(index=index, uuid=f"GPU-{uid}", name=name)
        self.idle_w = idle_w
        self.busy_w = busy_w
        self._clock = clock
        self._fault_file = fault_file
        self._lock = threading.Lock()
        self._power_tau_s = power_tau_s
        self._counter_period_s = counter_period_s
        self._load = 0.0
        self._t_last = clock()
        self._t_origin = self._t_last
        self._power_last_w = idle_w  # power at _t_last
        self._energy_j = 0.0  # exact energy up to _t_last
        self._counter_j = 0.0  # energy at the counter's latest update (counter_period_s > 0)

    @property
    def info(self) -> GpuInfo:
        return self._info

    def _check(self) -> None:
        if self._fault_file is not None and self._fault_file.exists():
            faulty = {line.strip() for line in self._fault_file.read_text().splitlines()}
            if str(self._info.index) in faulty:
                raise DeviceError(f"fake GPU {self._info.index} is marked faulty in {self._fault_file}")

    def _power_at_load(self, load: float) -> float:
        return self.idle_w + load * (self.busy_w - self.idle_w)

    def _power_after(self, dt_s: float) -> float:
        """Power `dt_s` after _t_last (the load has not changed since)."""
        target = self._power_at_load(self._load)
        if self._power_tau_s == 0:
            return target
        return target + (self._power_last_w - target) * math.exp(-dt_s / self._power_tau_s)

    def _energy_after(self, dt_s: float) -> float:
        """Energy over the `dt_s` after _t_last: the exact integral of `_power_after`."""
        target = self._power_at_load(self._load)
        if self._power_tau_s == 0:
            return target * dt_s
        decay = self._power_tau_s * -math.expm1(-dt_s / self._power_tau_s)
        return target * dt_s + (self._power_last_w - target) * decay

    def _advance(self) -> None:
        now = self._clock()
        if self._counter_period_s > 0:
            ticks = math.floor((now - self._t_origin) / self._counter_period_s + 1e-9)  # 1e-9: float noise
            update = self._t_origin + ticks * self._counter_period_s
            if update > self._t_last:
                self._counter_j = self._energy_j + self._energy_after(update - self._t_last)
        dt = now - self._t_last
        self._energy_j += self._energy_after(dt)
        self._power_last_w = self._power_after(dt)
        self._t_last = now

    def set_load(self, load: float) -> None:
        """Set the utilisation (0..1) from now on; energy so far is kept exactly."""
        with self._lock:
            self._advance()
            self._load = min(max(load, 0.0), 1.0)

    def energy_j(self) -> float:
        """The exact energy so far, or, with `counter_period_s`, the exact energy at the latest update."""
        self._check()
        with self._lock:
            self._advance()
            return self._counter_j if self._counter_period_s > 0 else self._energy_j

    def power_w(self) -> float:
        self._check()
        if self._power_tau_s == 0:
            return self._power_at_load(self._load)
        with self._lock:
            return self._power_after(self._clock() - self._t_last)

    def utilization_ratio(self) -> float:
        self._check()
        return self._load

    def sm_clock_hz(self) -> float:
        self._check()
        return 1.98e9 if self._load > 0 else 3.45e8

    def temperature_c(self) -> float:
        self._check()
        return 35.0 + 30.0 * self._load

    def memory_used_bytes(self) -> int:
        self._check()
        return int(2**30 * (1 + 10 * self._load))

    def power_limit_w(self) -> float:
        self._check()
        return 700.0


class FakeDevices(DeviceSet):
    kind = "fake"

    def __init__(self, count: int = 1, **gpu_kwargs: object) -> None:
        self._gpus = [FakeGpu(i, **gpu_kwargs) for i in range(count)]  # type: ignore[arg-type]

    @property
    def gpus(self) -> Sequence[FakeGpu]:
        return self._gpus

    def driver_version(self) -> str | None:
        return "fake"
