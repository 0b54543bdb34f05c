"""Run one task on this node: build the workload, warm up, measure fixed windows, report.

Knows nothing of Ray: the scheduler (or `moecluster bench`) hands it a `TaskSpec` and the
node's devices, and gets a `TaskResult` back. Its devices, set-up facts and records come from
`session`, as a gang's ranks' do (`parallel.gang`): one GPU is a gang of one whose windows are
timed and aligned to counter updates, where a gang's are agreed step counts. A failing task is returned as
`status="failed"` with its error, never raised, so a sweep goes on.

In order: the settled idle power of the task's GPUs (once per GPU per run, `meters.idle`: read
first, while the GPU is quiet and no model exists), the device's peaks (once per process, also
before the model exists, so nothing else holds memory or heats the GPU), the model, one warm-up,
then the windows. Each window opens and closes on an energy-counter update
(`EnergyMeter.measure` with `keep_busy`): after its counted batches, more of them run uncounted
until the counter updates, so the energy covers one load with no idle tail. A window whose
energy resolution exceeds 1 % of its energy, an edge that could not be aligned, or an idle that
did not settle adds a warning to the result.
"""
from __future__ import annotations

import math
import socket
import time
import traceback
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from moecluster.devices import DeviceSet, Gpu
from moecluster.measure.meters.energy import EnergyMeter, EnergyReading, Until
from moecluster.measure.meters.idle import IdleCache, IdleReading
from moecluster.measure.meters.peaks import PeakCache
from moecluster.measure.meters.roofline import roofline
from moecluster.spec.records import TaskResult, TaskSpec, Window
from moecluster.measure.session import (
    CPU_ENERGY_REASON, MIN_WARMUP_STEPS, PROGRESS_EVERY_S, failed_result, gpu_records, open_task_devices, read_facts,
    record_warnings, resolution_warning, resolve_device, select_gpus, set_fake_load, versions, window_drift
)
from moecluster.workloads.workload import Prepared, get_workload, torch_dtype

if TYPE_CHECKING:
    from moecluster.measure.observer import TaskObserver

# the shared helpers this module used to define, still reached through it (`workloads.serve.run`, tests)
__all__ = ["CPU_ENERGY_REASON", "MIN_WARMUP_STEPS", "PROGRESS_EVERY_S", "QUEUE_AHEAD_S", "gpu_records",
           "open_task_devices", "resolution_warning", "resolve_device", "run_task", "select_gpus", "set_fake_load",
           "versions", "window_drift"]

QUEUE_AHEAD_S = 0.05  # seconds of work queued ahead of the device while batches are launched
MAX_QUEUED = 1000  # and never more batches than this


