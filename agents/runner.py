"""Run one task on this node: build the workload, warm up, measure fixed windows, report.

Knows nothing of Ray: the scheduler (or `moecluster bench`) hands it a `TaskSpec` and the
node's devices, and gets a `TaskResult` back. A failing task is returned as
`status="failed"` with its error, never raised, so a sweep goes on.
"""
from __future__ import annotations

import platform
import socket
import time
import traceback
from importlib import metadata
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from .devices import DeviceSet, FakeGpu, Gpu, NoDevices, open_devices
from .meters.energy import EnergyMeter
from .meters.peaks import PeakCache
from .records import GpuRecord, Roofline, TaskResult, TaskSpec, Window
from .workloads.base import Prepared, get_workload, torch_dtype

if TYPE_CHECKING:
    from .observer import TaskObserver

PROGRESS_EVERY_S = 0.5
MIN_WARMUP_STEPS = 3
IDLE_WINDOW_S = 1.0
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


def _cuda_uuid(device: torch.device) -> str:
    uuid = str(torch.cuda.get_device_properties(device).uuid)
    return uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"


def open_task_devices(spec: TaskSpec, device: torch.device, node: str) -> DeviceSet:
    if spec.meter == "fake":
        return open_devices("fake", count=1, node=node)
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
        return [devices.by_uuid(_cuda_uuid(device))]
    indices = list(gpu_indices) if gpu_indices is not None else [devices.gpus[0].info.index]
    by_index = {g.info.index: g for g in devices.gpus}
    missing = [i for i in indices if i not in by_index]
    if missing:
        raise ValueError(f"GPU indices {missing} not on this node ({devices.kind}: {sorted(by_index)})")
    return [by_index[i] for i in indices]


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


def _set_fake_load(gpus: Sequence[Gpu], load: float) -> None:
    for g in gpus:
        if isinstance(g, FakeGpu):
            g.set_load(load)


def _sync(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def _run_for(prepared: Prepared, seconds: float, sync: Callable[[], None], min_steps: int = 1,
             on_progress: Callable[[int], None] | None = None) -> int:
    """Launch batches until `seconds` have passed (no host sync per batch), then drain."""
    clock = time.perf_counter
    deadline = clock() + seconds
    last_report = clock()
    steps = 0
    while True:
        prepared.step()
        steps += 1
        now = clock()
        if now >= deadline and steps >= min_steps:
            break
        if on_progress is not None and now - last_report >= PROGRESS_EVERY_S:
            on_progress(steps)
            last_report = now
    sync()
    return steps


def roofline(prepared: Prepared, windows: Sequence[Window], flops_per_s: float, bytes_per_s: float,
             source: str) -> Roofline:
    items = sum(w.inferences for w in windows)
    seconds = sum(w.duration_s for w in windows)
    t_compute = items * prepared.flops_per_item / flops_per_s
    t_memory = items / prepared.items_per_batch * prepared.bytes_per_batch / bytes_per_s
    t = max(t_compute, t_memory)
    return Roofline(flops_per_item=prepared.flops_per_item, bytes_per_batch=prepared.bytes_per_batch,
                    peak_flops=flops_per_s, peak_bytes_per_s=bytes_per_s, peak_source=source, time_s=t,
                    fraction=t / seconds if seconds > 0 else 0.0,
                    bound="compute" if t_compute >= t_memory else "memory")


def run_task(spec: TaskSpec, *, devices: DeviceSet | None = None, gpu_indices: Sequence[int] | None = None,
             node: str | None = None, observer: "TaskObserver | None" = None,
             peaks: PeakCache | None = None, log: Callable[[str], None] | None = None) -> TaskResult:
    """Measure `spec` on this node. Never raises for a failing task."""
    node = node or socket.gethostname()
    started = time.time()
    own = devices is None
    gpus: list[Gpu] = []
    base = dict(spec=spec, node=node, started_at=started)
    say = log or (lambda _msg: None)
    result: TaskResult
    try:
        workload = get_workload(spec.workload)
        workload.validate(spec)
        dtype = torch_dtype(spec.dtype)
        device = resolve_device(spec.device)
        if spec.repeats < 1 or spec.duration_s <= 0 or spec.warmup_s < 0:
            raise ValueError("repeats must be >= 1, duration_s > 0 and warmup_s >= 0")
        if devices is None:
            devices = open_task_devices(spec, device, node)
        gpus = select_gpus(devices, device, gpu_indices)
        meter = EnergyMeter(devices, gpus, sample_interval_s=0.1 if spec.sample_power else None)
        gpu_records = tuple(GpuRecord(node=node, index=g.info.index, uuid=g.info.uuid, name=g.info.name)
                            for g in gpus)
        if device.type == "cuda" and not gpu_records:
            name = torch.cuda.get_device_name(device)
            gpu_records = (GpuRecord(node=node, index=device.index or 0, uuid=_cuda_uuid(device), name=name),)
        say(f"{spec.task_id}: building {spec.label()} {spec.dtype} batch {spec.batch_size} on {device}")
        prepared = workload.prepare(spec, device, dtype)
        sync = _sync(device)
        sync()
        if observer is not None:
            observer.started(spec, [g.info for g in gpus])
        idle_w = meter.idle_power_w(IDLE_WINDOW_S)
        with torch.inference_mode():
            _set_fake_load(gpus, 1.0)
            _run_for(prepared, spec.warmup_s, sync, min_steps=MIN_WARMUP_STEPS)
            windows: list[Window] = []
            done = 0
            for r in range(spec.repeats):
                progress = None
                if observer is not None:
                    progress = (lambda steps, done=done: observer.progress(done + steps * prepared.items_per_batch))
                window_start = time.time()
                steps, reading = meter.measure(lambda: _run_for(prepared, spec.duration_s, sync, 1, progress))
                _set_fake_load(gpus, 1.0 if r + 1 < spec.repeats else 0.0)
                n = int(steps) * prepared.items_per_batch  # type: ignore[call-overload]
                done += n
                windows.append(Window(inferences=n, duration_s=reading.duration_s, energy_j=reading.energy_j,
                                      sampled_energy_j=reading.sampled_energy_j, avg_power_w=reading.avg_power_w,
                                      max_power_w=reading.max_power_w, started_at=window_start))
                if observer is not None:
                    observer.progress(done)
                say(f"{spec.task_id}: window {r + 1}/{spec.repeats}: {n / reading.duration_s:,.0f} inferences/s")
        pk = (peaks or PeakCache()).get(device, dtype)
        result = TaskResult(
            **base, status="ok", gpus=gpu_records, params=prepared.params, windows=tuple(windows),
            energy_source=reading.source, energy_unavailable_reason=reading.unavailable_reason,
            idle_power_w=idle_w, roofline=roofline(prepared, windows, pk.flops_per_s, pk.bytes_per_s, pk.source),
            expert_tokens=prepared.expert_tokens, versions={**versions(devices), **_notes(prepared)},
            finished_at=time.time())
    except Exception as exc:  # noqa: BLE001 - a task failure is data, not a crash
        _set_fake_load(gpus, 0.0)
        say(traceback.format_exc())
        result = TaskResult(**base, status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=time.time())
    finally:
        if own and devices is not None:
            devices.close()
    if observer is not None:
        observer.finished(result)
    return result


def _notes(prepared: Prepared) -> dict[str, str]:
    return {f"note{i}": n for i, n in enumerate(prepared.notes)}
