"""A task of a pair, built on one rank of a gang: the MoE expert parallel, the dense twin data parallel.

Both sides of a pair run on the same N GPUs with the same global batch B, so they compare like
with like: the MoE splits its experts over the ranks and exchanges token copies (`exchange`); the
dense twin runs whole on every rank, on B/N rows (or sequences) each, with nothing to exchange in
a forward. An MoE workload runs expert parallel through its own builder (`EXPERT_PARALLEL`): the
MLP's `ep_moe.ExpertParallelMoE`, the transformer MoE's `workloads.llm.expert_parallel` (every
MoE layer's experts split over the ranks, attention data parallel); both share one exchange.

Built in two stages, because a gang must agree before any collective runs:

- `build_local` (no collectives): validates, builds the model with the workload (the MoE whole,
  on the global batch, so its routing, load, accounting and form checks are the one-device
  model's), and checks the split (E and B divisible by N). Each rank may fail here on its own; the gang
  compares notes before going on.
- `share` (collectives): the MoE's weights and inputs are broadcast from rank 0 (ranks built
  them from one seed, but training on a GPU need not be bitwise reproducible), then each rank
  keeps its slice of the experts and its shard of the rows, and the whole model is dropped.

The MoE runs eagerly, in the dispatch form `share` is given (`dispatch`, recorded in `form`):
`ep-hostsync` (the default) reads its split sizes on the host, so it cannot be captured in a CUDA
graph; `ep-static` (fixed-capacity blocks, counts on the device; see `ep_moe`) can be, but the
task runs it eagerly too for now (its capture is shown by `benchmarks/ep_graph_capture.py`). No
`dispatch="measure"` times both eagerly in the gang in interleaved rounds (`choose_dispatch`: the
same rounds of the same steps on every rank, each sample the slowest rank's time) and chooses by
`workloads.race`'s rule (within noise, `ep-hostsync`, the default, first); the record names both
times and the margin (`GangTask.choice`).
`compile` is not applied to the MoE (the record says so). The dense twin
runs in whatever form the workload chose for its B/N rows (a CUDA graph where possible).
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor

from moecluster.spec.records import ChoiceMargin, ParamCounts, TaskSpec
from moecluster.workloads import race
from moecluster.workloads.workload import Prepared, get_workload, torch_dtype
from moecluster.workloads.llm.expert_parallel import expert_parallel as llm_expert_parallel
from moecluster.workloads.mlp.models import MoEMLP
from moecluster.spec.mlp.shapes import MoEShape
from moecluster.workloads.mlp.expert_parallel import (
    DISPATCH_FORMS, HOSTSYNC, PHASES, STATIC, ExpertParallelMoE, experts_per_rank, shard_rows
)
from moecluster.workloads.exchange import ExpertParallelPart, StepMarks
from moecluster.measure.parallel.group import Gang
from moecluster.measure.parallel.roofline import data_parallel_bytes, expert_parallel_bytes

Parallel = Literal["expert", "data"]
MEASURE = "measure"  # `share`'s dispatch: the faster of DISPATCH_FORMS in this gang, by measurement
CHOICE_STEPS = 5  # timed steps per sample of a dispatch form when choosing
# a gang's race: rounds only, no wall-clock budget (ranks' clocks differ; every rank must run the same rounds)
DISPATCH_RULES = race.RaceRules(min_rounds=3, max_rounds=8, budget_s=math.inf)
EP_GRAPH = "none: an expert-parallel step reads its all-to-all split sizes on the host"
EP_GRAPHS = {HOSTSYNC: EP_GRAPH,
             STATIC: "none: eager (ep-static has no host sync and is capturable, but tasks do not capture it yet)"}


@dataclass(frozen=True)
class LocalBuild:
    """A task's model as this rank built it, before the gang shares anything."""

    spec: TaskSpec
    parallel: Parallel
    prepared: Prepared
    dtype: torch.dtype


@dataclass(frozen=True)
class GangTask:
    """A task ready to run on this rank: `step()` runs one step of the gang's global batch (this rank's part).

    `items_per_step`: the global batch's items (inferences, tokens); `bytes_per_batch`: what a
    global batch moves over the gang (`roofline`); `part`: the expert-parallel model (MoE only).
    """

    spec: TaskSpec
    parallel: Parallel
    step: Callable[[], object]
    dtype: torch.dtype
    items_per_step: int
    flops_per_item: float
    bytes_per_batch: float
    params: ParamCounts
    expert_tokens: tuple[int, ...]
    notes: tuple[str, ...]
    form: Mapping[str, str]
    warnings: tuple[str, ...] = ()
    part: ExpertParallelPart | None = None
    choice: ChoiceMargin | None = None  # how clearly the form (dispatch, or the dense twin's form) won

    def alltoall_sizes(self) -> tuple[float, float]:
        """Bytes each rank sends on average in one dispatch and one combine (send buffers, own chunk included)."""
        if self.part is None:
            raise ValueError(f"task {self.spec.task_id} is not expert parallel")
        return self.part.alltoall_bytes