def _sync(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def _queue_cap(done: int, elapsed_s: float, ahead_s: float) -> int:
    """How many batches may be queued: about `ahead_s` of work at the pace seen so far (2 until one finished)."""
    if done <= 0 or elapsed_s <= 0:
        return 2
    return max(2, min(MAX_QUEUED, math.ceil(ahead_s * done / elapsed_s)))


def _launch(prepared: Prepared, stop: Callable[[int], bool], sync: Callable[[], None],
            mark: Callable[[], Callable[[], bool]], on_progress: Callable[[int], None] | None = None,
            clock: Callable[[], float] = time.perf_counter, ahead_s: float = QUEUE_AHEAD_S) -> int:
    """Launch batches (no host sync per batch) until `stop(steps)`, then drain; returns the steps launched.

    About `ahead_s` of work is queued at a time (the host waits for older batches, polling `stop`
    meanwhile): enough to hide launch gaps, and a stop is seen promptly. An unbounded queue holds up
    to a thousand launches, so a window of one-second batches would drain for a quarter of an hour
    after its deadline (and a small batch's window would run seconds past its nominal length).
    """
    in_flight: deque[Callable[[], bool]] = deque()
    steps = done = 0
    start = last_report = clock()
    stopped = stop(0)
    while not stopped:
        while in_flight and in_flight[0]():
            in_flight.popleft()
            done += 1
        while len(in_flight) >= _queue_cap(done, clock() - start, ahead_s):
            if in_flight[0]():
                in_flight.popleft()
                done += 1
            elif stop(steps):
                stopped = True
                break
        if stopped:
            break
        prepared.step()
        steps += 1
        in_flight.append(mark())
        now = clock()
        if on_progress is not None and now - last_report >= PROGRESS_EVERY_S:
            on_progress(steps)
            last_report = now
        stopped = stop(steps)
    sync()
    return steps


def _run_for(prepared: Prepared, seconds: float, sync: Callable[[], None], mark: Callable[[], Callable[[], bool]],
             min_steps: int = 1, on_progress: Callable[[int], None] | None = None,
             clock: Callable[[], float] = time.perf_counter) -> int:
    """Launch batches for `seconds` (at least `min_steps`), then drain."""
    deadline = clock() + seconds
    return _launch(prepared, lambda steps: steps >= min_steps and clock() >= deadline, sync, mark,
                   on_progress, clock)


def _marker(device: torch.device) -> Callable[[], Callable[[], bool]]:
    """`mark()` records the device's queue position and returns a query: has the device got past it?"""
    if device.type != "cuda":
        return lambda: (lambda: True)  # a CPU step has finished when it returns

    def mark() -> Callable[[], bool]:
        event = torch.cuda.Event()
        event.record()
        return event.query
    return mark


def _run_until(prepared: Prepared, until: Until, sync: Callable[[], None],
               mark: Callable[[], Callable[[], bool]], clock: Callable[[], float] = time.perf_counter) -> int:
    """Keep the device busy with more of the same work (uncounted; `prepared.busy_step` where the
    workload has a finer unit than a batch) until `until()`; then drain (a short drain)."""
    busy = prepared if prepared.busy_step is None else replace(prepared, step=prepared.busy_step)
    return _launch(busy, lambda _steps: until(), sync, mark, clock=clock)


def _progress(observer: "TaskObserver | None", done: int, items_per_batch: int) -> Callable[[int], None] | None:
    """Reports a window's progress as the task's inferences so far (`done` before this window)."""
    if observer is None:
        return None

    def report(steps: int) -> None:
        observer.progress(done + steps * items_per_batch)
    return report


def _measure_window(meter: EnergyMeter, prepared: Prepared, duration_s: float, device: torch.device,
                    progress: Callable[[int], None] | None) -> tuple[int, EnergyReading, float]:
    """One window: its counted steps, its energy reading and its wall-clock start.

    The window opens on a counter update; the counted batches run for `duration_s` and drain;
    uncounted batches then keep the device under the same load until the closing update.
    """
    marks: list[float] = []
    sync, mark = _sync(device), _marker(device)

    def work() -> int:
        marks.append(time.time())
        return _run_for(prepared, duration_s, sync, mark, 1, progress)

    def keep_busy(until: Until) -> int:
        return _run_until(prepared, until, sync, mark)

    steps, reading = meter.measure(work, keep_busy=keep_busy)
    return steps, reading, marks[0]


def _window(reading: EnergyReading, inferences: int, started_at: float, position: int) -> Window:
    return Window(inferences=inferences, duration_s=reading.duration_s, energy_j=reading.energy_j,
                  sampled_energy_j=reading.sampled_energy_j, avg_power_w=reading.avg_power_w,
                  max_power_w=reading.max_power_w, started_at=started_at,
                  energy_resolution_j=reading.energy_resolution_j, aligned=reading.aligned, position=position)


def _warnings(readings: Sequence[EnergyReading], idle: IdleReading | None, gpus: Sequence[Gpu] = ()) -> tuple[str, ...]:
    per_window = [(r.note, resolution_warning(r.energy_j, r.energy_resolution_j, r.update_period_s)) for r in readings]
    return record_warnings(idle, per_window, last=[f"GPU {g.info.index}: {g.power_note}" for g in gpus if g.power_note])


def run_task(spec: TaskSpec, *, devices: DeviceSet | None = None, gpu_indices: Sequence[int] | None = None,
             node: str | None = None, observer: "TaskObserver | None" = None,
             peaks: PeakCache | None = None, log: Callable[[str], None] | None = None,
             idle_cache: IdleCache | None = None) -> TaskResult:
    """Measure `spec` on this node. Never raises for a failing task.

    `peaks` and `idle_cache` carry measurements between tasks (the device's peaks per process;
    the settled idle power per GPU per run, see `meters.idle`); fresh ones are made if absent.
    """
    if spec.workload == "serve":  # a server and a load generator, not a model of this process
        from moecluster.measure.serve import run_serve_task

        return run_serve_task(spec, devices=devices, gpu_indices=gpu_indices, node=node, observer=observer, log=log,
                              idle_cache=idle_cache)
    node = node or socket.gethostname()
    started = time.time()
    own = devices is None
    gpus: list[Gpu] = []
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
        facts = read_facts(0, [spec], devices, gpus, meter, device, node, peaks or PeakCache(),
                           idle_cache if idle_cache is not None else IdleCache())
        idle, pk = facts.idle, facts.peaks[spec.dtype]
        say(f"{spec.task_id}: building {spec.label()} {spec.dtype} batch {spec.batch_size} on {device}")
        prepared = workload.prepare(spec, device, dtype)
        sync = _sync(device)
        sync()
        if observer is not None:
            observer.started(spec, [g.info for g in gpus])
        with torch.inference_mode():
            set_fake_load(gpus, 1.0)
            _run_for(prepared, spec.warmup_s, sync, _marker(device), min_steps=MIN_WARMUP_STEPS)
            windows: list[Window] = []
            readings: list[EnergyReading] = []
            done = 0
            for r in range(spec.repeats):
                steps, reading, window_start = _measure_window(meter, prepared, spec.duration_s, device,
                                                               _progress(observer, done, prepared.items_per_batch))
                set_fake_load(gpus, 1.0 if r + 1 < spec.repeats else 0.0)
                n = steps * prepared.items_per_batch
                done += n
                windows.append(_window(reading, n, window_start, r))
                readings.append(reading)
                if observer is not None:
                    observer.progress(done)
                say(f"{spec.task_id}: window {r + 1}/{spec.repeats}: {n / reading.duration_s:,.0f} inferences/s")
        result = TaskResult(
            spec=spec, node=node, started_at=started, status="ok", gpus=facts.gpus, params=prepared.params,
            windows=tuple(windows),
            energy_source=reading.source, energy_unavailable_reason=reading.unavailable_reason,
            idle_power_w=idle.power_w if idle else None,
            idle_settle_s=idle.settle_s if idle else None, idle_note=idle.note if idle else None,
            roofline=roofline(prepared.flops_per_item, prepared.bytes_per_batch, prepared.items_per_batch,
                              windows, pk),
            expert_tokens=prepared.expert_tokens, versions={**facts.versions, **_notes(prepared)},
            form=dict(prepared.form), choice=prepared.choice,
            drift=window_drift(windows), warnings=_warnings(readings, idle, gpus), finished_at=time.time())
    except Exception as exc:  # noqa: BLE001 - a task failure is data, not a crash
        set_fake_load(gpus, 0.0)
        say(traceback.format_exc())
        result = failed_result(spec, f"{type(exc).__name__}: {exc}", node=node, started_at=started,
                               finished_at=time.time())
    finally:
        if own and devices is not None:
            devices.close()
    if observer is not None:
        observer.finished(result)
    return result


def _notes(prepared: Prepared) -> dict[str, str]:
    return {f"note{i}": n for i, n in enumerate(prepared.notes)}
