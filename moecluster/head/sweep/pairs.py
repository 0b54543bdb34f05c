"""A sweep's plan: pairs of tasks (`PairPlan`), all of a sweep's pairs (`Plan`), and their replicates.

Every workload's expansion (`moecluster.workloads`) builds these; what follows them (scheduling, the
store, the views) reads only these. With `replicates: N` above 1 every pair is planned N times, as
independent pairs: pair id and task ids end in `-r1` ... `-rN` (`replicate_id`), each replicate runs in
its own process (a fresh build, form choice and idle reading), every other replicate starts from the
other side, and the plan lists replicate 1 of every pair, then replicate 2 of every pair, ...
(`queue_order` keeps that), so a pair's replicates run apart in time and on whichever GPU is free then,
and slow drift spreads over all pairs instead of falling between one pair's replicates. With one
replicate the ids have no suffix, as in stores written before replicates existed.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from moecluster.spec.records import TaskSpec

DTYPE_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


@dataclass(frozen=True)
class PairPlan:
    """One scheduling unit: the tasks of a pair, run alternately on the same GPU(s).

    `tasks` lists the dense twin(s) first, then the MoE task(s), in the order of the first
    round (reversed when the tasks' `reverse_order` is set).
    `gpus` is the gang size when the pair runs on GPUs: the MoE task's expert-parallel
    degree (the dense twins then run data-parallel on the same GPUs).
    """

    pair_id: str
    model: str
    tasks: tuple[TaskSpec, ...]
    params_total: tuple[int, ...]
    params_active: tuple[int, ...]
    estimated_s: tuple[float, ...]
    gpus: int
    accelerator_type: str | None
    placement_strategy: str

    @property
    def total_estimated_s(self) -> float:
        return sum(self.estimated_s)

    @property
    def moe(self) -> TaskSpec:
        """The (first) MoE task; a pair with shared twins holds one per implementation."""
        return next(t for t in self.tasks if t.kind == "moe")

    @property
    def moes(self) -> tuple[TaskSpec, ...]:
        return tuple(t for t in self.tasks if t.kind == "moe")

    @property
    def replicate(self) -> int:
        """Which replicate of its pair this is (1-based; 1 without replicates)."""
        return self.tasks[0].replicate


@dataclass(frozen=True)
class Plan:
    """All pairs of a sweep, and the grid points skipped as impossible (with why)."""

    pairs: tuple[PairPlan, ...]
    skipped: tuple[str, ...] = ()

    @property
    def tasks(self) -> list[TaskSpec]:
        return [t for p in self.pairs for t in p.tasks]

    @property
    def slot_s(self) -> float:
        """Estimated seconds of the whole plan on one slot (a GPU, or a CPU task): a gang's pair
        counts once per GPU it holds."""
        return sum(p.total_estimated_s * p.gpus for p in self.pairs)


def replicate_id(pair_id: str, replicate: int) -> str:
    """The pair id of one replicate: `<pair id>-r<replicate>`."""
    return f"{pair_id}-r{replicate}"


def _replicate(pair: PairPlan, replicate: int, replicates: int) -> PairPlan:
    """`pair` as replicate `replicate` of `replicates`: ids suffixed, every other replicate reversed."""
    pid = replicate_id(pair.pair_id, replicate)
    flip = replicate % 2 == 0
    tasks = tuple(dataclasses.replace(t, pair_id=pid, task_id=pid + t.task_id[len(pair.pair_id):],
                                      replicate=replicate, replicates=replicates,
                                      reverse_order=t.reverse_order != flip) for t in pair.tasks)
    return dataclasses.replace(pair, pair_id=pid, tasks=tasks)


def with_replicates(plan: Plan, replicates: int) -> Plan:
    """`plan` with every pair `replicates` times, replicate 1 of every pair first (see the module's doc);
    the plan itself for one replicate."""
    if replicates <= 1:
        return plan
    pairs = tuple(_replicate(p, k, replicates) for k in range(1, replicates + 1) for p in plan.pairs)
    return dataclasses.replace(plan, pairs=pairs)


def queue_order(pairs: Sequence[PairPlan]) -> list[PairPlan]:
    """The order pairs are to start in: by replicate round, longest estimate first inside a round.

    Longest first packs the slots well; rounds keep a pair's replicates apart in time (and so, where
    the cluster has several GPUs, mostly on different ones), so what drifts over a run spreads over
    every pair rather than between the replicates of one."""
    return sorted(pairs, key=lambda p: (p.replicate, -p.total_estimated_s))
