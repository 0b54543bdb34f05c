"""Short human names and reading order for tasks and pairs in the report's tables and figures.

Tables are grouped by *setting* (dtype, batch, EP degree, device and any non-default knob)
or, for pairs, by *series* (the MoE implementation and how its twin was matched, in one
setting); inside a group, rows run from the smallest model to the largest, dense first.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from moecluster.spec.records import TaskSpec
from moecluster.report.aggregate import Aggregate, PairRatio, TaskStats
from moecluster.report.aggregate.breakeven import series_key
from moecluster.report.aggregate.tasks import custom_name
from moecluster.workloads.registry import workload

MATCH_WORDS = {"total": "total parameters", "active": "active parameters", "seed": "the seed's width"}


def setting(spec: TaskSpec) -> str:
    parts = [spec.dtype, f"batch {spec.batch_size}", f"EP {spec.expert_parallel}", spec.device]
    if spec.load != "router":
        parts.append(f"load {spec.load} (s={spec.zipf_s:g})" if spec.load == "zipf" else f"load {spec.load}")
    if spec.train_epochs:
        parts.append(f"trained {spec.train_epochs} epochs")
    if spec.compile:
        parts.append("torch.compile")
    if spec.cuda_graphs:
        parts.append("CUDA graphs")
    plugin = workload(spec.workload)
    parts = plugin.setting_parts(spec, parts)
    if plugin.setting_prefix:
        parts.insert(0, plugin.setting_prefix)
    return " · ".join(parts)


def model_name(spec: TaskSpec) -> str:
    """The preset's name, else the name the sweep gave the model, else the shape in brief (E8 k2 h256×3
    for an MoE, w4096×5 for a dense MLP)."""
    if spec.preset:
        return spec.preset
    named = custom_name(spec)
    if named:
        return named
    return workload(spec.workload).model_label(spec) or spec.pair_id


def setting_order(spec: TaskSpec) -> tuple[object, ...]:
    """The settings in reading order, numbers as numbers (batch 4 before batch 16, p512 before p2048)."""
    return (workload(spec.workload).report_rank, spec.workload, spec.dtype, spec.phase or "", spec.batch_size,
            spec.prompt_len, spec.gen_tokens, spec.expert_parallel, spec.path or "", spec.device, spec.load,
            spec.zipf_s, spec.train_epochs, spec.compile, str(spec.cuda_graphs))


def series_title(p: PairRatio) -> str:
    k = series_key(p)
    on = f" · {k.gpu}" if k.gpu else ""
    return f"MoE {k.impl} vs dense matched by {MATCH_WORDS.get(k.match, k.match)} · {setting(p.moe.spec)}{on}"


def _pair_sizes(agg: Aggregate) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for s in agg.tasks:
        if s.total_params and (s.spec.kind == "moe" or s.spec.pair_id not in sizes):
            sizes[s.spec.pair_id] = s.total_params
    return sizes


def _clashes(names: dict[str, str], agg: Aggregate) -> set[str]:
    """Task ids whose name another task of the same setting shares."""
    seen: dict[tuple[str, str], list[str]] = defaultdict(list)
    for s in agg.tasks:
        seen[(setting(s.spec), names[s.task_id])].append(s.task_id)
    return {tid for ids in seen.values() if len(ids) > 1 for tid in ids}


def task_names(agg: Aggregate) -> dict[str, str]:
    """task_id -> a short name that tells the tasks of one setting apart: "small moe/sorted",
    "small dense/total". Where two would read alike, a dense twin says whose twin it is ("small
    dense/total (twin of sorted)"), an MoE task what it is compared with ("small moe/sorted (vs
    dense/active)"), and, as a last resort, the pair is named. The seed is named where the run has
    several."""
    seeds = len({s.spec.seed for s in agg.tasks}) > 1
    members: dict[str, dict[str, set[str]]] = defaultdict(lambda: {"moe": set(), "dense": set()})
    for s in agg.tasks:
        members[s.spec.pair_id][s.spec.kind].add(s.spec.impl if s.spec.kind == "moe" else s.spec.label())
    names = {s.task_id: f"{model_name(s.spec)} {s.spec.label()}" + (f" seed {s.spec.seed}" if seeds else "")
             for s in agg.tasks}
    clash = _clashes(names, agg)
    for s in agg.tasks:
        if s.task_id in clash:
            if s.spec.kind == "dense":
                others = sorted(members[s.spec.pair_id]["moe"])
                names[s.task_id] += f" (twin of {', '.join(others)})" if others else ""
            else:
                others = sorted(members[s.spec.pair_id]["dense"])
                names[s.task_id] += f" (vs {', '.join(others)})" if others else ""
    for tid in _clashes(names, agg):
        names[tid] += f" [{next(s.spec.pair_id for s in agg.tasks if s.task_id == tid)}]"
    return names


def task_order(agg: Aggregate) -> Callable[[TaskStats], tuple]:
    sizes = _pair_sizes(agg)

    def key(s: TaskStats) -> tuple:
        return (setting_order(s.spec), setting(s.spec), sizes.get(s.spec.pair_id, s.total_params or 0), s.spec.pair_id,
                s.spec.kind != "dense", str(s.spec.match), s.spec.impl)
    return key


def pair_order(p: PairRatio) -> tuple[object, ...]:
    """Pairs by setting (numbers as numbers), series, then size, then seed."""
    return (setting_order(p.moe.spec), series_key(p).sort_key(), p.moe.total_params or 0, p.moe.spec.seed,
            p.pair_id)
