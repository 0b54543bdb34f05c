"""`moecluster bench --workload llm`: one LLM MoE and its dense twin on this machine, without Ray.

The MoE comes from an LLM preset (fields overridable), its twin is matched by total or active
parameters (`llm.twins`), and both measure the same phase of the same batch of prompts in
counterbalanced windows, as a scheduled pair does. The tables speak tokens: tokens/s, tokens/J,
J per token and per response, seed 000's normalisations per total and active parameter, and the
fraction of the roofline (weights and KV cache bytes per token at the device's measured peaks).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from moecluster.spec.records import TaskResult, TaskSpec
from moecluster.spec.llm.memory import GIB, memory_need
from moecluster.spec.llm.shapes import LlmShape
from moecluster.spec.llm.twins import match_dense, width_alignment

from moecluster.report import fmt
from moecluster.report.aggregate.bench import bench_ratio

from moecluster.head.bench.llm import bench_llm

FORM_COLUMNS = ("path", "kernel", "graph", "candidates", "choice", "reference", "check")


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


def result_table(results: Sequence[TaskResult]) -> Table:
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
    ratios = bench_ratio(results)
    if ratios is not None:
        t.add_section()
        t.add_row("MoE / dense [95 % CI]", "", fmt.ratio(ratios.inferences_per_s), fmt.ratio(ratios.power_w),
                  fmt.ratio(ratios.inferences_per_j), *[""] * (len(cols) - 5))
    return t


def form_table(results: Sequence[TaskResult]) -> Table:
    """How each model ran: its form chosen at prepare, and the check against transformers."""
    t = Table(title="How each ran (chosen by measurement at prepare, checked against transformers)",
              title_justify="left")
    for col in ("model", *FORM_COLUMNS):
        t.add_column(col, justify="left")
    for r in results:
        t.add_row(r.spec.label(), *(escape(r.form.get(col, "")) for col in FORM_COLUMNS))
    return t


def run_llm_bench(*, match: str, dtype: str, phase: str, batch_size: int, prompt_len: int, gen_tokens: int,
                  dry_run: bool, as_json: bool, **options: Any) -> None:
    """The `bench` command for workload llm (options parsed by `bench`, the MLP's and serve's refused)."""
    from moecluster.cli.bench import console, print_results, window_status

    with window_status(dry_run) as on_window:
        done = bench_llm(match=match, dtype=dtype, phase=phase, batch_size=batch_size, prompt_len=prompt_len,
                         gen_tokens=gen_tokens, dry_run=dry_run, on_window=on_window, **options)
    if dry_run:
        moe, dense = done.moe, done.dense
        if as_json:
            click.echo(json.dumps({
                "moe": {"architecture": moe.architecture, **moe.as_model(), "params": vars(moe.params())},
                "dense": {"architecture": dense.architecture, **dense.as_model(), "match": match,
                          "params": vars(dense.params())}}, indent=2))
        else:
            console().print(shape_table(moe, match, dtype, phase, batch_size, prompt_len, gen_tokens))
        return
    print_results(done.results, as_json, [result_table(done.results), form_table(done.results)])
