"""Run the tasks of one pair on the GPU(s) they were given, alternately: A B A B.

Why inside one Ray task rather than as alternating Ray submissions: both models of a pair
then run on the very same GPU (not only the same model of GPU), with no scheduling gap
between A and B in which the GPU could cool or another task could warm it; the order needs
no head-side coordination; and a lost node retries the pair as one unit, so a pair is never
half measured on one GPU and half on another.

Every repeat is a fresh `run_task(repeats=1)`: the previous window ran the other model, so
each window needs its own warm-up to reach the steady state of its own model. The repeats
of a task are then merged into one `TaskResult` (all windows, one roofline over them).
Node side, no Ray: the scheduler's pair task and `moecluster bench` both call it.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

from .devices import DeviceSet
from .meters.peaks import PeakCache
from .observer import NullObserver, TaskObserver
from .records import Roofline, TaskResult, TaskSpec, Window
from .runner import run_task


class _Offset:
    """Forwards to `inner`, adding the inferences of earlier repeats, so each task's count
    stays monotonic across its alternating repeats."""

    def __init__(self, inner: TaskObserver, offset: int) -> None:
        self._inner, self._offset = inner, offset

    def started(self, spec, gpus) -> None:  # type: ignore[no-untyped-def]
        self._inner.started(spec, gpus)

    def progress(self, inferences_total: int) -> None:
        self._inner.progress(self._offset + inferences_total)

    def finished(self, result: TaskResult) -> None:
        self._inner.finished(result)


def run_pair(specs: Sequence[TaskSpec], *, devices: DeviceSet | None = None,
             gpu_indices: Sequence[int] | None = None, node: str | None = None,
             observer: TaskObserver | None = None, peaks: PeakCache | None = None,
             on_window: Callable[[TaskSpec, int], None] | None = None) -> list[TaskResult]:
    """Measure every spec `spec.repeats` windows, round-robin (A B A B ...), on these GPUs.

    A task that fails stops (its later repeats are skipped); the others go on.
    Returns one merged result per spec, in the order given.
    """
    peaks = peaks or PeakCache()
    observer = observer or NullObserver()
    runs: dict[str, list[TaskResult]] = {s.task_id: [] for s in specs}
    rounds = max(s.repeats for s in specs)
    for r in range(rounds):
        for spec in specs:
            done = runs[spec.task_id]
            if r >= spec.repeats or (done and done[-1].status != "ok"):
                continue
            if on_window is not None:
                on_window(spec, r)
            offset = sum(w.inferences for res in done for w in res.windows)
            done.append(run_task(replace(spec, repeats=1), devices=devices, gpu_indices=gpu_indices, node=node,
                                 observer=_Offset(observer, offset), peaks=peaks))
    return [merge_repeats(spec, runs[spec.task_id]) for spec in specs]


def _roofline(first: Roofline, windows: Sequence[Window], items_per_batch: int) -> Roofline:
    items = sum(w.inferences for w in windows)
    seconds = sum(w.duration_s for w in windows)
    t_compute = items * first.flops_per_item / first.peak_flops
    t_memory = items / items_per_batch * first.bytes_per_batch / first.peak_bytes_per_s
    t = max(t_compute, t_memory)
    return replace(first, time_s=t, fraction=t / seconds if seconds > 0 else 0.0,
                   bound="compute" if t_compute >= t_memory else "memory")


def merge_repeats(spec: TaskSpec, runs: Sequence[TaskResult]) -> TaskResult:
    """One result for `spec` from its one-window runs; the first failure wins, naming its repeat."""
    if not runs:
        raise ValueError(f"no run of task {spec.task_id}")
    for i, res in enumerate(runs):
        if res.status != "ok":
            error = f"repeat {i + 1}/{spec.repeats}: {res.error}" if spec.repeats > 1 else res.error
            return replace(res, spec=spec, error=error, started_at=runs[0].started_at)
    first = runs[0]
    windows = tuple(w for res in runs for w in res.windows)
    idle = [res.idle_power_w for res in runs if res.idle_power_w is not None]
    sources = list(dict.fromkeys(res.energy_source for res in runs))
    source = sources[0] if len(sources) == 1 else None
    reason = next((res.energy_unavailable_reason for res in runs if res.energy_unavailable_reason), None)
    if len(sources) > 1:
        reason = f"energy sources differ between repeats: {sources}"
        windows = tuple(replace(w, energy_j=None) for w in windows)
    return replace(
        first, spec=spec, windows=windows, energy_source=source, energy_unavailable_reason=reason,
        idle_power_w=sum(idle) / len(idle) if idle else None,
        roofline=_roofline(first.roofline, windows, spec.batch_size) if first.roofline else None,
        finished_at=runs[-1].finished_at)
