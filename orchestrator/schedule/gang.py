"""Gangs: a pair whose MoE task needs several GPUs (expert parallelism) runs as one rank per
GPU, the ranks held together by a placement group (`STRICT_PACK` by default: one node).

Each rank gets torchrun's environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
`LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`; the master is rank 0's node), so the
expert-parallel runner can `init_process_group("env://")`. Rank 0 runs the whole pair (the
dense twins use its GPU); the other ranks run the MoE task only. Their results are merged
into rank 0's: the gang's GPUs, and per window the energy and power summed over ranks
(unavailable if any rank lacks it); inferences are rank 0's (the runner reports the gang's).
"""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, Sequence

from moecluster.agents.records import TaskResult, TaskSpec, Window

PORT_RANGE = (20000, 40000)


def rank_env(rank: int, world: int, bundle_nodes: Sequence[str], master_addr: str, port: int) -> dict[str, str]:
    local = [i for i, n in enumerate(bundle_nodes) if n == bundle_nodes[rank]]
    return {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(local.index(rank)),
            "LOCAL_WORLD_SIZE": str(len(local)), "MASTER_ADDR": master_addr, "MASTER_PORT": str(port)}


def master_port(pair_id: str) -> int:
    return random.Random(pair_id).randrange(*PORT_RANGE)


def bundle_nodes(pg: Any) -> list[str]:
    """The node id of every bundle of a ready placement group, in bundle order."""
    from ray.util.placement_group import placement_group_table

    table = placement_group_table(pg)["bundles_to_node_id"]
    return [table[i] for i in sorted(table)]


def rank_specs(specs: Sequence[TaskSpec], rank: int) -> list[TaskSpec]:
    return list(specs) if rank == 0 else [s for s in specs if s.kind == "moe"]


def _sum(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]


def merge_ranks(per_rank: Sequence[Sequence[TaskResult]]) -> list[TaskResult]:
    """Rank 0's results, with every other rank's result of the same task folded in."""
    merged = []
    for head in per_rank[0]:
        others = [r for rank in per_rank[1:] for r in rank if r.spec.task_id == head.spec.task_id]
        if not others:
            merged.append(head)
            continue
        failed = next((r for r in [head, *others] if r.status != "ok"), None)
        if failed is not None:
            merged.append(replace(head, status="failed", error=failed.error,
                                  windows=(), gpus=head.gpus + tuple(g for r in others for g in r.gpus)))
            continue
        windows = []
        for i, w in enumerate(head.windows):
            ws = [w] + [r.windows[i] for r in others if i < len(r.windows)]
            complete = len(ws) == len(others) + 1
            windows.append(Window(
                inferences=w.inferences, duration_s=w.duration_s,
                energy_j=_sum([x.energy_j for x in ws]) if complete else None,
                sampled_energy_j=_sum([x.sampled_energy_j for x in ws]) if complete else None,
                avg_power_w=_sum([x.avg_power_w for x in ws]) if complete else None,
                max_power_w=_sum([x.max_power_w for x in ws]) if complete else None))
        lacking = any(w.energy_j is None for w in windows) and head.energy_source is not None
        merged.append(replace(
            head, gpus=head.gpus + tuple(g for r in others for g in r.gpus), windows=tuple(windows),
            energy_source=None if lacking else head.energy_source,
            energy_unavailable_reason="energy missing on some rank of the gang" if lacking
            else head.energy_unavailable_reason,
            idle_power_w=_sum([head.idle_power_w] + [r.idle_power_w for r in others])))
    return merged
