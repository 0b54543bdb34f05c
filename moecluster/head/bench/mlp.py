"""`bench` of the seed's MLPs: an MoE from a preset (fields overridable), its dense twin, their tasks."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from moecluster.spec.llm.shapes import closest
from moecluster.spec.mlp.shapes import HOST_SYNC, PRESETS, DenseShape, MoEShape, ShapeError, match_dense
from moecluster.spec.mlp.shapes import preset as preset_shape
from moecluster.spec.records import TaskSpec

from moecluster.head.bench.pair import OnWindow, PairBench, default_device, run_bench
from moecluster.head.errors import InputError

DEFAULT_PRESET = "small"


def moe_shape(preset: str, overrides: dict[str, int | None]) -> MoEShape:
    """The MoE of `preset` with the given fields overridden; InputError naming the culprit."""
    if preset not in PRESETS:
        raise InputError(f"--preset: unknown preset {preset!r} ({closest(preset, PRESETS)}known: {', '.join(PRESETS)};"
                         " the llm presets take --workload llm)")
    base = preset_shape(preset)
    fields = {k: v for k, v in overrides.items() if v is not None}
    try:
        return replace(base, **fields)
    except ShapeError as exc:
        raise InputError(str(exc)) from None


def pair_specs(moe: MoEShape, dense: DenseShape, *, preset: str | None, impl: str, match: str,
               **common: Any) -> list[TaskSpec]:
    """The MoE task and its dense twin, sharing a pair id (dense first, as the A of A B)."""
    pair = f"{preset or 'custom'}-{impl}-{match}-{common['dtype']}-b{common['batch_size']}"
    return [
        TaskSpec(task_id=f"{pair}-dense", pair_id=pair, kind="dense", impl="dense", match=match,
                 model=dense.as_model(), preset=preset, **common),
        TaskSpec(task_id=f"{pair}-moe", pair_id=pair, kind="moe", impl=impl, model=moe.as_model(),
                 preset=preset, **common),
    ]


def graph_mode(required: bool, eager: bool, impl: str, device: str) -> bool | None:
    """`TaskSpec.cuda_graphs` from the flags: None (capture where possible), True, or False;
    a required graph that cannot be captured is refused here, naming why."""
    if required and eager:
        raise InputError("--cuda-graphs and --eager exclude each other")
    if eager:
        return False
    if not required:
        return None
    if impl in HOST_SYNC:
        raise InputError(f"--cuda-graphs is impossible with --impl {impl}: {HOST_SYNC[impl]}"
                         " (leave it out to capture where possible)")
    if device != "cuda":
        raise InputError(f"--cuda-graphs needs --device cuda; device {device} has no CUDA graphs")
    return True


def check_memory(specs: list[TaskSpec], params_total: list[int]) -> None:
    """InputError naming the memory a task needs when no device could hold it (`sweep.memory`), before
    anything is built: the node checks only the weights against its GPU."""
    from moecluster.head.sweep import SweepError
    from moecluster.head.sweep.memory import check_task_memory

    try:
        for spec, total in zip(specs, params_total):
            check_task_memory(spec, total)
    except SweepError as exc:
        raise InputError(str(exc)) from None


def _cuda_device(device: str | None) -> str:
    """The device asked for (default: `cuda` if present); InputError where cuda is asked for and absent."""
    device = device or default_device()
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA GPU visible to torch on this machine (use --device cpu)")
    return device


def bench_mlp(*, preset: str | None, overrides: dict[str, int | None], impl: str, match: str, device: str | None,
              required_graphs: bool, eager: bool, dry_run: bool, on_window: OnWindow,
              **common: Any) -> PairBench[MoEShape, DenseShape]:
    """The MLP pair of `preset` (`overrides`: the MoE's shape fields given) and, unless `dry_run`, its
    results measured here; `common` holds the other `TaskSpec` fields (dtype, batch size, windows, ...)."""
    if impl == "library":
        raise InputError("--impl library is an llm implementation (--workload llm); mlp takes naive, sorted, grouped")
    name = preset or DEFAULT_PRESET
    moe = moe_shape(name, overrides)
    dense = match_dense(moe, match)  # type: ignore[arg-type]
    if dry_run:
        return PairBench(moe=moe, dense=dense)
    device = _cuda_device(device)
    graphs = graph_mode(required_graphs, eager, impl, device)
    overridden = any(v is not None for v in overrides.values())
    specs = pair_specs(moe, dense, preset=None if overridden else name, impl=impl, match=match, device=device,
                       cuda_graphs=graphs, **common)
    check_memory(specs, [dense.params().total, moe.params().total])
    return PairBench(moe=moe, dense=dense, results=tuple(run_bench(specs, on_window)))
