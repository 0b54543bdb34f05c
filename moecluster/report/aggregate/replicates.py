"""Replicates pooled: one figure per task and per MoE/dense comparison from the spread between processes.

A sweep with `replicates: N` measures every pair N times, each time in its own process (a fresh build,
form choice and idle reading; `TaskSpec.replicate`), and `moecluster report A B` adds the runs of one
sweep as further replicates. Tasks that differ only in replicate and run share a base task id (the
ids without the `-r<k>` suffix) and are one task here: each figure is pooled over the replicates by
`stats.replicate_ci` (geometric mean, t over the replicates' log values, df = replicates − 1), each
replicate's own figure being its geometric mean over its windows: windows nested inside replicates. A
comparison pools each replicate's own MoE/dense ratio (both sides measured in one process on one GPU,
so the GPU's own offset cancels), not the ratio of pooled means. A task's own figures (inferences/s,
W, inferences/J …) carry the GPU's offset, which processes on one GPU share: where its replicates ran
on several GPUs, they are pooled over the GPUs (`stats.clustered_ci`: each GPU's geometric mean of its
replicates, t over the GPUs), so the interval is one that a re-measurement on another GPU should fall
in (`benchmarks/calibration.py` checks it). A task measured by one process keeps its window interval;
`covers` says, for every figure, which of these an interval is.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from moecluster.spec.records import TaskSpec

from moecluster.report.aggregate.checks import few_replicates, few_windows, forms_differ
from moecluster.report.aggregate.pairs import RATIOS, PairRatio
from moecluster.report.aggregate.stats import Estimate, clustered_ci, replicate_ci
from moecluster.report.aggregate.tasks import TaskStats, gpu_key

POOLED = ("inferences_per_s", "power_w", "energy_j", "inferences_per_j", "energy_above_idle_j",
          "inferences_per_j_above_idle", "j_per_inference", "j_per_inference_above_idle",
          "j_per_inference_per_total_param", "j_per_inference_per_active_param", "j_per_token_per_active_param",
          "tokens_per_j")
METHOD = ("t over replicates (geometric mean of each replicate's own figure; df = replicates − 1); a task's own"
          " figures from replicates on several GPUs: t over the GPUs (each GPU's geometric mean; df = GPUs − 1)")


def base_pair_id(spec: TaskSpec) -> str:
    """The pair id without its replicate suffix (`sweep.pairs.replicate_id`); as is for one replicate."""
    suffix = f"-r{spec.replicate}"
    return spec.pair_id[:-len(suffix)] if spec.replicates > 1 and spec.pair_id.endswith(suffix) else spec.pair_id


def base_spec(spec: TaskSpec) -> TaskSpec:
    """`spec` as every replicate of it reads: ids without the suffix, replicate 1."""
    pid = base_pair_id(spec)
    if pid == spec.pair_id:
        return spec
    return replace(spec, pair_id=pid, task_id=pid + spec.task_id[len(spec.pair_id):], replicate=1)


def _pool(estimates: Sequence[Estimate | None]) -> Estimate | None:
    """The replicates' estimates pooled; None where a replicate lacks the figure."""
    present = [e for e in estimates if e is not None]
    return replicate_ci(present) if present and len(present) == len(estimates) else None


def _pool_over_gpus(processes: Sequence[TaskStats], name: str) -> Estimate | None:
    """One task figure over its replicates, grouped by the GPUs each ran on; None where one lacks it."""
    groups: dict[tuple[str, ...], list[Estimate]] = {}
    for p in processes:
        e = getattr(p, name)
        if e is None:
            return None
        groups.setdefault(gpu_key(p), []).append(e)
    return clustered_ci(list(groups.values()))


def _warnings(processes: Sequence[TaskStats]) -> tuple[str, ...]:
    """The processes' warnings once each; with several replicates, few windows no longer limit the interval
    (it is over replicates), few replicates do, and so do replicates that ran different forms."""
    few = {few_windows(p.n_windows) for p in processes}
    out = [w for p in processes for w in p.warnings if w not in few]
    runs = len({p.spec.run_id for p in processes}) > 1
    named = [(f"r{p.spec.replicate}" + (f" of {p.spec.run_id}" if runs else ""), p.result) for p in processes]
    return tuple(dict.fromkeys([*out, *filter(None, [few_replicates(len(processes)), forms_differ(named)])]))


def pool_task(processes: Sequence[TaskStats]) -> TaskStats:
    """One task's replicates as one `TaskStats` (`TaskStats.replicates` holds them); a lone process as is,
    under its base ids."""
    first = processes[0]
    spec = base_spec(first.spec)
    if len(processes) == 1:
        return first if spec is first.spec else replace(first, result=replace(first.result, spec=spec))
    pooled = {name: _pool_over_gpus(processes, name) for name in POOLED}
    samples = {k: tuple(v for p in processes for v in p.samples.get(k, ())) for k in first.samples
               if all(k in p.samples for p in processes)}
    return replace(first, result=replace(first.result, spec=spec), samples=samples, warnings=_warnings(processes),
                   energy_note=next((p.energy_note for p in processes if p.energy_note), None),
                   above_idle_note=next((p.above_idle_note for p in processes if p.above_idle_note), None),
                   replicates=tuple(processes), **pooled)


def pool_tasks(stats: Sequence[TaskStats]) -> list[TaskStats]:
    """Every task once, its replicates (of one run or of several) pooled, in the order first seen."""
    groups: dict[str, list[TaskStats]] = {}
    for s in stats:
        groups.setdefault(base_spec(s.spec).task_id, []).append(s)
    return [pool_task(g) for g in groups.values()]


def pool_pairs(raw: Sequence[PairRatio], tasks: Sequence[TaskStats]) -> list[PairRatio]:
    """Every comparison once: each replicate's own MoE/dense ratios pooled (`replicate_ci`), beside the pooled
    tasks of `tasks`; a comparison measured once keeps its window intervals."""
    by_id = {s.task_id: s for s in tasks}
    groups: dict[tuple[str, str], list[PairRatio]] = {}
    for p in raw:
        groups.setdefault((base_spec(p.moe.spec).task_id, base_spec(p.dense.spec).task_id), []).append(p)
    out = []
    for (moe_id, dense_id), group in groups.items():
        first = group[0]
        moe, dense = by_id[moe_id], by_id[dense_id]
        if len(group) == 1:
            out.append(first if moe is first.moe and dense is first.dense else
                       replace(first, pair_id=moe.spec.pair_id, moe=moe, dense=dense))
            continue
        ratios = {name: _pool([getattr(p, name) for p in group]) for name in RATIOS}
        out.append(PairRatio(pair_id=moe.spec.pair_id, moe=moe, dense=dense, replicates=tuple(group), **ratios))
    return out


def processes_of(pairs: Sequence[PairRatio]) -> list[PairRatio]:
    """The per-process comparisons behind pooled ones (the break-even pools them per size by a t over them, and
    its bootstrap draws each size from that interval)."""
    return [r for p in pairs for r in (p.replicates or (p,))]
