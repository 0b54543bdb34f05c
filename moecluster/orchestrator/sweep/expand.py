"""Expand a sweep into matched pairs: one MoE task and its dense twin(s), sharing a pair id.

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

With `replicates: N` above 1 every pair is planned N times, as independent pairs: pair id and task
ids end in `-r1` ... `-rN` (`replicate_id`), each replicate runs in its own process (a fresh build,
form choice and idle reading), every other replicate starts from the other side, and the plan lists
replicate 1 of every pair, then replicate 2 of every pair, ... (`queue_order` keeps that), so a
pair's replicates run apart in time and on whichever GPU is free then, and slow drift spreads over
all pairs instead of falling between one pair's replicates. With one replicate the ids have no
suffix, as in stores written before replicates existed.
"""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from moecluster.spec.records import TaskSpec
from moecluster.spec.mlp.shapes import ShapeError, match_dense
from .estimate import task_estimate_s
from .loader import SweepError
from .memory import check_task_memory
from .schema import AXES, SweepFile

DTYPE_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
GRAPH_SAFE_IMPLS = ("grouped",)


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


def _graph_problem(point: dict[str, Any]) -> str | None:
    """Why a grid point that *requires* CUDA graphs cannot run (None when it can)."""
    if point["cuda_graphs"] is True and point["impl"] not in GRAPH_SAFE_IMPLS:
        return (f"cuda_graphs: true needs impl {' or '.join(GRAPH_SAFE_IMPLS)}"
                f" ({point['impl']} syncs with the host); leave cuda_graphs unset to capture where possible")
    return None


def expand(sweep: SweepFile, run_id: str = "local") -> Plan:
    """Every pair of the sweep, in file order (models outermost, then the axes in `AXES` order;
    an LLM sweep's pairs come from `llm.expand_llm`), replicate by replicate (`with_replicates`).

    With `share_twins`, the `impl` axis folds into the pair: one pair per remaining grid
    point, holding the dense twins and one MoE task per implementation.
    """
    if sweep.workload == "llm":
        from .llm import expand_llm  # imports this module

        return with_replicates(expand_llm(sweep, run_id), sweep.replicates)
    if sweep.workload == "serve":
        from .serve import expand_serve  # imports this module

        return with_replicates(expand_serve(sweep, run_id), sweep.replicates)
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
            for task, p in zip(tasks, params):
                check_task_memory(task, p.total)
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
    return with_replicates(Plan(pairs=tuple(pairs), skipped=tuple(skipped)), sweep.replicates)
