"""Expand an MLP sweep (`workload: mlp`) into matched pairs: one MoE task and its dense twin(s), sharing a pair id.

For every model × impl × dtype × batch size × compile × ... × expert-parallel degree there is
one pair: the MoE task (`kind="moe"`) and one dense twin per match mode (`kind="dense"`,
`impl="dense"`, `match="total"`/`"active"`/`"seed"`), sized by `match_dense`.

By default dense twins are *not* shared between the MoE implementations of one shape: every
pair measures its own twin, interleaved with its MoE on the same GPU, so each MoE/dense ratio
is taken under one GPU's conditions (GPUs of one model differ by a few percent in power). With
`share_twins: true` one pair holds the twins and one MoE task per implementation, all run in
one counterbalanced sequence on one GPU: the same property at 5 tasks instead of 9 for three
implementations and two match modes.

Pairs alternate which side starts (`TaskSpec.reverse_order` on every other pair), so an order
effect that the counterbalanced rounds leave cancels across the sweep too.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from moecluster.head.sweep.error import SweepError
from moecluster.head.sweep.estimate import task_estimate_s
from moecluster.head.sweep.pairs import DTYPE_SHORT, PairPlan, Plan
from moecluster.head.sweep.schema import AXES, SweepFile
from moecluster.spec.mlp.shapes import ShapeError, match_dense
from moecluster.spec.records import TaskSpec

GRAPH_SAFE_IMPLS = ("grouped",)


def _pair_id(model: str, point: dict[str, Any], varying: list[str], with_impl: bool = True) -> str:
    parts = [model] + ([str(point["impl"])] if with_impl else [])
    parts += [DTYPE_SHORT[str(point["dtype"])], f"b{point['batch_size']}"]
    labels: dict[str, Callable[[Any], str]] = {
        "compile": lambda v: "compiled" if v else "eager",
        "cuda_graphs": lambda v: {None: "graphsauto", True: "graphs", False: "nographs"}[v],
        "load": str,
        "zipf_s": lambda v: f"zipf{v:g}",
        "train_epochs": lambda v: f"train{v}",
        "seed": lambda v: f"seed{v}",
        "expert_parallel": lambda v: f"ep{v}",
        "accelerator_type": lambda v: str(v or "any"),
    }
    parts += [labels[a](point[a]) for a in varying if a in labels]
    return "-".join(parts)


def _graph_problem(point: dict[str, Any]) -> str | None:
    """Why a grid point that *requires* CUDA graphs cannot run (None when it can)."""
    if point["cuda_graphs"] is True and point["impl"] not in GRAPH_SAFE_IMPLS:
        return (f"cuda_graphs: true needs impl {' or '.join(GRAPH_SAFE_IMPLS)}"
                f" ({point['impl']} syncs with the host); leave cuda_graphs unset to capture where possible")
    return None


def expand_mlp(sweep: SweepFile, run_id: str = "local") -> Plan:
    """Every pair of an MLP sweep, in file order (models outermost, then the axes in `AXES` order).

    With `share_twins`, the `impl` axis folds into the pair: one pair per remaining grid
    point, holding the dense twins and one MoE task per implementation.
    """
    varying = sweep.varying()
    axes = [a for a in AXES if not (sweep.share_twins and a == "impl")]
    impls_per_pair = list(sweep.impl) if sweep.share_twins else [None]
    pairs: list[PairPlan] = []
    skipped: list[str] = []
    for index, entry in enumerate(sweep.models):
        moe_shape = entry.shape()
        twins = {}
        for mode in sweep.match:
            try:
                twins[mode] = match_dense(moe_shape, mode)
            except ShapeError as exc:
                raise SweepError(f"models[{index}] ({entry.label}): no dense twin for match {mode}: {exc}") from None
        preset = entry.preset if entry.is_plain_preset else None
        for values in itertools.product(*(getattr(sweep, a) for a in axes)):
            base: dict[str, Any] = dict(zip(axes, values))
            points = [dict(base, impl=impl) if impl is not None else base for impl in impls_per_pair]
            pair_id = _pair_id(entry.label, points[0], varying, with_impl=not sweep.share_twins)
            runnable = []
            for point in points:
                problem = _graph_problem(point)
                if problem:
                    skipped.append(f"{pair_id}{'' if not sweep.share_twins else '/' + str(point['impl'])}: {problem}")
                else:
                    runnable.append(point)
            if not runnable:
                continue
            point = runnable[0]
            common: dict[str, Any] = dict(pair_id=pair_id, preset=preset, run_id=run_id,
                          model_name=entry.given_name(preset is not None), workload=sweep.workload,
                          dtype=point["dtype"], batch_size=point["batch_size"], device=sweep.device,
                          duration_s=sweep.duration_s, warmup_s=sweep.warmup_s, repeats=sweep.repeats,
                          compile=point["compile"], cuda_graphs=point["cuda_graphs"], load=point["load"],
                          zipf_s=point["zipf_s"], train_epochs=point["train_epochs"], seed=point["seed"],
                          meter=sweep.meter, sample_power=sweep.sample_power, reverse_order=len(pairs) % 2 == 1)
            tasks = [TaskSpec(task_id=f"{pair_id}-dense-{mode}", kind="dense", impl="dense", match=mode,
                              model=dense.as_model(), expert_parallel=1, **common)
                     for mode, dense in twins.items()]
            for moe_point in runnable:
                suffix = f"-{moe_point['impl']}" if sweep.share_twins else ""
                tasks.append(TaskSpec(task_id=f"{pair_id}-moe{suffix}", kind="moe", impl=moe_point["impl"],
                                      model=moe_shape.as_model(), expert_parallel=moe_point["expert_parallel"],
                                      **common))
            params = [d.params() for d in twins.values()] + [moe_shape.params()] * len(runnable)
            pairs.append(PairPlan(
                pair_id=pair_id, model=entry.label, tasks=tuple(tasks),
                params_total=tuple(p.total for p in params),
                params_active=tuple(p.active_per_token for p in params),
                estimated_s=tuple(task_estimate_s(t, p.total) for t, p in zip(tasks, params)),
                gpus=int(point["expert_parallel"]),
                accelerator_type=point["accelerator_type"],
                placement_strategy=sweep.placement_strategy))
    if not pairs:
        raise SweepError(f"sweep {sweep.name!r} expands to no task: " + "; ".join(skipped[:3]))
    return Plan(pairs=tuple(pairs), skipped=tuple(skipped))
