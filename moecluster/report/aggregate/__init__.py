"""Aggregation: from stored task results to the study's answers. Computes; never measures.

Pure functions over `list[TaskResult]` (plus, for the cluster-wide view, a Prometheus URL):
per-task figures with 95 % intervals (`tasks`, `stats`) and the warnings beside them (`checks`),
MoE/dense pairs as ratios (`pairs`), replicates of a task or pair pooled into one (`replicates`),
the break-even size (`breakeven`, `crossing`) with its bootstrap interval (`bootstrap`),
expert-parallel costs (`ep`), cluster-wide energy
(`cluster`) and LLM pairs over the batch, per phase (`llm`). `aggregate()` runs them all for the report.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from moecluster.spec.records import TaskResult

from moecluster.report.aggregate.bootstrap import CrossingInterval
from moecluster.report.aggregate.breakeven import BreakEven, SeriesKey, break_evens
from moecluster.report.aggregate.cluster import ClusterEnergy, cluster_energy
from moecluster.report.aggregate.ep import EpPoint, ep_points
from moecluster.report.aggregate.llm import LlmSeries, llm_series
from moecluster.report.aggregate.pairs import IncompletePair, PairRatio, pair_ratios
from moecluster.report.aggregate.replicates import pool_pairs, pool_tasks, processes_of
from moecluster.report.aggregate.prometheus import Prometheus, PrometheusError
from moecluster.report.aggregate.stats import Estimate, log_mean_ci, mean_ci, ratio_ci, replicate_ci
from moecluster.report.aggregate.tasks import TaskStats, all_task_stats, task_stats

__all__ = [
    "Aggregate", "BreakEven", "ClusterEnergy", "CrossingInterval", "EpPoint", "Estimate", "IncompletePair",
    "LlmSeries", "PairRatio", "Prometheus", "PrometheusError", "SeriesKey", "TaskStats", "aggregate", "all_task_stats",
    "break_evens", "cluster_energy", "ep_points", "log_mean_ci", "mean_ci", "pair_ratios", "ratio_ci",
    "replicate_ci", "task_stats",
]


@dataclass(frozen=True)
class Aggregate:
    """Everything the report shows about one run."""

    results: tuple[TaskResult, ...]
    tasks: tuple[TaskStats, ...]
    pairs: tuple[PairRatio, ...]
    incomplete: tuple[IncompletePair, ...]
    break_evens: tuple[BreakEven, ...]
    break_evens_above_idle: tuple[BreakEven, ...]
    ep: tuple[EpPoint, ...]
    cluster: ClusterEnergy | None
    cluster_note: str
    llm: tuple[LlmSeries, ...] = ()  # LLM pairs as series over the batch, per phase

    @property
    def failed(self) -> tuple[TaskResult, ...]:
        return tuple(r for r in self.results if r.status != "ok")


def aggregate(results: Sequence[TaskResult], prometheus_url: str | None = None, *,
              prometheus_timeout_s: float = 15.0) -> Aggregate:
    """All of the report's figures. Without a Prometheus URL the cluster view is absent, and
    `cluster_note` says so; a Prometheus that cannot be read leaves it absent with the reason.

    Tasks and pairs measured by several processes (replicates, or runs `report` pools) are one task and
    one pair each, their intervals over the replicates (`replicates`); the break-even pools the processes
    at each size itself (seeds and replicates) and its bootstrap draws each size from that interval."""
    processes = all_task_stats(results)
    raw, incomplete = pair_ratios(processes, [r for r in results if r.status != "ok"])
    stats = pool_tasks(processes)
    pairs = pool_pairs(raw, stats)
    per_process = processes_of(pairs)
    cluster: ClusterEnergy | None = None
    if prometheus_url is None:
        note = "not measured: no Prometheus URL given (--prometheus)"
    elif not any(r.status == "ok" for r in results):
        note = "not measured: no successful task, so no run span"
    else:
        try:
            cluster = cluster_energy(results, Prometheus(prometheus_url, prometheus_timeout_s))
            note = f"from Prometheus at {prometheus_url}"
        except (PrometheusError, ValueError) as exc:
            note = f"unavailable: {exc}"
    return Aggregate(
        results=tuple(results), tasks=tuple(stats), pairs=tuple(pairs), incomplete=tuple(incomplete),
        break_evens=tuple(break_evens(per_process)),
        break_evens_above_idle=tuple(break_evens(per_process, "inferences_per_j_above_idle")),
        ep=tuple(ep_points(stats)), cluster=cluster, cluster_note=note, llm=tuple(llm_series(pairs)))
