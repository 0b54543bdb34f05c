"""Expert parallelism: what spreading one MoE's experts over `d` GPUs costs, measured.

Per MoE configuration (everything but the degree) run at some degree above 1, one point per
degree, `d = 1` included:

- inferences/s and inferences/J with their intervals, as for any task (a gang's windows carry
  the gang's inferences and the energy of all its GPUs);
- against the same configuration at `d = 1`, where both exist: speedup `S` with its interval,
  scaling loss `1 − S/d`, and the energy ratio (inferences/J at d over at 1; below 1,
  spreading costs energy);
- communication, only from what the gang measured (`TaskResult.phases`, per step, and the raw
  all-to-all of the same task at the task's dispatch and combine sizes, `TaskResult.alltoall`):
  the share of the step's time spent in dispatch + combine; the share of the window energy per
  step that dispatch + combine took, each phase's energy being its own where measured, else the
  energy per call of the raw all-to-all measured at its size (n/a unless both are measured; the
  dispatch's part alone is kept as a lower bound); the dispatch's bus bandwidth as a fraction of
  the raw all-to-all's at the same size; the all-to-all bytes sent per token.

A task without measured phases has no communication figures (None), never an estimate in
their place. A task at `d > 1` whose record is not a gang's (world size 1: recorded when every
rank ran the whole MoE alone) is no expert-parallel measurement: it is left out (`ep_left_out`).
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from moecluster.spec.records import AllToAllPoint, PhaseStat, TaskResult

from moecluster.report.aggregate.stats import Estimate, ratio_ci
from moecluster.report.aggregate.tasks import TaskStats

COMM_PHASES = ("dispatch", "combine")
SAME_SIZE_FACTOR = 1.5  # a raw all-to-all size within this factor of a phase's send buffer is "the same bytes"


@dataclass(frozen=True)
class EpComm:
    """Communication of one gang, measured in its timed pass (per step; shares are fractions)."""

    time_share: float | None  # (dispatch + combine) time / step time
    energy_share: float | None  # measured dispatch + combine energy / window energy, per step
    dispatch_energy_share: float | None  # the dispatch's part of it alone (a lower bound on `energy_share`)
    dispatch_bandwidth_fraction: float | None  # dispatch busbw / raw all-to-all busbw at the same size
    dispatch_bytes_per_rank: float  # what each rank sends to the other ranks per step
    bytes_per_token: float  # dispatch + combine bytes sent (all ranks) per token of the global batch


@dataclass(frozen=True)
class EpPoint:
    """One MoE task at expert-parallel degree `degree`, against its `d = 1` twin when there is one."""

    stats: TaskStats
    degree: int
    baseline: TaskStats | None
    speedup: Estimate | None
    scaling_loss: Estimate | None
    energy_ratio: Estimate | None
    comm: EpComm | None  # None: no measured phases (d = 1, or not measured)


def config_key(s: TaskStats) -> tuple[object, ...]:
    """What stays fixed while the degree varies: the MoE's shape and every setting but the degree."""
    spec = s.spec
    return (spec.workload, spec.impl, spec.dtype, spec.batch_size, spec.device, spec.load, spec.zipf_s, spec.compile,
            spec.cuda_graphs, spec.train_epochs, tuple(sorted(dict(spec.model).items())),
            # issue 25: an llm MoE's points differ by phase, lengths, path and family too (constant for mlp)
            spec.architecture, spec.phase, spec.prompt_len, spec.gen_tokens, spec.path)


def is_gang_record(result: TaskResult) -> bool:
    """Whether `result` measured its degree: degree 1, or a gang of that many ranks."""
    return result.spec.expert_parallel == 1 or result.world_size == result.spec.expert_parallel


def raw_at(points: Sequence[AllToAllPoint], crossing_bytes_per_rank: float, world_size: int) -> AllToAllPoint | None:
    """The raw all-to-all measured at the same size as a phase that sent `crossing_bytes_per_rank`
    to other ranks: the measured size nearest its send buffer, if within `SAME_SIZE_FACTOR`.

    A raw call's `bytes_per_rank` is its whole send buffer, the chunk a rank keeps included; a
    phase's `bytes_sent` counts only what crosses to other ranks, (n − 1)/n of its send buffer
    with even routing. The raw sizes are the task's own average dispatch and combine buffers, so
    routing noise is all that separates them; a size further off is no size measured (None).
    """
    if world_size < 2 or crossing_bytes_per_rank <= 0:
        return None
    send = crossing_bytes_per_rank * world_size / (world_size - 1)
    sized = [p for p in points if p.bytes_per_rank > 0]
    if not sized:
        return None
    near = min(sized, key=lambda p: abs(math.log(p.bytes_per_rank / send)))
    return near if abs(math.log(near.bytes_per_rank / send)) <= math.log(SAME_SIZE_FACTOR) else None


