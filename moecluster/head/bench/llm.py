"""`bench --workload llm`: an LLM MoE from a preset (fields overridable), its dense twin matched by total
or active parameters (`llm.twins`), both measuring the same phase of the same prompts."""
from __future__ import annotations

from typing import Any

from moecluster.spec.extras import require_workload
from moecluster.spec.llm.presets import moe_preset
from moecluster.spec.llm.shapes import LlmShape
from moecluster.spec.llm.twins import match_dense
from moecluster.spec.mlp.shapes import ShapeError
from moecluster.spec.records import TaskSpec

from moecluster.head.bench.pair import OnWindow, PairBench, default_device, run_bench
from moecluster.head.errors import InputError
from moecluster.head.sweep.schema import LLM_IMPLS

DEFAULT_PRESET = "tiny-mixtral"


def llm_shape(preset: str, overrides: dict[str, int | None]) -> LlmShape:
    """The MoE of `preset` with the given fields overridden; InputError naming the culprit."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return moe_preset(preset, **given)
    except ShapeError as exc:
        raise InputError(f"--preset {preset}: {exc}" if "preset" in str(exc) else str(exc)) from None


def twin(moe: LlmShape, match: str) -> LlmShape:
    """The dense twin of `moe` matched by `match`; InputError where none can be sized."""
    try:
        return match_dense(moe, match)
    except ShapeError as exc:
        raise InputError(f"--match {match}: {exc}") from None


def llm_pair_specs(moe: LlmShape, dense: LlmShape, *, preset: str | None, impl: str, match: str,
                   **common: Any) -> list[TaskSpec]:
    """The dense twin and the MoE task, sharing a pair id (dense first, as the A of A B)."""
    gen = f"-g{common['gen_tokens']}" if common["phase"] == "decode" else ""
    pair = (f"{preset or 'custom'}-{impl}-{match}-{common['dtype']}-b{common['batch_size']}-{common['phase']}"
            f"-p{common['prompt_len']}{gen}-{common['path']}")
    return [
        TaskSpec(task_id=f"{pair}-dense", pair_id=pair, kind="dense", impl="dense", match=match,
                 model=dense.as_model(), architecture=dense.architecture, preset=preset, workload="llm", **common),
        TaskSpec(task_id=f"{pair}-moe", pair_id=pair, kind="moe", impl=impl, model=moe.as_model(),
                 architecture=moe.architecture, preset=preset, workload="llm", **common),
    ]


def check_fits(specs: list[TaskSpec]) -> None:
    """InputError with the memory each task needs and the memory there is, before anything is built."""
    from moecluster.measure.runner import resolve_device
    from moecluster.workloads.llm.workload import check_device_memory, shape_of

    try:
        device = resolve_device(specs[0].device)
        for spec in specs:
            check_device_memory(spec, shape_of(spec), device)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def graph_mode(required: bool, eager: bool, device: str | None) -> bool | None:
    """`TaskSpec.cuda_graphs` from the flags: None (capture where possible), True, or False; a required
    graph on a device without CUDA graphs is refused here."""
    if required and eager:
        raise InputError("--cuda-graphs and --eager exclude each other")
    if required and device not in (None, "cuda"):
        raise InputError(f"--cuda-graphs needs --device cuda; device {device} has no CUDA graphs")
    return False if eager else (True if required else None)


def _pair(preset: str | None, overrides: dict[str, int | None], impl: str, match: str) -> tuple[LlmShape, LlmShape]:
    """The MoE and its twin, the implementation and the match checked."""
    moe = llm_shape(preset or DEFAULT_PRESET, overrides)
    if impl not in LLM_IMPLS:
        raise InputError(f"--impl {impl} is an mlp implementation; --workload llm takes {', '.join(LLM_IMPLS)}")
    if match not in ("total", "active"):
        raise InputError(f"--match {match}: llm twins match total or active parameters ('seed' is the MLP seed's)")
    return moe, twin(moe, match)


def bench_llm(*, preset: str | None, overrides: dict[str, int | None], impl: str, match: str, device: str | None,
              phase: str, gen_tokens: int, path: str, required_graphs: bool, eager: bool, dry_run: bool,
              on_window: OnWindow, **common: Any) -> PairBench[LlmShape, LlmShape]:
    """The LLM pair of `preset` and, unless `dry_run`, its results measured here; `common` holds the other
    `TaskSpec` fields (dtype, batch size, prompt length, windows, ...)."""
    graphs = graph_mode(required_graphs, eager, device)
    moe, dense = _pair(preset, overrides, impl, match)
    require_workload("llm", feature="bench --workload llm")  # before anything runs, a dry run included
    if dry_run:
        return PairBench(moe=moe, dense=dense)
    device = device or default_device()
    if graphs and path == "reference":
        raise InputError("--cuda-graphs is impossible with --path reference (transformers' generate runs eagerly)")
    plain = preset if preset and all(v is None for v in overrides.values()) else None
    specs = llm_pair_specs(moe, dense, preset=plain, impl=impl, match=match, device=device, phase=phase,
                           gen_tokens=gen_tokens if phase == "decode" else 0, path=path, cuda_graphs=graphs, **common)
    check_fits(specs)
    return PairBench(moe=moe, dense=dense, results=tuple(run_bench(specs, on_window)))
