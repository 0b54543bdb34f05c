"""`moecluster bench --workload llm`: one LLM MoE and its dense twin on this machine, without Ray.

The MoE comes from an LLM preset (fields overridable), its twin is matched by total or active
parameters (`llm.twins`), and both measure the same phase of the same batch of prompts in
counterbalanced windows, as a scheduled pair does. The tables speak tokens: tokens/s, tokens/J,
J per token and per response, seed 000's normalisations per total and active parameter, and the
fraction of the roofline (weights and KV cache bytes per token at the device's measured peaks).
"""
from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from moecluster.spec.extras import require_workload
from moecluster.spec.records import TaskResult, TaskSpec
from moecluster.spec.llm.memory import GIB, memory_need
from moecluster.spec.llm.presets import moe_preset
from moecluster.spec.llm.shapes import LlmShape
from moecluster.spec.llm.twins import match_dense, width_alignment
from moecluster.spec.mlp.shapes import ShapeError

from moecluster.report import fmt

from moecluster.cli.errors import InputError

DEFAULT_PRESET = "tiny-mixtral"
LLM_IMPLS = ("library", "grouped")
FORM_COLUMNS = ("path", "kernel", "graph", "candidates", "choice", "reference", "check")


def llm_shape(preset: str, overrides: dict[str, int | None]) -> LlmShape:
    """The MoE of `preset` with the given fields overridden; InputError naming the culprit."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return moe_preset(preset, **given)
    except ShapeError as exc:
        raise InputError(f"--preset {preset}: {exc}" if "preset" in str(exc) else str(exc)) from None


def _twin(moe: LlmShape, match: str) -> LlmShape:
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


def shape_table(moe: LlmShape, match: str, dtype: str, phase: str, batch: int, prompt_len: int,
                gen_tokens: int) -> Table:
    """The MoE and both twins: shapes, parameters, the twins' distance to their targets, memory."""
    p = moe.params()
    t = Table(title=f"Shapes, parameters and memory ({dtype}, {phase}, batch {batch}; nothing run)",
              title_justify="left")
    for col in ("model", "shape", "total params", "active / token", "vs target", "FFN alignment", "memory"):
        t.add_column(col, justify="left" if col in ("model", "shape") else "right")
    mem = memory_need(moe, dtype, phase, batch, prompt_len, gen_tokens)
    t.add_row("MoE", moe.describe(), f"{p.total:,}", f"{p.active_per_token:,}", "", "",
              f"{mem.total_bytes / GIB:,.1f} GiB")
    for mode in ("total", "active"):
        d = match_dense(moe, mode)
        dp = d.params().total
        target = p.total if mode == "total" else p.active_per_token
        need = memory_need(d, dtype, phase, batch, prompt_len, gen_tokens)
        t.add_row(f"dense/{mode}{' (selected)' if mode == match else ''}", d.describe(), f"{dp:,}", f"{dp:,}",
                  f"{(dp - target) / target:+.3%}", str(width_alignment(d.intermediate_size)),
                  f"{need.total_bytes / GIB:,.1f} GiB")
    return t


def _fmt(v: float | None, spec: str = ",.1f") -> str:
    return "n/a" if v is None else format(v, spec)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def tokens_per_response(spec: TaskSpec) -> int:
    """Tokens one response (one sequence's step) holds: generated ones in decode, the prompt in prefill."""
    return spec.gen_tokens if spec.phase == "decode" else spec.prompt_len


