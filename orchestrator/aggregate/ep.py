"""Expert parallelism: what spreading one MoE's experts over `d` GPUs costs, measured.

For each MoE configuration run at several expert-parallel degrees, every degree `d > 1` is
set against the same configuration at `d = 1`:

- speedup `S = (inferences/s at d) / (inferences/s at 1)`, with the ratio's interval;
- scaling loss `1 - S/d`: the share of the `d` GPUs' time not turned into throughput
  (communication, waiting for the slowest expert shard, launch overheads); an upper bound on
  the communication share, which it equals when the shards are balanced and compute-bound;
- energy ratio `(inferences/J at d) / (inferences/J at 1)`: below 1, spreading costs energy.

The analytic communication share (all-to-all bytes over the link bandwidth) is computed by
`moecluster.orchestrator.estimate` and set beside these in the report.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

from .stats import Estimate, ratio_ci
from .tasks import TaskStats


@dataclass(frozen=True)
class EpPoint:
    """One MoE task at expert-parallel degree `degree`, against its `d = 1` twin when there is one."""

    stats: TaskStats
    degree: int
    baseline: TaskStats | None
    speedup: Estimate | None
    scaling_loss: Estimate | None
    energy_ratio: Estimate | None


def _config(s: TaskStats) -> tuple:
    spec = s.spec
    return (spec.workload, spec.impl, spec.dtype, spec.batch_size, spec.device, spec.load, spec.compile,
            spec.cuda_graphs, tuple(sorted(dict(spec.model).items())))


def _loss(speedup: Estimate | None, degree: int) -> Estimate | None:
    if speedup is None:
        return None
    lo = None if speedup.hi is None else 1.0 - speedup.hi / degree
    hi = None if speedup.lo is None else 1.0 - speedup.lo / degree
    return Estimate(1.0 - speedup.mean / degree, lo, hi, speedup.n)


def _ratio(a: Estimate | None, b: Estimate | None) -> Estimate | None:
    return ratio_ci(a, b) if a is not None and b is not None and a.mean > 0 and b.mean > 0 else None


def _gpu_names(s: TaskStats) -> frozenset[str]:
    return frozenset(g.name for g in s.result.gpus)


def ep_points(stats: Sequence[TaskStats]) -> list[EpPoint]:
    """Every MoE task run at a degree above 1, against its configuration at degree 1 (when run;
    with several such tasks, one on the same kind of GPU is preferred)."""
    groups: dict[tuple, list[TaskStats]] = defaultdict(list)
    for s in stats:
        if s.spec.kind == "moe":
            groups[_config(s)].append(s)
    out: list[EpPoint] = []
    for members in groups.values():
        bases = [m for m in members if m.spec.expert_parallel == 1]
        for m in sorted(members, key=lambda m: m.spec.expert_parallel):
            d = m.spec.expert_parallel
            if d == 1:
                continue
            base = next((b for b in bases if _gpu_names(b) == _gpu_names(m)), bases[0] if bases else None)
            if base is None:
                out.append(EpPoint(m, d, None, None, None, None))
                continue
            speedup = _ratio(m.inferences_per_s, base.inferences_per_s)
            out.append(EpPoint(m, d, base, speedup, _loss(speedup, d),
                               _ratio(m.inferences_per_j, base.inferences_per_j)))
    return out
