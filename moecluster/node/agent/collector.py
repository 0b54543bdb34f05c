"""Prometheus collector over a `DeviceSet`: per-GPU power, energy, clocks, ... and task labels.

Every scrape reads the GPUs afresh (no cache to go stale) and drains the sampler's power
window. Names follow Prometheus conventions with units; every GPU series carries `node`,
`gpu` (index), `uuid` and `name`. A GPU whose readings fail with `DeviceError` reports
`moecluster_gpu_up 0` and no other reading, while the other GPUs go on; a reading the GPU
cannot give at all (`Unsupported`) is left out alone. The energy counter is NVML's hardware
counter, kept monotonic across driver counter resets; on GPUs without that counter it is the
sampler's integral of power.

Per running task, `moecluster_task_energy_joules_total` is that counter's increase over the
scrape intervals the task held the GPU at both ends (see `_TaskEnergy`): the energy of a task
without the energy of the task before or after it on the same GPU, which a join of the GPU's
counter rate with `moecluster_task_info` cannot separate when tasks alternate on one GPU (a
pair's A B B A windows) faster than the rate's range.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from moecluster.devices import DeviceError, DeviceSet, Gpu, Unsupported
from moecluster.node.agent.sampler import PowerSampler
from moecluster.node.agent.task_labels import TaskLabel, read_task_labels

GPU_LABELS = ("node", "gpu", "uuid", "name")
TASK_INFO_LABELS = ("node", "gpu", "uuid", "run", "task", "pair", "kind", "impl", "preset")
TASK_COUNTER_LABELS = ("node", "gpu", "uuid", "run", "task")
#: a task's energy total is forgotten this long after it was last seen (a pair's tasks come back
#: between their windows; a task gone this long has finished)
TASK_ENERGY_KEEP_S = 3600.0
log = logging.getLogger(__name__)

# (metric name, help, Gpu method) of the plain per-GPU gauges read at scrape time.
GAUGES: tuple[tuple[str, str, Callable[[Gpu], float]], ...] = (
    ("moecluster_gpu_power_watts", "Board power at scrape time (NVML instantaneous power).",
     lambda g: g.power_w()),
    ("moecluster_gpu_utilization_ratio", "Fraction of the last sample period in which a kernel ran (0..1).",
     lambda g: g.utilization_ratio()),
    ("moecluster_gpu_sm_clock_hertz", "SM clock.", lambda g: g.sm_clock_hz()),
    ("moecluster_gpu_temperature_celsius", "GPU core temperature.", lambda g: g.temperature_c()),
    ("moecluster_gpu_memory_used_bytes", "Framebuffer memory in use.", lambda g: float(g.memory_used_bytes())),
    ("moecluster_gpu_power_limit_watts", "Enforced power limit.", lambda g: g.power_limit_w()),
)


class _MonotonicEnergy:
    """Keeps one GPU's energy counter monotonic: a counter that goes back (driver reload,
    GPU reset) continues from where it was instead of dropping."""

    def __init__(self) -> None:
        self.last_raw_j: float | None = None
        self.offset_j = 0.0

    def update(self, raw_j: float) -> float:
        if self.last_raw_j is not None and raw_j < self.last_raw_j:
            self.offset_j += self.last_raw_j
        self.last_raw_j = raw_j
        return raw_j + self.offset_j


class _TaskEnergy:
    """Energy per task from the GPUs' counters, attributed at scrapes.

    At each scrape, a GPU's counter increase since the previous scrape is added to the task that
    holds the GPU now if that same task held it at the previous scrape too; an interval across
    which the holder changed (or the GPU was down, or no task held it) is charged to nobody. So a
    task's total is exact for the intervals it covers, never includes a neighbour's energy, and
    `rate()` of it over the task's samples is the task's power. A task that comes back (the next
    window of a pair) continues its own total.
    """

    def __init__(self, keep_s: float = TASK_ENERGY_KEEP_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.keep_s = keep_s
        self.clock = clock
        self.total_j: dict[tuple[str, str, str], float] = {}  # (uuid, run, task) -> joules
        self._seen: dict[tuple[str, str, str], float] = {}  # (uuid, run, task) -> clock() when last seen
        self._holder: dict[str, tuple[tuple[str, str, str] | None, float]] = {}  # uuid -> (key, counter J)

    def update(self, uuid: str, holder: tuple[str, str] | None, counter_j: float | None) -> float | None:
        """Record this scrape of GPU `uuid`: its task (run, task) or None, its counter (None: down).
        Returns the holder's total, or None when no task holds the GPU."""
        key = (uuid, *holder) if holder is not None else None
        prev = self._holder.pop(uuid, None)
        if key is None:
            if counter_j is not None:
                self._holder[uuid] = (None, counter_j)
            return None
        total = self.total_j.setdefault(key, 0.0)
        if counter_j is not None:
            if prev is not None and prev[0] == key:
                total += max(0.0, counter_j - prev[1])
                self.total_j[key] = total
            self._holder[uuid] = (key, counter_j)
        self._seen[key] = self.clock()
        return total

    def forget_old(self) -> None:
        cutoff = self.clock() - self.keep_s
        for key in [k for k, t in self._seen.items() if t < cutoff]:
            del self._seen[key]
            self.total_j.pop(key, None)