def result_table(results: list[TaskResult]) -> Table:
    """Tokens/s, tokens/J, J per token and per response, normalisations and roofline of each side."""
    t = Table(title="moecluster bench (llm)", title_justify="left")
    cols = ("model", "params total / active", "tokens/s", "avg W", "tokens/J", "J/token", "J/response",
            "J/response/total param", "J/token/active param", "roofline", "energy")
    for col in cols:
        t.add_column(col, justify="left" if col in ("model", "energy") else "right")
    for r in results:
        if r.status != "ok":
            t.add_row(r.spec.label(), "", "[red]failed (below)[/red]", *[""] * (len(cols) - 3))
            continue
        per_token = _mean([w.energy_j / w.inferences for w in r.windows if w.energy_j and w.inferences])
        per_response = per_token * tokens_per_response(r.spec) if per_token is not None else None
        total = r.params.total if r.params else None
        active = r.params.active_per_token if r.params else None
        roof = f"{r.roofline.fraction:.1%} ({r.roofline.bound})" if r.roofline else "n/a"
        t.add_row(r.spec.label(), f"{total:,} / {active:,}" if total and active else "", _fmt(r.inferences_per_s),
                  _fmt(r.avg_power_w), _fmt(r.inferences_per_j, ",.3f"), _fmt(per_token, ".3g"),
                  _fmt(per_response, ".3g"),
                  _fmt(per_response / total if per_response is not None and total else None, ".3g"),
                  _fmt(per_token / active if per_token is not None and active else None, ".3g"), roof,
                  r.energy_source or f"unavailable: {escape(r.energy_unavailable_reason or '')}")
    from moecluster.cli.bench import bench_ratio

    ratios = bench_ratio(results)
    if ratios is not None:
        t.add_section()
        t.add_row("MoE / dense [95 % CI]", "", fmt.ratio(ratios.inferences_per_s), fmt.ratio(ratios.power_w),
                  fmt.ratio(ratios.inferences_per_j), *[""] * (len(cols) - 5))
    return t


def form_table(results: list[TaskResult]) -> Table:
    t = Table(title="How each ran (chosen by measurement at prepare, checked against transformers)",
              title_justify="left")
    for col in ("model", *FORM_COLUMNS):
        t.add_column(col, justify="left")
    for r in results:
        t.add_row(r.spec.label(), *(escape(r.form.get(col, "")) for col in FORM_COLUMNS))
    return t


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


def run_llm_bench(*, preset: str | None, overrides: dict[str, int | None], impl: str, match: str, dtype: str,
                  batch_size: int, device: str | None, phase: str, prompt_len: int, gen_tokens: int, path: str,
                  graphs: bool | None, dry_run: bool, as_json: bool, **common: Any) -> None:
    """The `bench` command for workload llm (options already parsed and checked by `bench`)."""
    from moecluster.cli.bench import console, default_device, echo_failures, run_pair_alternating, warn_without_interval

    name = preset or DEFAULT_PRESET
    moe = llm_shape(name, overrides)
    if impl not in LLM_IMPLS:
        raise InputError(f"--impl {impl} is an mlp implementation; --workload llm takes {', '.join(LLM_IMPLS)}")
    if match not in ("total", "active"):
        raise InputError(f"--match {match}: llm twins match total or active parameters ('seed' is the MLP seed's)")
    dense = _twin(moe, match)
    require_workload("llm", feature="bench --workload llm")  # before anything runs, a dry run included
    if dry_run:
        if as_json:
            click.echo(json.dumps({
                "moe": {"architecture": moe.architecture, **moe.as_model(), "params": vars(moe.params())},
                "dense": {"architecture": dense.architecture, **dense.as_model(), "match": match,
                          "params": vars(dense.params())}}, indent=2))
        else:
            console().print(shape_table(moe, match, dtype, phase, batch_size, prompt_len, gen_tokens))
        return
    device = device or default_device()
    if graphs and path == "reference":
        raise InputError("--cuda-graphs is impossible with --path reference (transformers' generate runs eagerly)")
    plain = preset if preset and all(v is None for v in overrides.values()) else None
    specs = llm_pair_specs(moe, dense, preset=plain, impl=impl, match=match, dtype=dtype, batch_size=batch_size,
                           device=device, phase=phase, prompt_len=prompt_len,
                           gen_tokens=gen_tokens if phase == "decode" else 0, path=path, cuda_graphs=graphs, **common)
    check_fits(specs)
    results = run_pair_alternating(specs, specs[0].repeats)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        console().print(result_table(results))
        console().print(form_table(results))
        echo_failures(results)
        warn_without_interval(results)
    if any(r.status != "ok" for r in results):
        sys.exit(1)
