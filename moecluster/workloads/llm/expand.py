"""Expand an LLM sweep (`workload: llm`) into matched pairs: one MoE task and its dense twins.

For every model × impl × dtype × batch size × phase × prompt length × generated tokens × path ×
... (of each of the sweep's `grids`, where it has several) there is one pair: the MoE task and one
dense twin per match mode (`llm.twins.match_dense`: the MoE's dense sibling family with its FFN
width sized to the MoE's total or active parameters), all measuring the same phase of the same
batch of prompts, alternately on one GPU.
A prefill reads no generated tokens, so the `gen_tokens` axis does not multiply prefill pairs.
With `share_twins`, the implementations of one grid point share one pair, as for the MLPs.
"""
from __future__ import annotations

import itertools
from typing import Any

from moecluster.spec.records import TaskSpec
from moecluster.spec.llm.shapes import LlmShape
from moecluster.spec.llm.twins import match_dense
from moecluster.spec.mlp.shapes import ShapeError

from moecluster.head.sweep.error import SweepError
from moecluster.head.sweep.estimate import task_estimate_s
from moecluster.head.sweep.pairs import DTYPE_SHORT, PairPlan, Plan
from moecluster.head.sweep.schema import SweepFile


def llm_pair_id(model: str, point: dict[str, Any], varying: list[str], with_impl: bool = True) -> str:
    """`mixtral-8x7b-8l-grouped-bf16-b64-decode-p512-g128`, plus the varying axes that are not in it."""
    parts = [model] + ([str(point["impl"])] if with_impl else [])
    parts += [DTYPE_SHORT[str(point["dtype"])], f"b{point['batch_size']}", str(point["phase"]),
              f"p{point['prompt_len']}"]
    if point["phase"] == "decode":
        parts.append(f"g{point['gen_tokens']}")
    if point["path"] != "fast" or "path" in varying:
        parts.append(str(point["path"]))
    labels = {"cuda_graphs": lambda v: {None: "graphsauto", True: "graphs", False: "nographs"}[v],
              "seed": lambda v: f"seed{v}", "accelerator_type": lambda v: str(v or "any"),
              "expert_parallel": lambda v: f"ep{v}"}  # issue 25: the transformer MoE's EP degree
    parts += [labels[a](point[a]) for a in varying if a in labels]
    return "-".join(parts)


def _problem(point: dict[str, Any]) -> str | None:
    """Why a grid point cannot run (None when it can)."""
    if point["cuda_graphs"] is True and point["path"] == "reference":
        return "cuda_graphs: true is impossible on path reference (transformers' generate runs eagerly)"
    # issue 25: the transformer MoE runs expert parallel on the fast path only, eagerly
    ep = point["expert_parallel"]
    if ep > 1 and point["path"] == "reference":
        return f"expert_parallel {ep} needs path fast (transformers' generate runs on one GPU)"
    if ep > 1 and point["cuda_graphs"] is True:
        return f"cuda_graphs: true is impossible with expert_parallel {ep} (the step runs eagerly)"
    return None


def _twins(index: int, label: str, moe: LlmShape, modes: list[str]) -> dict[str, LlmShape]:
    twins = {}
    for mode in modes:
        try:
            twins[mode] = match_dense(moe, mode)
        except ShapeError as exc:
            raise SweepError(f"models[{index}] ({label}): no dense twin for match {mode}: {exc}") from None
    return twins


def expand_llm(sweep: SweepFile, run_id: str = "local") -> Plan:
    """Every pair of an LLM sweep, in file order (models outermost, then `LLM_AXES`)."""
    varying = sweep.varying()
    axes = [a for a in sweep.grid_axes() if not (sweep.share_twins and a == "impl")]
    pairs: list[PairPlan] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for index, entry in enumerate(sweep.models):
        moe = entry.llm_shape()
        twins = _twins(index, entry.label, moe, list(sweep.match))
        preset = entry.preset if entry.is_plain_llm_preset else None
        points_of = ((grid, values) for grid in sweep.llm_grids()
                     for values in itertools.product(*(grid[a] for a in axes)))
        for grid, values in points_of:
            impls_per_pair = list(grid["impl"]) if sweep.share_twins else [None]
            base: dict[str, Any] = dict(zip(axes, values))
            if base["phase"] == "prefill":
                base["gen_tokens"] = 0
            points = [dict(base, impl=impl) if impl is not None else base for impl in impls_per_pair]
            pair_id = llm_pair_id(entry.label, points[0], varying, with_impl=not sweep.share_twins)
            if pair_id in seen:  # a prefill point repeated for every gen_tokens value
                continue
            seen.add(pair_id)
            problem = _problem(points[0])
            if problem:
                skipped.append(f"{pair_id}: {problem}")
                continue
            pairs.append(_pair(sweep, run_id, (entry.label, preset, entry.given_name(preset is not None)), moe, twins,
                               points, pair_id, len(pairs)))
    if not pairs:
        raise SweepError(f"sweep {sweep.name!r} expands to no task: " + "; ".join(skipped[:3]))
    return Plan(pairs=tuple(pairs), skipped=tuple(skipped))


def _pair(sweep: SweepFile, run_id: str, names: tuple[str, str | None, str | None], moe: LlmShape,
          twins: dict[str, LlmShape], points: list[dict[str, Any]], pair_id: str, index: int) -> PairPlan:
    """One pair's tasks; `names`: the model's label in ids, its plain preset, the name tasks record."""
    label, preset, model_name = names
    point = points[0]
    common: dict[str, Any] = dict(
        pair_id=pair_id, preset=preset, model_name=model_name, run_id=run_id, workload=sweep.workload,
        dtype=point["dtype"],
        batch_size=point["batch_size"], device=sweep.device, duration_s=sweep.duration_s, warmup_s=sweep.warmup_s,
        repeats=sweep.repeats, cuda_graphs=point["cuda_graphs"], seed=point["seed"], meter=sweep.meter,
        sample_power=sweep.sample_power, reverse_order=index % 2 == 1, phase=point["phase"],
        prompt_len=point["prompt_len"], gen_tokens=point["gen_tokens"], path=point["path"])
    tasks = [TaskSpec(task_id=f"{pair_id}-dense-{mode}", kind="dense", impl="dense", match=mode,
                      model=dense.as_model(), architecture=dense.architecture, **common)
             for mode, dense in twins.items()]
    for moe_point in points:
        suffix = f"-{moe_point['impl']}" if sweep.share_twins else ""
        tasks.append(TaskSpec(task_id=f"{pair_id}-moe{suffix}", kind="moe", impl=moe_point["impl"],
                              model=moe.as_model(), architecture=moe.architecture,
                              expert_parallel=moe_point["expert_parallel"], **common))  # issue 25: EP of the MoE
    params = [d.params() for d in twins.values()] + [moe.params()] * len(points)
    return PairPlan(pair_id=pair_id, model=label, tasks=tuple(tasks), params_total=tuple(p.total for p in params),
                    params_active=tuple(p.active_per_token for p in params),
                    estimated_s=tuple(task_estimate_s(t, p.total) for t, p in zip(tasks, params)),
                    gpus=int(point["expert_parallel"]),  # issue 25: an EP pair runs on a gang
                    accelerator_type=point["accelerator_type"], placement_strategy=sweep.placement_strategy)
