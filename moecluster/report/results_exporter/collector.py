"""Run stores as Prometheus gauges: progress of every run, and the figures of its finished tasks.

Every scrape lists the runs under the runs directory; a run's series are computed from its store
(opened read-only) by the aggregate functions the report uses, and kept until its task counts or
run facts change (a running sweep adds a row per finished task; a finished run is computed once). A figure that
was not measured (a task without energy, a gang without phase energy) has no series, never a 0.

Series (gauges; `_ci95_low`/`_ci95_high` beside an estimate where it has an interval):

- `moecluster_run_info{run, sweep, state}` 1 (`state`: running, finished, incomplete, damaged, ...)
- `moecluster_run_tasks{run, state}`: tasks planned, ok, failed, missing
- per finished task, labels `TASK_LABELS`: `moecluster_result_inferences_per_second`,
  `moecluster_result_inferences_per_joule`, `moecluster_result_power_watts`
- per MoE task and dense twin, labels `PAIR_LABELS`: `moecluster_pair_inferences_per_joule_ratio`,
  `moecluster_pair_inferences_per_second_ratio` (MoE over dense; above 1 favours MoE)
- per expert-parallel task (degree above 1), labels `EP_LABELS`: `moecluster_ep_comm_time_ratio`
  (dispatch + combine share of a step), `moecluster_ep_comm_energy_ratio` (their share of the
  window energy, where measured), `moecluster_ep_dispatch_energy_ratio` (the dispatch's part alone:
  a lower bound), `moecluster_ep_speedup_ratio` and `moecluster_ep_inferences_per_joule_vs_ep1_ratio`
  (against the same configuration on one GPU)
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from moecluster.spec.records import TaskResult, TaskSpec
from moecluster.report.aggregate.ep import EpPoint, ep_points
from moecluster.report.aggregate.pairs import PairRatio, pair_ratios
from moecluster.report.aggregate.stats import Estimate
from moecluster.report.aggregate.tasks import TaskStats, all_task_stats
from moecluster.head.rundir import list_runs
from moecluster.head.store import RunStore, StoreDamaged

RUN_LABELS = ("run", "sweep", "state")
TASK_LABELS = ("run", "task", "pair", "kind", "impl", "preset", "match", "dtype", "batch_size", "ep",
               "energy_source", "gpu_name")
PAIR_LABELS = ("run", "pair", "moe_task", "dense_task", "impl", "preset", "match", "dtype", "batch_size", "ep")
EP_LABELS = ("run", "task", "impl", "preset", "dtype", "batch_size", "ep")
COUNT_STATES = ("planned", "ok", "failed", "missing")
log = logging.getLogger(__name__)

Sample = tuple[tuple[str, ...], float]

#: metric name -> (help, label names): every family this collector can export
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "moecluster_run_info": ("A run under the runs directory (value 1): its sweep and state.", RUN_LABELS),
    "moecluster_run_tasks": ("Tasks of the run by state: planned, ok, failed, missing (planned, not stored).",
                             ("run", "state")),
}


def _estimate_families(name: str, what: str, labels: tuple[str, ...]) -> None:
    FAMILIES[name] = (what, labels)
    FAMILIES[name + "_ci95_low"] = (f"Lower end of the 95 % interval of {name}.", labels)
    FAMILIES[name + "_ci95_high"] = (f"Upper end of the 95 % interval of {name}.", labels)


_estimate_families("moecluster_result_inferences_per_second", "Finished task: inferences per second over its "
                   "measurement windows (geometric mean of the windows).", TASK_LABELS)
_estimate_families("moecluster_result_inferences_per_joule", "Finished task: inferences per joule of GPU energy "
                   "over its windows (absent where energy was not measured).", TASK_LABELS)
_estimate_families("moecluster_result_power_watts", "Finished task: mean GPU power over its windows.", TASK_LABELS)
_estimate_families("moecluster_pair_inferences_per_joule_ratio", "MoE task over its dense twin: inferences per "
                   "joule (above 1 favours MoE).", PAIR_LABELS)
_estimate_families("moecluster_pair_inferences_per_second_ratio", "MoE task over its dense twin: inferences per "
                   "second (above 1 favours MoE).", PAIR_LABELS)
FAMILIES["moecluster_ep_comm_time_ratio"] = (
    "Expert-parallel task: share of a step spent in dispatch + combine (measured phases).", EP_LABELS)
FAMILIES["moecluster_ep_comm_energy_ratio"] = (
    "Expert-parallel task: share of the window energy per step that dispatch + combine took (where measured).",
    EP_LABELS)
FAMILIES["moecluster_ep_dispatch_energy_ratio"] = (
    "Expert-parallel task: the dispatch's share of the window energy alone (a lower bound on the "
    "communication's share).", EP_LABELS)
_estimate_families("moecluster_ep_speedup_ratio", "Expert-parallel task: inferences per second over the same "
                   "configuration on one GPU.", EP_LABELS)
_estimate_families("moecluster_ep_inferences_per_joule_vs_ep1_ratio", "Expert-parallel task: inferences per joule "
                   "over the same configuration on one GPU (below 1: spreading costs energy).", EP_LABELS)


@dataclass
class RunSeries:
    """The samples of one run, by metric name."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, name: str, labels: Sequence[str], value: float) -> None:
        if name not in FAMILIES:
            raise KeyError(f"{name} is not a declared family")
        self.samples.setdefault(name, []).append((tuple(labels), float(value)))

    def add_estimate(self, name: str, labels: Sequence[str], est: Estimate | None) -> None:
        if est is None:
            return
        self.add(name, labels, est.mean)
        if est.lo is not None and est.hi is not None:
            self.add(name + "_ci95_low", labels, est.lo)
            self.add(name + "_ci95_high", labels, est.hi)


