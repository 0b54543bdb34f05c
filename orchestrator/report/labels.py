"""Short human names and reading order for tasks and pairs in the report's tables and figures.

Tables are grouped by *setting* (dtype, batch, EP degree, device and any non-default knob)
or, for pairs, by *series* (the MoE implementation and how its twin was matched, in one
setting); inside a group, rows run from the smallest model to the largest, dense first.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable

from moecluster.agents.records import TaskSpec
from moecluster.orchestrator.aggregate import Aggregate, PairRatio, TaskStats
from moecluster.orchestrator.aggregate.breakeven import series_key

MATCH_WORDS = {"total": "total parameters", "active": "active parameters", "seed": "the seed's width"}


def setting(spec: TaskSpec) -> str:
    parts = [spec.dtype, f"batch {spec.batch_size}", f"EP {spec.expert_parallel}", spec.device]
    if spec.load != "router":
        parts.append(f"load {spec.load} (s={spec.zipf_s:g})" if spec.load == "zipf" else f"load {spec.load}")
    if spec.compile:
        parts.append("torch.compile")
    if spec.cuda_graphs:
        parts.append("CUDA graphs")
    if spec.workload != "mlp":
        parts.insert(0, spec.workload)
    return " · ".join(parts)


def model_name(spec: TaskSpec) -> str:
    """The preset's name, else the shape in brief (E8 k2 h256×3 for an MoE, w4096×5 for a dense MLP)."""
    if spec.preset:
        return spec.preset
    m = dict(spec.model)
    if spec.kind == "moe" and {"num_experts", "top_k", "expert_hidden_dim", "expert_num_layers"} <= set(m):
        return f"E{m['num_experts']} k{m['top_k']} h{m['expert_hidden_dim']}×{m['expert_num_layers']}"
    if {"hidden_dim", "num_layers"} <= set(m):
        return f"w{m['hidden_dim']}×{m['num_layers']}"
    return spec.pair_id


def series_title(p: PairRatio) -> str:
    k = series_key(p)
    return (f"MoE {k.impl} vs dense matched by {MATCH_WORDS.get(k.match, k.match)} · {setting(p.moe.spec)}")


def _pair_sizes(agg: Aggregate) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for s in agg.tasks:
        if s.total_params and (s.spec.kind == "moe" or s.spec.pair_id not in sizes):
            sizes[s.spec.pair_id] = s.total_params
    return sizes


def task_names(agg: Aggregate) -> dict[str, str]:
    """task_id -> "small · MoE sorted" / "small · dense/total (twin of sorted)"."""
    impls: dict[str, list[str]] = defaultdict(list)
    for s in agg.tasks:
        if s.spec.kind == "moe":
            impls[s.spec.pair_id].append(s.spec.impl)
    out = {}
    for s in agg.tasks:
        name = model_name(s.spec)
        if s.spec.kind == "moe":
            out[s.task_id] = f"{name} · MoE {s.spec.impl}"
        else:
            twins = sorted(set(impls.get(s.spec.pair_id, [])))
            of = f" (twin of {', '.join(twins)})" if twins else ""
            out[s.task_id] = f"{name} · dense/{s.spec.match}{of}"
    return out


def task_order(agg: Aggregate) -> Callable[[TaskStats], tuple]:
    sizes = _pair_sizes(agg)

    def key(s: TaskStats) -> tuple:
        return (setting(s.spec), sizes.get(s.spec.pair_id, s.total_params or 0), s.spec.pair_id,
                s.spec.kind != "dense", str(s.spec.match), s.spec.impl)
    return key


def pair_order(p: PairRatio) -> tuple:
    return (series_key(p), p.moe.total_params or 0, p.pair_id)