def _window_j_per_step(result: TaskResult) -> float | None:
    """Energy per step over the windows (all ranks' GPUs), None unless every window has energy."""
    if result.energy_source is None or not result.windows or result.spec.batch_size <= 0:
        return None
    if any(w.energy_j is None for w in result.windows):
        return None
    steps = sum(w.inferences for w in result.windows) / result.spec.batch_size
    joules = sum(w.energy_j or 0.0 for w in result.windows)
    return joules / steps if steps > 0 and joules > 0 else None


def comm_of(result: TaskResult) -> EpComm | None:
    """The gang's measured communication, None without measured dispatch and combine phases."""
    phases: dict[str, PhaseStat] = {p.name: p for p in result.phases}
    n = result.world_size
    if n < 2 or any(name not in phases for name in COMM_PHASES):
        return None
    step_s = sum(p.time_s for p in result.phases)
    comm = [phases[name] for name in COMM_PHASES]
    raws = [raw_at(result.alltoall, p.bytes_sent / n, n) for p in comm]
    # a phase's own measured energy where the node side has one, else its raw exchange's at its size
    energies = [p.energy_j if p.energy_j is not None else (raw.energy_j if raw is not None else None)
                for p, raw in zip(comm, raws)]
    window_j = _window_j_per_step(result)
    dispatch, raw_dispatch = comm[0], raws[0]
    crossing = dispatch.bytes_sent / n
    fraction = ((crossing / dispatch.time_s) / raw_dispatch.busbw_bytes_per_s
                if raw_dispatch is not None and raw_dispatch.busbw_bytes_per_s > 0 and dispatch.time_s > 0 else None)
    return EpComm(
        time_share=sum(p.time_s for p in comm) / step_s if step_s > 0 else None,
        energy_share=(sum(e for e in energies if e is not None) / window_j
                      if window_j and all(e is not None for e in energies) else None),
        dispatch_energy_share=energies[0] / window_j if window_j and energies[0] is not None else None,
        dispatch_bandwidth_fraction=fraction, dispatch_bytes_per_rank=crossing,
        bytes_per_token=sum(p.bytes_sent for p in comm) / result.spec.batch_size)


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


def ep_left_out(stats: Sequence[TaskStats]) -> list[TaskStats]:
    """MoE tasks at a degree above 1 whose record is no gang's measurement (left out of the points)."""
    return [s for s in stats if s.spec.kind == "moe" and not is_gang_record(s.result)]


def ep_points(stats: Sequence[TaskStats]) -> list[EpPoint]:
    """Per MoE configuration with a task at a degree above 1: every degree's task (1 included),
    the ones above 1 against the configuration at degree 1 when it ran (with several such
    tasks, one on the same kind of GPU is preferred). Ordered by configuration, then degree."""
    groups: dict[tuple[object, ...], list[TaskStats]] = defaultdict(list)
    for s in stats:
        if s.spec.kind == "moe" and is_gang_record(s.result):
            groups[config_key(s)].append(s)
    out: list[EpPoint] = []
    for members in groups.values():
        if all(m.spec.expert_parallel == 1 for m in members):
            continue
        bases = [m for m in members if m.spec.expert_parallel == 1]
        for m in sorted(members, key=lambda m: m.spec.expert_parallel):
            d = m.spec.expert_parallel
            if d == 1:
                out.append(EpPoint(m, 1, None, None, None, None, None))
                continue
            base = next((b for b in bases if _gpu_names(b) == _gpu_names(m)), bases[0] if bases else None)
            speedup = _ratio(m.inferences_per_s, base.inferences_per_s) if base is not None else None
            energy = _ratio(m.inferences_per_j, base.inferences_per_j) if base is not None else None
            out.append(EpPoint(m, d, base, speedup, _loss(speedup, d), energy, comm_of(m.result)))
    return out