def _opt(value: object) -> str:
    return "" if value is None else str(value)


def _task_labels(run: str, s: TaskStats) -> list[str]:
    spec, result = s.spec, s.result
    gpu_name = result.gpus[0].name if result.gpus else ""
    return [run, spec.task_id, spec.pair_id, spec.kind, spec.impl, _opt(spec.preset), _opt(spec.match), spec.dtype,
            str(spec.batch_size), str(spec.expert_parallel), _opt(result.energy_source), gpu_name]


def _pair_labels(run: str, p: PairRatio) -> list[str]:
    moe: TaskSpec = p.moe.spec
    return [run, p.pair_id, moe.task_id, p.dense.spec.task_id, moe.impl, _opt(moe.preset), _opt(p.match), moe.dtype,
            str(moe.batch_size), str(moe.expert_parallel)]


def _ep_labels(run: str, e: EpPoint) -> list[str]:
    spec = e.stats.spec
    return [run, spec.task_id, spec.impl, _opt(spec.preset), spec.dtype, str(spec.batch_size), str(e.degree)]


def run_series(run: str, meta: dict[str, object], counts: dict[str, int], results: Sequence[TaskResult]) -> RunSeries:
    """Every series of one run, from its store's contents."""
    out = RunSeries()
    out.add("moecluster_run_info", [run, _opt(meta.get("sweep")), _opt(meta.get("state", "unknown"))], 1.0)
    for state in COUNT_STATES:
        out.add("moecluster_run_tasks", [run, state], float(counts.get(state, 0)))
    stats = all_task_stats(results)
    for s in stats:
        labels = _task_labels(run, s)
        out.add_estimate("moecluster_result_inferences_per_second", labels, s.inferences_per_s)
        out.add_estimate("moecluster_result_inferences_per_joule", labels, s.inferences_per_j)
        out.add_estimate("moecluster_result_power_watts", labels, s.power_w)
    pairs, _incomplete = pair_ratios(stats, [r for r in results if r.status != "ok"])
    for p in pairs:
        labels = _pair_labels(run, p)
        out.add_estimate("moecluster_pair_inferences_per_joule_ratio", labels, p.inferences_per_j)
        out.add_estimate("moecluster_pair_inferences_per_second_ratio", labels, p.inferences_per_s)
    for e in ep_points(stats):
        if e.degree == 1:
            continue
        labels = _ep_labels(run, e)
        if e.comm is not None:
            for name, value in (("moecluster_ep_comm_time_ratio", e.comm.time_share),
                                ("moecluster_ep_comm_energy_ratio", e.comm.energy_share),
                                ("moecluster_ep_dispatch_energy_ratio", e.comm.dispatch_energy_share)):
                if value is not None:
                    out.add(name, labels, value)
        out.add_estimate("moecluster_ep_speedup_ratio", labels, e.speedup)
        out.add_estimate("moecluster_ep_inferences_per_joule_vs_ep1_ratio", labels, e.energy_ratio)
    return out


def _damaged(run: str, exc: StoreDamaged) -> RunSeries:
    log.warning("run %s is damaged: %s", run, exc)
    damaged = RunSeries()
    damaged.add("moecluster_run_info", [run, "", "damaged"], 1.0)
    return damaged


def read_run(run_dir: Path) -> RunSeries:
    """The series of the run in `run_dir`; a damaged store gives `moecluster_run_info{state="damaged"}` alone."""
    try:
        with RunStore(run_dir, read_only=True) as store:
            meta, counts, results = store.meta(), store.counts(), store.results()
    except StoreDamaged as exc:
        return _damaged(run_dir.name, exc)
    return run_series(run_dir.name, meta, counts, results)


def store_version(run_dir: Path) -> str:
    """What the exported series depend on besides the immutable `ok` records: the task counts and the
    run facts. The store never rewrites an `ok` row (a retry replaces a failed one, which changes the
    counts), so equal versions mean equal series. Two cheap queries instead of parsing every record."""
    try:
        with RunStore(run_dir, read_only=True) as store:
            return json.dumps([store.counts(), store.meta()], sort_keys=True, default=str)
    except StoreDamaged as exc:
        return f"damaged: {exc}"


class ResultsCollector(Collector):
    """The series of the `max_runs` most recent runs under `runs_root` (all when None)."""

    def __init__(self, runs_root: Path, *, max_runs: int | None = None) -> None:
        if max_runs is not None and max_runs < 1:
            raise ValueError(f"max_runs must be at least 1 (got {max_runs})")
        self.runs_root = Path(runs_root)
        self.max_runs = max_runs
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[str, RunSeries]] = {}

    def describe(self) -> Iterable[Metric]:
        return []  # the series vary with the runs; skip the registry's dry run

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            return iter(self._collect())

    def runs(self) -> list[Path]:
        runs = list_runs(self.runs_root)
        return runs[-self.max_runs:] if self.max_runs is not None else runs

    def _series(self, run_dir: Path) -> RunSeries:
        version = store_version(run_dir)
        cached = self._cache.get(run_dir)
        if cached is not None and cached[0] == version:
            return cached[1]
        series = read_run(run_dir)
        self._cache[run_dir] = (version, series)
        return series

    def _collect(self) -> list[Metric]:
        runs = self.runs()
        for gone in set(self._cache) - set(runs):
            del self._cache[gone]
        families = {name: GaugeMetricFamily(name, doc, labels=labels) for name, (doc, labels) in FAMILIES.items()}
        for run_dir in runs:
            for name, samples in self._series(run_dir).samples.items():
                for labels, value in samples:
                    families[name].add_metric(list(labels), value)
        return [f for f in families.values() if f.samples]
