"""What every measurement on this node shares, one GPU or a gang of N: devices, set-up facts, records.

The one-device runner (`runner.run_task`) is a gang of one; a gang's rank (`parallel.gang`) is
one of N. Both open their devices the same way, read the same facts before any model exists, warm
up by the same rule and assemble their records with the same helpers, all from here:

- devices: the torch device of a task (`resolve_device`), the device set that meters it
  (`open_task_devices`: fake GPUs, NVML, or none with the reason, never a zero), the task's GPUs in
  it (`select_gpus`), how a record names them (`gpu_records`), and the versions a record carries;
- facts (`read_facts`), in this order while nothing else holds the GPU: the settled idle power
  (once per GPU per run, `meters.idle`), the counter's update period, the device's peaks for every
  dtype of the tasks (once per process, `meters.peaks`);
- records: how a task's figures drifted between windows, when a window's resolution warrants a
  warning, and a failed task's record.
"""
from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata

import torch

from moecluster.devices import DeviceSet, FakeGpu, Gpu, NoDevices, open_devices
from moecluster.devices.cuda import cuda_uuid
from moecluster.measure.meters.energy import EnergyMeter, min_window_s
from moecluster.measure.meters.idle import IdleCache, IdleReading, idle_for_run, idle_scope
from moecluster.measure.meters.peaks import PeakCache, Peaks
from moecluster.spec.records import GpuRecord, TaskResult, TaskSpec, Window
from moecluster.workloads.workload import torch_dtype

PROGRESS_EVERY_S = 0.5  # how often a running window reports its items to the observer
MIN_WARMUP_STEPS = 3  # a warm-up runs at least this many steps, whatever its seconds
RESOLUTION_WARN_FRACTION = 0.01  # warn when a window's energy resolution exceeds this share of its energy
CPU_ENERGY_REASON = "device cpu: GPU energy counters do not see CPU work, and RAPL is not read"


def resolve_device(name: str) -> torch.device:
    """`cuda` (the current CUDA device, as Ray's CUDA_VISIBLE_DEVICES leaves it) or `cpu`."""
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device cuda requested, but torch sees no CUDA GPU on this machine"
                             f" (torch {torch.__version__}); use device cpu")
        return torch.device("cuda", torch.cuda.current_device())
    raise ValueError(f"unknown device {name!r} (cuda, cpu)")


def open_task_devices(spec: TaskSpec, device: torch.device, node: str, fake_count: int = 1) -> DeviceSet:
    """The device set that meters `spec` on `device`: `fake_count` fake GPUs, NVML, or none with the reason."""
    if spec.meter == "fake":
        return open_devices("fake", count=fake_count, node=node)
    if spec.meter == "none":
        return NoDevices("energy metering switched off (meter: none)")
    if device.type == "cpu":
        return NoDevices(CPU_ENERGY_REASON)
    return open_devices("nvml" if spec.meter == "nvml" else "auto")


def select_gpus(devices: DeviceSet, device: torch.device, gpu_indices: Sequence[int] | None) -> list[Gpu]:
    """The task's GPUs: by CUDA UUID on a real GPU, else the given indices of the device set."""
    if not devices.gpus:
        return []
    if device.type == "cuda" and devices.kind == "nvml":
        return [devices.by_uuid(cuda_uuid(device))]
    indices = list(gpu_indices) if gpu_indices is not None else [devices.gpus[0].info.index]
    by_index = {g.info.index: g for g in devices.gpus}
    missing = [i for i in indices if i not in by_index]
    if missing:
        raise ValueError(f"GPU indices {missing} not on this node ({devices.kind}: {sorted(by_index)})")
    return [by_index[i] for i in indices]


def gpu_records(gpus: Sequence[Gpu], device: torch.device, node: str) -> tuple[GpuRecord, ...]:
    """What a result says of the GPUs it ran on: the metered ones, else (no meter) the CUDA device itself."""
    records = tuple(GpuRecord(node=node, index=g.info.index, uuid=g.info.uuid, name=g.info.name, serial=g.info.serial)
                    for g in gpus)
    if device.type == "cuda" and not records:
        records = (GpuRecord(node=node, index=device.index or 0, uuid=cuda_uuid(device),
                             name=torch.cuda.get_device_name(device)),)
    return records


def versions(devices: DeviceSet) -> dict[str, str]:
    out = {"torch": torch.__version__, "python": platform.python_version()}
    try:
        out["moecluster"] = metadata.version("moecluster")
    except metadata.PackageNotFoundError:  # pragma: no cover - always installed
        pass
    if torch.version.cuda:
        out["cuda"] = torch.version.cuda
    driver = devices.driver_version()
    if driver:
        out["driver"] = driver
    return out


