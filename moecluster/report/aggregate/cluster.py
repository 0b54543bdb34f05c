"""Cluster-wide energy: every GPU of the cluster over the run, against the useful work done.

The tasks' own counters only see their GPUs during their measurement windows. The cluster
view charges everything the cluster's GPUs drew from the run's first task start to its last
task end: warm-ups, model builds, GPUs that waited, GPUs that ran nothing. Its inferences/J
is what a cluster operator pays per inference.

The check: over the tasks' windows, on the GPUs that ran them, Prometheus' counters and the
tasks' own readings measure the same thing and must agree within `TOLERANCE` (2 %). Windows
are placed by their own start time when the record carries one (`Window.started_at`, Unix
seconds). A record without it is placed only where its layout is certain: a single window,
which the runner ends just before the task finishes (the roofline peaks it measures after the
window are cached on a warm worker), on GPUs no other task used meanwhile. Tasks whose windows
cannot be placed (repeats merged from separate runs, interleaved A B B A with the twin) are
left out of the check, each with the reason.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from moecluster.spec.records import TaskResult

from moecluster.report.aggregate.prometheus import CounterSeries, GpuKey, Prometheus, energy_series

TOLERANCE = 0.02
PLACEMENT = {"timestamps": "placed by their start times",
             "reconstructed": "reconstructed (a single window ending at the task's finish)"}


@dataclass(frozen=True)
class GpuEnergy:
    """One GPU's energy over the run (None when Prometheus did not cover the whole run)."""

    key: GpuKey
    energy_j: float | None
    ran_tasks: bool


@dataclass(frozen=True)
class TaskCheck:
    task_id: str
    prometheus_j: float
    task_j: float

    @property
    def rel_diff(self) -> float:
        return (self.prometheus_j - self.task_j) / self.task_j


@dataclass(frozen=True)
class CounterCheck:
    """Prometheus against the tasks' own counters over the tasks' windows."""

    prometheus_j: float
    tasks_j: float
    tasks: tuple[TaskCheck, ...]
    placement: str            # how the windows were placed on the clock ("none" when no task could be)
    skipped: tuple[str, ...]  # "task: why" for tasks left out
    tolerance: float = TOLERANCE

    @property
    def rel_diff(self) -> float | None:
        return (self.prometheus_j - self.tasks_j) / self.tasks_j if self.tasks else None

    @property
    def ok(self) -> bool | None:
        """Within tolerance; None when no task could be compared."""
        return None if self.rel_diff is None else abs(self.rel_diff) <= self.tolerance


@dataclass(frozen=True)
class ClusterEnergy:
    url: str
    start_s: float
    end_s: float
    gpus: tuple[GpuEnergy, ...]
    inferences: int
    tasks_energy_j: float | None       # sum of the tasks' own window energies
    tasks_inferences: int              # inferences of the tasks that have energy
    check: CounterCheck | None
    notes: tuple[str, ...]

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def _sum(self, ran: bool | None) -> float | None:
        vals = [g.energy_j for g in self.gpus if ran is None or g.ran_tasks == ran]
        if any(v is None for v in vals):
            return None
        return sum(v for v in vals if v is not None)

    @property
    def total_j(self) -> float | None:
        return self._sum(None) if self.gpus else None

    @property
    def task_gpus_j(self) -> float | None:
        return self._sum(True)

    @property
    def idle_gpus_j(self) -> float | None:
        return self._sum(False)

    @property
    def inferences_per_j(self) -> float | None:
        total = self.total_j
        return self.inferences / total if total else None

    @property
    def tasks_inferences_per_j(self) -> float | None:
        return self.tasks_inferences / self.tasks_energy_j if self.tasks_energy_j else None

    def by_node(self) -> dict[str, dict[str, float | int | None]]:
        """node -> GPUs, GPUs that ran tasks, energy (J, None if a GPU lacks coverage)."""
        out: dict[str, dict[str, float | int | None]] = {}
        groups: dict[str, list[GpuEnergy]] = defaultdict(list)
        for g in self.gpus:
            groups[g.key.node].append(g)
        for node, gs in sorted(groups.items()):
            known = [g.energy_j for g in gs if g.energy_j is not None]
            out[node] = {"gpus": len(gs), "task_gpus": sum(g.ran_tasks for g in gs),
                         "energy_j": sum(known) if len(known) == len(gs) else None}
        return out