class GpuCollector(Collector):
    """Collects the metrics of every GPU in `devices`, plus the task series from `state_dir`."""

    def __init__(self, devices: DeviceSet, *, node: str, sampler: PowerSampler | None,
                 state_dir: Path | None, agent_version: str = "unknown") -> None:
        self.devices = devices
        self.node = node
        self.sampler = sampler
        self.state_dir = state_dir
        self.agent_version = agent_version
        self._lock = threading.Lock()
        self._energy = {g.info.index: _MonotonicEnergy() for g in devices.gpus}
        self._task_energy = _TaskEnergy()
        self._down: dict[int, str] = {}

    def describe(self) -> Iterable[Metric]:
        return []  # collected metrics vary with the GPUs; skip the registry's dry run

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            return iter(self._collect())

    # -- internals -----------------------------------------------------------------------
    def _gpu_labels(self, gpu: Gpu) -> list[str]:
        return [self.node, str(gpu.info.index), gpu.info.uuid, gpu.info.name]

    def _read_gpu(self, gpu: Gpu) -> dict[str, float] | None:
        """All readings of one GPU by metric name, or None if the GPU is down."""
        values: dict[str, float] = {}
        try:
            for name, _help, read in GAUGES:
                try:
                    values[name] = read(gpu)
                except Unsupported:
                    continue
            values["energy"] = self._energy_j(gpu)
        except DeviceError as exc:
            self._mark(gpu, str(exc))
            return None
        self._mark(gpu, None)
        return values

    def _energy_j(self, gpu: Gpu) -> float:
        index = gpu.info.index
        try:
            raw = gpu.energy_j()
        except Unsupported:
            if self.sampler is None:
                raise
            raw = self.sampler.integrated_energy_j(index)
        return self._energy[index].update(raw)

    def _mark(self, gpu: Gpu, error: str | None) -> None:
        index = gpu.info.index
        if error is not None and index not in self._down:
            log.warning("GPU %d (%s) is down: %s", index, gpu.info.uuid, error)
            self._down[index] = error
        elif error is None and index in self._down:
            log.info("GPU %d (%s) reads again", index, gpu.info.uuid)
            del self._down[index]

    def _collect(self) -> list[Metric]:
        up = GaugeMetricFamily("moecluster_gpu_up", "1 if every reading of the GPU succeeded at this scrape, else 0.",
                               labels=GPU_LABELS)
        gauges = {name: GaugeMetricFamily(name, doc, labels=GPU_LABELS) for name, doc, _ in GAUGES}
        energy = CounterMetricFamily(
            "moecluster_gpu_energy_joules", "Energy used by the GPU (NVML hardware energy counter; sampled "
            "power integral where the GPU has none).", labels=GPU_LABELS)
        avg = GaugeMetricFamily("moecluster_gpu_power_avg_watts",
                                "Mean sampled power since the previous scrape.", labels=GPU_LABELS)
        peak = GaugeMetricFamily("moecluster_gpu_power_max_watts",
                                 "Maximum sampled power since the previous scrape.", labels=GPU_LABELS)
        counters_j: dict[str, float | None] = {}
        for gpu in self.devices.gpus:
            labels = self._gpu_labels(gpu)
            values = self._read_gpu(gpu)
            window = self.sampler.take_window(gpu.info.index) if self.sampler is not None else None
            up.add_metric(labels, 0.0 if values is None else 1.0)
            counters_j[gpu.info.uuid] = None if values is None else values["energy"]
            if values is None:
                continue
            for name, family in gauges.items():
                if name in values:
                    family.add_metric(labels, values[name])
            energy.add_metric(labels, values["energy"])
            if window is not None:
                avg.add_metric(labels, window.avg_power_w)
                peak.add_metric(labels, window.max_power_w)
            elif "moecluster_gpu_power_watts" in values:  # no sample since the last scrape
                avg.add_metric(labels, values["moecluster_gpu_power_watts"])
                peak.add_metric(labels, values["moecluster_gpu_power_watts"])
        return [*self._agent_metrics(), up, energy, avg, peak, *gauges.values(), *self._task_metrics(counters_j)]

    def _agent_metrics(self) -> list[Metric]:
        info = InfoMetricFamily("moecluster_agent", "The node agent: its node name, device backend and versions.",
                                labels=("node", "device", "driver", "version"))
        info.add_metric([self.node, self.devices.kind, self.devices.driver_version() or "",
                         self.agent_version], {})
        devices_up = GaugeMetricFamily(
            "moecluster_agent_devices_up", "1 if the device backend can read GPUs (0: e.g. NVML missing; "
            "the agent log says why).", labels=("node", "device"))
        devices_up.add_metric([self.node, self.devices.kind], 0.0 if self.devices.unavailable_reason else 1.0)
        count = GaugeMetricFamily("moecluster_agent_gpus", "GPUs the agent sees.", labels=("node",))
        count.add_metric([self.node], float(len(self.devices.gpus)))
        out: list[Metric] = [info, devices_up, count]
        if self.sampler is not None:
            interval = GaugeMetricFamily("moecluster_agent_sample_interval_seconds",
                                         "Interval of the background power sampler.", labels=("node",))
            interval.add_metric([self.node], self.sampler.interval_s)
            out.append(interval)
        return out

    def _task_metrics(self, counters_j: dict[str, float | None]) -> list[Metric]:
        info = InfoMetricFamily("moecluster_task", "The benchmark task running on the GPU.", labels=TASK_INFO_LABELS)
        done = CounterMetricFamily("moecluster_task_inferences", "Inferences the task running on the GPU has "
                                   "completed.", labels=TASK_COUNTER_LABELS)
        task_energy = CounterMetricFamily(
            "moecluster_task_energy_joules", "Energy of the GPU over the scrape intervals the task held it at both"
            " ends (its energy counter's increase; a neighbouring task's energy is never included).",
            labels=TASK_COUNTER_LABELS)
        labels_by_uuid: dict[str, TaskLabel] = (
            read_task_labels(self.state_dir) if self.state_dir is not None else {})
        for gpu in self.devices.gpus:
            t = labels_by_uuid.get(gpu.info.uuid)
            total_j = self._task_energy.update(gpu.info.uuid, None if t is None else (t.run, t.task),
                                               counters_j.get(gpu.info.uuid))
            if t is None:
                continue
            base = [self.node, str(gpu.info.index), gpu.info.uuid]
            info.add_metric([*base, t.run, t.task, t.pair, t.kind, t.impl, t.preset], {})
            done.add_metric([*base, t.run, t.task], float(t.inferences_total))
            if total_j is not None and counters_j.get(gpu.info.uuid) is not None:
                task_energy.add_metric([*base, t.run, t.task], total_j)
        self._task_energy.forget_old()
        return [info, done, task_energy]
