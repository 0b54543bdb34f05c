"""Run the tasks of one pair on the GPU(s) they were given, in counterbalanced order: A B B A.

Why inside one Ray task rather than as alternating Ray submissions: both models of a pair
then run on the very same GPU (not only the same model of GPU), with no scheduling gap
between A and B in which the GPU could cool or another task could warm it; the order needs
no head-side coordination; and a lost node retries the pair as one unit, so a pair is never
half measured on one GPU and half on another.

Order: rounds go forward and back (`round_order`): A B B A for two tasks, A B C C B A A B C
for three; a linear drift over the pair (the GPU warming, the clock boosting less) then
falls equally on every task over each two rounds, where A B A B always hands the later slot
to the same task. `spec.reverse_order` (the head alternates it between pairs) starts the
pair from its last task, so which task opens a pair also cancels across a sweep. Each window
records its `position` in the pair's sequence, and each task its `drift` between its first
and last windows.

Every repeat is a fresh `run_task(repeats=1)`: the previous window ran the other model, so
each window needs its own warm-up to reach the steady state of its own model. The repeats
of a task are then merged into one `TaskResult` (all windows, one roofline over them).
Idle power is read once per GPU per run (`meters.idle`), so every repeat shares it.
Node side, no Ray: the scheduler's pair task and `moecluster bench` both call it.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

from moecluster.devices import DeviceSet, GpuInfo
from moecluster.measure.meters.idle import IdleCache
from moecluster.measure.meters.peaks import PeakCache, Peaks
from moecluster.measure.meters.roofline import roofline
from moecluster.measure.observer import NullObserver, TaskObserver
from moecluster.spec.records import Roofline, ServeStats, TaskResult, TaskSpec
from moecluster.measure.runner import run_task
from moecluster.measure.session import window_drift


class _Offset:
    """Forwards to `inner`, adding the inferences of earlier repeats, so each task's count
    stays monotonic across its alternating repeats."""

    def __init__(self, inner: TaskObserver, offset: int) -> None:
        self._inner, self._offset = inner, offset

    def started(self, spec: TaskSpec, gpus: Sequence[GpuInfo]) -> None:
        self._inner.started(spec, gpus)

    def progress(self, inferences_total: int) -> None:
        self._inner.progress(self._offset + inferences_total)

    def finished(self, result: TaskResult) -> None:
        self._inner.finished(result)


def round_order(count: int, round_index: int, reverse: bool = False) -> list[int]:
    """Indices of `count` tasks in round `round_index`: forward on even rounds, backward on odd ones.

    `reverse` swaps the two, so the pair starts from its last task. Two tasks: A B, B A, A B, ...
    """
    forward = (round_index % 2 == 0) != reverse
    order = list(range(count))
    return order if forward else order[::-1]


def run_pair(specs: Sequence[TaskSpec], *, devices: DeviceSet | None = None,
             gpu_indices: Sequence[int] | None = None, node: str | None = None,
             observer: TaskObserver | None = None, peaks: PeakCache | None = None,
             on_window: Callable[[TaskSpec, int], None] | None = None,
             idle_cache: IdleCache | None = None) -> list[TaskResult]:
    """Measure every spec `spec.repeats` windows, in counterbalanced rounds (A B B A ...), on these GPUs.

    The pair starts from its last task when any spec has `reverse_order`. `on_window(spec, r)`
    is called before a spec's repeat `r` (0-based). A task that fails stops (its later repeats
    are skipped); the others go on. Returns one merged result per spec, in the order given.
    """
    peaks = peaks or PeakCache()
    idle_cache = idle_cache if idle_cache is not None else IdleCache()
    observer = observer or NullObserver()
    reverse = any(s.reverse_order for s in specs)
    runs: dict[str, list[TaskResult]] = {s.task_id: [] for s in specs}
    rounds = max(s.repeats for s in specs)
    position = 0
    for r in range(rounds):
        for spec in (specs[i] for i in round_order(len(specs), r, reverse)):
            done = runs[spec.task_id]
            if r >= spec.repeats or (done and done[-1].status != "ok"):
                continue
            if on_window is not None:
                on_window(spec, r)
            offset = sum(w.inferences for res in done for w in res.windows)
            res = run_task(replace(spec, repeats=1), devices=devices, gpu_indices=gpu_indices, node=node,
                           observer=_Offset(observer, offset), peaks=peaks, idle_cache=idle_cache)
            windows = tuple(replace(w, position=position + i) for i, w in enumerate(res.windows))
            position += len(windows)
            done.append(replace(res, windows=windows))
    return [merge_repeats(spec, runs[spec.task_id]) for spec in specs]


def _merge_form(runs: Sequence[TaskResult]) -> dict[str, str]:
    """Each key's value where every repeat agrees, else the repeats' values joined by ' | '."""
    keys = list(dict.fromkeys(k for res in runs for k in res.form))
    out = {}
    for k in keys:
        values = [res.form.get(k, "") for res in runs]
        out[k] = values[0] if len(set(values)) == 1 else " | ".join(values)
    return out


def _merge_warnings(runs: Sequence[TaskResult], repeats: int) -> tuple[str, ...]:
    """Warnings every repeat gave, once; the others named by their repeat."""
    common = set.intersection(*(set(res.warnings) for res in runs)) if len(runs) > 1 else set()
    out: list[str] = []
    for i, res in enumerate(runs):
        for w in res.warnings:
            out.append(w if w in common or repeats == 1 else f"repeat {i + 1}/{repeats}: {w}")
    return tuple(dict.fromkeys(out))


def _peaks_of(rl: Roofline) -> Peaks:
    return Peaks(flops_per_s=rl.peak_flops, bytes_per_s=rl.peak_bytes_per_s, source=rl.peak_source)


def merge_repeats(spec: TaskSpec, runs: Sequence[TaskResult]) -> TaskResult:
    """One result for `spec` from its one-window runs; the first failure wins, naming its repeat.

    Windows in the order they ran; idle power the mean of the repeats' (one value when, as usual,
    the run's idle was cached), its settle time and note the first repeat's (all notes where the
    values differ); `form` per key (values joined where repeats chose differently); `drift`
    between the first and last windows; warnings once where every repeat gave them, else named
    by repeat; one roofline over all windows.
    """
    if not runs:
        raise ValueError(f"no run of task {spec.task_id}")
    for i, res in enumerate(runs):
        if res.status != "ok":
            error = f"repeat {i + 1}/{spec.repeats}: {res.error}" if spec.repeats > 1 else res.error
            return replace(res, spec=spec, error=error, started_at=runs[0].started_at)
    first = runs[0]
    windows = tuple(w for res in runs for w in res.windows)
    idle = [res.idle_power_w for res in runs if res.idle_power_w is not None]
    notes = list(dict.fromkeys(res.idle_note for res in runs if res.idle_note))
    idle_note = notes[0] if len(set(idle)) <= 1 and notes else ("; ".join(notes) or None)
    sources = list(dict.fromkeys(res.energy_source for res in runs))
    source = sources[0] if len(sources) == 1 else None
    reason = next((res.energy_unavailable_reason for res in runs if res.energy_unavailable_reason), None)
    if len(sources) > 1:
        reason = f"energy sources differ between repeats: {sources}"
        windows = tuple(replace(w, energy_j=None) for w in windows)
    rl = first.roofline
    if rl is not None:
        rl = roofline(rl.flops_per_item, rl.bytes_per_batch, rl.items_per_batch or spec.batch_size, windows,
                      _peaks_of(rl))
    return replace(
        first, spec=spec, windows=windows, energy_source=source, energy_unavailable_reason=reason,
        idle_power_w=sum(idle) / len(idle) if idle else None,
        idle_settle_s=next((res.idle_settle_s for res in runs if res.idle_settle_s is not None), None),
        idle_note=idle_note, form=_merge_form(runs), drift=window_drift(windows),
        warnings=_merge_warnings(runs, spec.repeats), roofline=rl, serve=_merge_serve(runs),
        finished_at=runs[-1].finished_at)


def _merge_serve(runs: Sequence[TaskResult]) -> ServeStats | None:
    """A served model's stats over its repeats: every window in order, the first repeat's server and log
    (each repeat started its own server; the logs sit side by side)."""
    stats = [res.serve for res in runs if res.serve is not None]
    if not stats:
        return None
    logs = list(dict.fromkeys(s.log for s in stats if s.log))
    sources = list(dict.fromkeys(s.token_counts for s in stats))
    return replace(stats[0], windows=tuple(w for s in stats for w in s.windows), log="; ".join(logs),
                   token_counts="; ".join(sources))