def set_fake_load(gpus: Sequence[Gpu], load: float) -> None:
    """Tell fake GPUs how busy they are (their power model); real ones ignore it."""
    for g in gpus:
        if isinstance(g, FakeGpu):
            g.set_load(load)


@dataclass(frozen=True)
class RankFacts:
    """What a rank (the only one, on one GPU) knows of itself before any model exists (picklable):
    node, GPUs, idle, peaks per dtype name, versions."""

    rank: int
    node: str
    gpus: tuple[GpuRecord, ...]
    idle: IdleReading | None
    peaks: Mapping[str, Peaks]
    versions: Mapping[str, str]


def read_facts(rank: int, specs: Sequence[TaskSpec], devices: DeviceSet, gpus: Sequence[Gpu], meter: EnergyMeter,
               device: torch.device, node: str, peaks: PeakCache, idle_cache: IdleCache) -> RankFacts:
    """Read the idle power, the counter's update period and the peaks (nothing may run on the GPUs meanwhile)."""
    records = gpu_records(gpus, device, node)
    set_fake_load(gpus, 0.0)
    idle = idle_for_run(meter, idle_scope(specs[0].run_id, specs[0].replicate), idle_cache)
    meter.update_period_s()  # now, while the device is quiet anyway, not between warm-up and window
    measured: dict[str, Peaks] = {}
    for name in dict.fromkeys(s.dtype for s in specs):
        try:
            dtype = torch_dtype(name)
        except ValueError:
            continue  # the task itself reports its unknown dtype
        measured[name] = peaks.get(device, dtype)
    return RankFacts(rank=rank, node=node, gpus=records, idle=idle, peaks=measured, versions=versions(devices))


def window_drift(windows: Sequence[Window]) -> dict[str, float]:
    """How a task's figures moved between its first and last windows: last / first - 1.

    `inferences_per_s` always (with two windows or more), `inferences_per_j` where both windows
    have energy. Empty with one window. Counterbalanced order cancels a linear drift between the
    tasks of a pair; this shows how large it was.
    """
    if len(windows) < 2:
        return {}
    first, last = windows[0], windows[-1]
    out: dict[str, float] = {}
    if first.duration_s > 0 and last.duration_s > 0 and first.inferences > 0:
        out["inferences_per_s"] = (last.inferences / last.duration_s) / (first.inferences / first.duration_s) - 1
    if first.energy_j and last.energy_j and first.inferences > 0:
        out["inferences_per_j"] = (last.inferences / last.energy_j) / (first.inferences / first.energy_j) - 1
    return out


def resolution_warning(energy_j: float | None, resolution_j: float | None, update_period_s: float | None,
                       tolerance: float = RESOLUTION_WARN_FRACTION) -> str | None:
    """A warning when a window's energy resolution exceeds `tolerance` of its energy, else None."""
    if energy_j is None or resolution_j is None or energy_j <= 0 or resolution_j <= tolerance * energy_j:
        return None
    text = (f"energy resolution ±{resolution_j:.3g} J is {100 * resolution_j / energy_j:.2g} % of the window's "
            f"{energy_j:.4g} J (above {100 * tolerance:g} %): use longer windows")
    if update_period_s:
        text += (f"; the counter updated every {1e3 * update_period_s:.0f} ms, so an unaligned window needs "
                 f"{min_window_s(update_period_s, tolerance):.3g} s")
    return text


def record_warnings(idle: IdleReading | None, per_window: Sequence[Sequence[str | None]],
                    first: Sequence[str] = (), last: Sequence[str] = ()) -> tuple[str, ...]:
    """A record's warnings, once each: `first`, an idle power that did not settle, each window's texts
    (named "window i/n: " where there are several; None skipped), then `last`."""
    out = list(first)
    if idle is not None and idle.power_w is not None and not idle.settled:
        out.append(f"idle power {idle.note}")
    for i, texts in enumerate(per_window):
        name = f"window {i + 1}/{len(per_window)}: " if len(per_window) > 1 else ""
        out += [name + text for text in texts if text]
    return tuple(dict.fromkeys([*out, *last]))


def failed_result(spec: TaskSpec, error: str, *, node: str, started_at: float, finished_at: float,
                  facts: Sequence[RankFacts] = (), world_size: int = 1) -> TaskResult:
    """A task that could not be measured; the GPUs it held where the set-up got that far (`facts`, rank order)."""
    return TaskResult(spec=spec, status="failed", error=error, node=facts[0].node if facts else node,
                      gpus=tuple(g for f in facts for g in f.gpus), started_at=started_at, finished_at=finished_at,
                      world_size=world_size)
