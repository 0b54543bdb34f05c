"""Expand a sweep into matched pairs: one MoE task and its dense twin(s), sharing a pair id.

For every model × impl × dtype × batch size × compile × ... × expert-parallel degree there is
one pair: the MoE task (`kind="moe"`) and one dense twin per match mode (`kind="dense"`,
`impl="dense"`, `match="total"`/`"active"`/`"seed"`), sized by `match_dense`.

Dense twins are *not* shared between the MoE implementations of one shape: every pair
measures its own twin, interleaved with its MoE (A B A B) on the same GPU, so each
MoE/dense ratio is taken under one GPU's conditions (GPUs of one model differ by a few
percent in power) and drift cancels within the pair. It costs extra dense runs (with three
impls and one match mode, 6 tasks instead of 4), and buys clean ratios, one simple join key
(`pair_id`) for the report, and repeated dense runs of one shape that give a noise floor.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from moecluster.agents.records import TaskSpec
from moecluster.agents.workloads.mlp.shapes import ShapeError, match_dense
from .estimate import task_estimate_s
from .loader import SweepError
from .schema import AXES, SweepFile

DTYPE_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
GRAPH_SAFE_IMPLS = ("grouped",)


@dataclass(frozen=True)
class PairPlan:
    """One scheduling unit: the tasks of a pair, run alternately on the same GPU(s).

    `tasks` lists the dense twin(s) first, then the MoE task (A B A B, dense first).
    `gpus` is the gang size when the pair runs on GPUs: the MoE task's expert-parallel
    degree (dense twins use the gang's first GPU).
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
        return next(t for t in self.tasks if t.kind == "moe")


@dataclass(frozen=True)
class Plan:
    """All pairs of a sweep, and the grid points skipped as impossible (with why)."""

    pairs: tuple[PairPlan, ...]
    skipped: tuple[str, ...] = ()

    @property
    def tasks(self) -> list[TaskSpec]:
        return [t for p in self.pairs for t in p.tasks]


def _pair_id(model: str, point: dict[str, object], varying: list[str]) -> str:
    parts = [model, str(point["impl"]), DTYPE_SHORT[str(point["dtype"])], f"b{point['batch_size']}"]
    labels = {
        "compile": lambda v: "compiled" if v else "eager",
        "cuda_graphs": lambda v: "graphs" if v else "nographs",
        "load": str,
        "zipf_s": lambda v: f"zipf{v:g}",
        "train_epochs": lambda v: f"train{v}",
        "seed": lambda v: f"seed{v}",
        "expert_parallel": lambda v: f"ep{v}",
        "accelerator_type": lambda v: str(v or "any"),
    }
    parts += [labels[a](point[a]) for a in varying if a in labels]
    return "-".join(parts)


def expand(sweep: SweepFile, run_id: str = "local") -> Plan:
    """Every pair of the sweep, in file order (models outermost, then the axes in `AXES` order)."""
    varying = sweep.varying()
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
        for values in itertools.product(*(getattr(sweep, a) for a in AXES)):
            point = dict(zip(AXES, values))
            pair_id = _pair_id(entry.label, point, varying)
            if point["cuda_graphs"] and point["impl"] not in GRAPH_SAFE_IMPLS:
                skipped.append(f"{pair_id}: cuda_graphs needs impl {' or '.join(GRAPH_SAFE_IMPLS)}"
                               f" ({point['impl']} syncs with the host)")
                continue
            common = dict(pair_id=pair_id, preset=preset, run_id=run_id, workload=sweep.workload,
                          dtype=point["dtype"], batch_size=point["batch_size"], device=sweep.device,
                          duration_s=sweep.duration_s, warmup_s=sweep.warmup_s, repeats=sweep.repeats,
                          compile=point["compile"], cuda_graphs=point["cuda_graphs"], load=point["load"],
                          zipf_s=point["zipf_s"], train_epochs=point["train_epochs"], seed=point["seed"],
                          meter=sweep.meter, sample_power=sweep.sample_power)
            tasks = [TaskSpec(task_id=f"{pair_id}-dense-{mode}", kind="dense", impl="dense", match=mode,
                              model=dense.as_model(), expert_parallel=1, **common)  # type: ignore[arg-type]
                     for mode, dense in twins.items()]
            tasks.append(TaskSpec(task_id=f"{pair_id}-moe", kind="moe", impl=point["impl"],  # type: ignore[arg-type]
                                  model=moe_shape.as_model(), expert_parallel=point["expert_parallel"],
                                  **common))  # type: ignore[arg-type]
            params = [d.params() for d in twins.values()] + [moe_shape.params()]
            pairs.append(PairPlan(
                pair_id=pair_id, model=entry.label, tasks=tuple(tasks),
                params_total=tuple(p.total for p in params),
                params_active=tuple(p.active_per_token for p in params),
                estimated_s=tuple(task_estimate_s(t, p.total) for t, p in zip(tasks, params)),
                gpus=int(point["expert_parallel"]),  # type: ignore[call-overload]
                accelerator_type=point["accelerator_type"],  # type: ignore[arg-type]
                placement_strategy=sweep.placement_strategy))
    if not pairs:
        raise SweepError(f"sweep {sweep.name!r} expands to no task: " + "; ".join(skipped[:3]))
    return Plan(pairs=tuple(pairs), skipped=tuple(skipped))