def window_spans(result: TaskResult, others: Sequence[TaskResult] = ()) -> tuple[list[tuple[float, float]] | None, str]:
    """(start, end) Unix times of each window, and how they were placed (or why they cannot be).

    `others` are the run's other tasks: a reconstructed window must not overlap a task that
    shared one of this task's GPUs.
    """
    spans = [(float(w.started_at), float(w.started_at) + w.duration_s) for w in result.windows
             if isinstance(w.started_at, (int, float)) and w.started_at > 0]
    if result.windows and len(spans) == len(result.windows):
        return spans, "timestamps"
    if len(result.windows) != 1:
        return None, (f"{len(result.windows)} windows without start times (Window.started_at): they cannot be"
                      " placed on the clock")
    mine = {(g.node, g.uuid) for g in result.gpus}
    for o in others:
        if o is result or not mine & {(g.node, g.uuid) for g in o.gpus}:
            continue
        if o.started_at < result.finished_at and result.started_at < o.finished_at:
            return None, f"shares a GPU with {o.spec.task_id} at the same time, and its window has no start time"
    w = result.windows[0]
    return [(result.finished_at - w.duration_s, result.finished_at)], "reconstructed"


def _task_gpu_series(result: TaskResult, series: dict[tuple[str, str], CounterSeries]) -> list[CounterSeries] | str:
    found = []
    for g in result.gpus:
        s = series.get((g.node, g.uuid))
        if s is None:
            return f"GPU {g.node}/{g.uuid} not in Prometheus"
        found.append(s)
    return found if found else "no GPU recorded"


def counter_check(results: Sequence[TaskResult], series: dict[GpuKey, CounterSeries]) -> CounterCheck | None:
    """Compare Prometheus with every task that has its own energy reading."""
    by_gpu = {(k.node, k.uuid): s for k, s in series.items()}
    checks: list[TaskCheck] = []
    skipped: list[str] = []
    how: set[str] = set()
    for r in results:
        if r.status != "ok" or r.energy_source is None:
            continue
        found = _task_gpu_series(r, by_gpu)
        if isinstance(found, str):
            skipped.append(f"{r.spec.task_id}: {found}")
            continue
        spans, placed = window_spans(r, results)
        if spans is None:
            skipped.append(f"{r.spec.task_id}: {placed}")
            continue
        how.add(placed)
        prom = [s.energy_j(t0, t1) for s in found for t0, t1 in spans]
        if any(p is None for p in prom):
            skipped.append(f"{r.spec.task_id}: Prometheus has no samples around a window")
            continue
        task_j = sum(w.energy_j for w in r.windows if w.energy_j is not None)
        checks.append(TaskCheck(r.spec.task_id, sum(p for p in prom if p is not None), task_j))
    if not checks:
        return CounterCheck(0.0, 0.0, (), "none", tuple(skipped)) if skipped else None
    placement = " and ".join(sorted(PLACEMENT[h] for h in how))
    return CounterCheck(prometheus_j=sum(c.prometheus_j for c in checks), tasks_j=sum(c.task_j for c in checks),
                        tasks=tuple(checks), skipped=tuple(skipped), placement=placement)


def run_span(results: Sequence[TaskResult]) -> tuple[float, float]:
    """From the first task's start to the last task's end."""
    timed = [r for r in results if r.started_at > 0 and r.finished_at > 0]
    if not timed:
        raise ValueError("no task has start and finish times")
    return min(r.started_at for r in timed), max(r.finished_at for r in timed)


def cluster_energy(results: Sequence[TaskResult], prom: Prometheus, *, span: tuple[float, float] | None = None,
                   margin_s: float = 120.0) -> ClusterEnergy:
    """Every GPU's energy over the run from Prometheus, the cluster's inferences/J and the check."""
    start_s, end_s = span or run_span(results)
    series = energy_series(prom, start_s, end_s, margin_s=margin_s)
    task_gpus = {(g.node, g.uuid) for r in results if r.status == "ok" for g in r.gpus}
    gpus = tuple(GpuEnergy(k, s.energy_j(start_s, end_s), (k.node, k.uuid) in task_gpus)
                 for k, s in sorted(series.items()))
    notes: list[str] = []
    if not series:
        notes.append(f"Prometheus has no {'moecluster_gpu_energy_joules_total'} samples in the run's span")
    uncovered = [f"{g.key.node}/{g.key.gpu}" for g in gpus if g.energy_j is None]
    if uncovered:
        notes.append(f"no samples covering the whole run for {', '.join(uncovered)}: totals left open")
    seen = {(k.node, k.uuid) for k in series}
    missing = sorted(f"{n}/{u}" for n, u in task_gpus - seen)
    if missing:
        notes.append(f"task GPUs absent from Prometheus: {', '.join(missing)}")
    ok = [r for r in results if r.status == "ok"]
    with_energy = [r for r in ok if r.energy_source is not None]
    tasks_j = sum(w.energy_j for r in with_energy for w in r.windows if w.energy_j is not None)
    return ClusterEnergy(
        url=prom.url, start_s=start_s, end_s=end_s, gpus=gpus,
        inferences=sum(w.inferences for r in ok for w in r.windows),
        tasks_energy_j=tasks_j if with_energy else None,
        tasks_inferences=sum(w.inferences for r in with_energy for w in r.windows),
        check=counter_check(results, series), notes=tuple(notes))