def build_local(spec: TaskSpec, rank: int, world_size: int, device: torch.device) -> LocalBuild:
    """Validate `spec` for a gang of `world_size` on `device` and build its model here (no collectives)."""
    if spec.device != device.type:
        raise ValueError(f"task device {spec.device!r} but the gang runs on {device.type}")
    if spec.repeats < 1 or spec.duration_s <= 0 or spec.warmup_s < 0:
        raise ValueError("repeats must be >= 1, duration_s > 0 and warmup_s >= 0")
    workload = get_workload(spec.workload)
    workload.validate(spec)
    dtype = torch_dtype(spec.dtype)
    shard_rows(spec.batch_size, world_size, rank)
    if spec.kind == "moe":
        if spec.expert_parallel != world_size:
            raise ValueError(f"expert_parallel {spec.expert_parallel} but the gang has {world_size} ranks")
        if spec.cuda_graphs:
            raise ValueError(f"cuda_graphs: true is impossible expert parallel: {EP_GRAPH.removeprefix('none: ')}")
        experts_per_rank(int(spec.model["num_experts"]), world_size)
        if spec.workload not in EXPERT_PARALLEL:
            raise ValueError(f"workload {spec.workload!r} has no expert-parallel form ({', '.join(EXPERT_PARALLEL)})")
        prepared = workload.prepare(dataclasses.replace(spec, cuda_graphs=False, compile=False), device, dtype)
        return LocalBuild(spec=spec, parallel="expert", prepared=prepared, dtype=dtype)
    rank_spec = dataclasses.replace(spec, batch_size=spec.batch_size // world_size)
    return LocalBuild(spec=spec, parallel="data", prepared=workload.prepare(rank_spec, device, dtype), dtype=dtype)


def _broadcast(tensors: list[Tensor]) -> None:
    with torch.no_grad():
        for t in tensors:
            dist.broadcast(t, src=0)


def _seconds_per_step(ep: ExpertParallelMoE, shard: Tensor, gang: Gang, steps: int) -> float:
    """The gang's seconds per step of `ep` (one warm-up step; the slowest rank's time; a collective)."""
    def settle() -> None:
        if shard.is_cuda:
            torch.cuda.synchronize(shard.device)
        gang.barrier()

    ep(shard)
    settle()
    t0 = time.perf_counter()
    for _ in range(steps):
        ep(shard)
    settle()
    return max(gang.all_gather((time.perf_counter() - t0) / steps))


def choose_dispatch(full: MoEMLP, shard: Tensor, gang: Gang, steps: int = CHOICE_STEPS,
                    ) -> tuple[ExpertParallelMoE, dict[str, float], ChoiceMargin]:
    """The dispatch form of `full` chosen on this gang by `race`'s rule (eagerly; tie-break order
    `DISPATCH_FORMS`), every form's seconds per step (geometric mean over the rounds) and the margin
    (a collective).

    Every rank times the same forms in the same rounds; each sample is the slowest rank's, so every
    rank sees the same numbers and makes the same choice (and stops after the same round).
    """
    names = list(DISPATCH_FORMS)
    built = {name: ExpertParallelMoE(full, gang.rank, gang.world_size, dispatch=name) for name in names}
    with torch.no_grad():
        samples = race.race(len(names), lambda i: _seconds_per_step(built[names[i]], shard, gang, steps),
                            DISPATCH_RULES, clock=lambda: 0.0)
    chosen, margin = race.decide([f"{name} eager" for name in names], samples)
    times = {name: statistics.geometric_mean(row) for name, row in zip(names, samples)}
    return built[names[chosen]], times, margin


def _mlp_part(build: LocalBuild, gang: Gang, dispatch: str) -> tuple[ExpertParallelPart, ChoiceMargin | None]:
    """The MLP's MoE expert parallel on this rank (`ep_moe`), its dispatch given or chosen (a collective)."""
    spec, prepared, n = build.spec, build.prepared, gang.world_size
    full = prepared.model
    assert isinstance(full, MoEMLP)
    shared = [*full.parameters(), prepared.inputs]
    if full.forced_experts is not None:
        shared.append(full.forced_experts)
    _broadcast(shared)
    shard = prepared.inputs[shard_rows(spec.batch_size, n, gang.rank)].contiguous()
    margin: ChoiceMargin | None = None
    if dispatch == MEASURE:
        ep, times, margin = choose_dispatch(full, shard, gang)
        chosen = ", ".join(f"{name} {1e3 * t:.3g} ms" for name, t in times.items())
        dispatch_form = f"{ep.dispatch}, chosen by measurement (eager, per step: {chosen}; {margin.describe()})"
    else:
        ep = ExpertParallelMoE(full, gang.rank, n, dispatch=dispatch)
        dispatch_form = dispatch
    shape = full.shape
    assert isinstance(shape, MoEShape)
    form = {"parallel": f"expert over {n} ranks, {ep.local_experts} experts and {shard.shape[0]} rows each",
            "dispatch": dispatch_form, "experts": ep.experts_form, "graph": EP_GRAPHS[ep.dispatch]}
    copies = shard.shape[0] * ep.top_k
    elem = shard.element_size()

    def step() -> Tensor:
        out: Tensor = ep(shard)
        return out

    def phased(marks: StepMarks) -> Tensor:
        out: Tensor = ep(shard, marks)
        return out

    part = ExpertParallelPart(
        step=step, phased=phased, phases=PHASES,
        alltoall_bytes=(float(copies * shard.shape[1] * elem), float(copies * shape.output_dim * elem)),
        bytes_per_batch=expert_parallel_bytes(prepared.bytes_per_batch, shape.router_params(), elem, n),
        form=form, local_experts=ep.local_experts, rows=shard.shape[0])
    return part, margin


def _llm_part(build: LocalBuild, gang: Gang, dispatch: str) -> tuple[ExpertParallelPart, ChoiceMargin | None]:
    """The transformer MoE expert parallel on this rank (`workloads.llm.expert_parallel`; a collective)."""
    if dispatch == MEASURE:
        raise ValueError(f"dispatch {MEASURE!r} is not implemented for workload llm ({', '.join(DISPATCH_FORMS)})")
    _broadcast([*build.prepared.model.parameters(), build.prepared.inputs])
    return llm_expert_parallel(build.prepared, build.spec, gang.rank, gang.world_size, dispatch), None


# each MoE workload's expert-parallel builder (the node's one switch on the workload's name)
EXPERT_PARALLEL: dict[str, Callable[[LocalBuild, Gang, str], tuple[ExpertParallelPart, ChoiceMargin | None]]] = {
    "mlp": _mlp_part, "llm": _llm_part}


def share(build: LocalBuild, gang: Gang, dispatch: str = HOSTSYNC) -> GangTask:
    """The task ready on this rank (a collective for an MoE: every rank must call it); `dispatch`:
    the expert-parallel dispatch form (`exchange.DISPATCH_FORMS`, or `measure` for the faster of
    them here, MLP only), ignored for a dense task."""
    spec, prepared, n = build.spec, build.prepared, gang.world_size
    items = prepared.items_per_batch * n  # a rank's batch is B/N of the global one
    if build.parallel == "data":
        form = {**prepared.form, "parallel": f"data over {n} ranks, {spec.batch_size // n} rows each"}
        return GangTask(spec=spec, parallel="data", step=prepared.step, dtype=build.dtype, items_per_step=items,
                        flops_per_item=prepared.flops_per_item,
                        bytes_per_batch=data_parallel_bytes(prepared.bytes_per_batch, n), params=prepared.params,
                        expert_tokens=prepared.expert_tokens, notes=tuple(prepared.notes), form=form,
                        choice=prepared.choice)
    part, margin = EXPERT_PARALLEL[spec.workload](build, gang, dispatch)
    warnings = ("compile: not applied to the expert-parallel MoE (eager)",) if spec.compile else ()
    return GangTask(spec=spec, parallel="expert", step=part.step, dtype=build.dtype,
                    items_per_step=prepared.items_per_batch, flops_per_item=prepared.flops_per_item,
                    bytes_per_batch=part.bytes_per_batch, params=prepared.params,
                    expert_tokens=prepared.expert_tokens, notes=tuple(prepared.notes), form=part.form,
                    warnings=warnings, part=part, choice=margin)
