"""Pairs: an MoE task set beside its dense twin(s), as MoE/dense ratios with intervals.

Tasks of one pair share `spec.pair_id`. A pair may hold several dense twins sized
differently (`spec.match`: total, active or seed parameters) and several MoE tasks (one per
implementation, sharing the twins); every MoE task is compared with every dense twin of its
pair. Ratios above 1 favour MoE for inferences/s and inferences/J, and mean MoE draws more
power for W. A ratio whose interval contains 1 is flagged: the repeats cannot tell which side
is better.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from moecluster.spec.records import TaskResult, TaskSpec

from moecluster.report.aggregate.stats import Estimate, ratio_ci
from moecluster.report.aggregate.tasks import TaskStats, covers

# the figures a pair compares, MoE over dense: the names of PairRatio's ratio fields
RATIOS = ("inferences_per_s", "power_w", "inferences_per_j", "inferences_per_j_above_idle")


@dataclass(frozen=True)
class PairRatio:
    """One MoE task against one dense twin (`match` says how the twin was sized)."""

    pair_id: str
    moe: TaskStats
    dense: TaskStats
    inferences_per_s: Estimate | None
    power_w: Estimate | None
    inferences_per_j: Estimate | None
    inferences_per_j_above_idle: Estimate | None
    # the per-process comparisons (replicates) pooled into these ratios (`replicates.pool_pairs`); () for one
    replicates: tuple[PairRatio, ...] = ()

    @property
    def ci_covers(self) -> str:
        """What the ratios' intervals cover: the replicates' spread, or one process's windows."""
        return covers([r.moe for r in self.replicates] or [self.moe])

    @property
    def match(self) -> str | None:
        return self.dense.spec.match

    @property
    def warnings(self) -> tuple[str, ...]:
        """Both tasks' warnings, each prefixed by its side ("moe: ...", "dense: ...")."""
        return (*(f"moe: {w}" for w in self.moe.warnings), *(f"dense: {w}" for w in self.dense.warnings))

    @property
    def flags(self) -> list[str]:
        """Names of the ratios whose interval contains 1."""
        out = []
        for name in RATIOS:
            est: Estimate | None = getattr(self, name)
            if est is not None and est.crosses_one:
                out.append(name)
        return out


@dataclass(frozen=True)
class IncompletePair:
    """A pair that cannot be compared, and why (a twin failed or is missing)."""

    pair_id: str
    reason: str


def _ratio(a: Estimate | None, b: Estimate | None) -> Estimate | None:
    if a is None or b is None or not (a.mean > 0 and b.mean > 0):
        return None
    return ratio_ci(a, b)


def pair_ratio(pair_id: str, moe: TaskStats, dense: TaskStats) -> PairRatio:
    """The MoE/dense ratios of one MoE task against one dense twin (None where a side lacks the figure)."""
    return PairRatio(
        pair_id=pair_id, moe=moe, dense=dense,
        inferences_per_s=_ratio(moe.inferences_per_s, dense.inferences_per_s),
        power_w=_ratio(moe.power_w, dense.power_w),
        inferences_per_j=_ratio(moe.inferences_per_j, dense.inferences_per_j),
        inferences_per_j_above_idle=_ratio(moe.inferences_per_j_above_idle, dense.inferences_per_j_above_idle))


PairKey = tuple[str, str]


def _key(spec: TaskSpec) -> PairKey:
    """A pair's tasks share run and pair id (runs of one sweep pooled by `report` repeat the pair ids)."""
    return spec.run_id, spec.pair_id


def pair_ratios(stats: Sequence[TaskStats], failed: Sequence[TaskResult] = ()) -> tuple[list[PairRatio],
                                                                                         list[IncompletePair]]:
    """Every (MoE, dense twin) combination of each pair, plus the pairs that cannot be formed.

    `stats` holds the `ok` tasks; `failed` the failed ones, so a pair whose twin failed is
    reported as such rather than silently missing, and so is a failed task of a pair whose
    other tasks are compared (one of two dense twins, one MoE implementation of several).
    """
    failed_kinds: dict[PairKey, set[str]] = defaultdict(set)
    failed_tasks: dict[PairKey, list[TaskResult]] = defaultdict(list)
    for r in failed:
        failed_kinds[_key(r.spec)].add(r.spec.kind)
        failed_tasks[_key(r.spec)].append(r)
    pair_ids = list(failed_kinds)
    by_pair: dict[PairKey, dict[str, list[TaskStats]]] = defaultdict(lambda: {"moe": [], "dense": []})
    for s in stats:
        by_pair[_key(s.spec)][s.spec.kind].append(s)
    ratios: list[PairRatio] = []
    incomplete: list[IncompletePair] = []
    for key in list(by_pair) + [p for p in dict.fromkeys(pair_ids) if p not in by_pair]:
        pid = key[1]
        group = by_pair.get(key, {"moe": [], "dense": []})
        if not group["moe"] or not group["dense"]:
            kind = "moe" if not group["moe"] else "dense"
            what = "MoE task" if kind == "moe" else "dense twin"
            why = f"{what} failed" if kind in failed_kinds.get(key, set()) else f"no {what} in this run"
            incomplete.append(IncompletePair(pid, why))
            continue
        for m in group["moe"]:
            for d in sorted(group["dense"], key=lambda s: str(s.spec.match)):
                ratios.append(pair_ratio(pid, m, d))
        for r in failed_tasks.get(key, []):
            what, others = ("dense twin", "twin(s)") if r.spec.kind == "dense" else ("MoE task", "MoE task(s)")
            incomplete.append(IncompletePair(pid, f"{what} {r.spec.label()} failed: only the pair's other"
                                                  f" {others} are compared"))
    return ratios, incomplete
