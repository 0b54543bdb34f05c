"""`moecluster bench --workload serve`: one served model, or an MoE and its dense comparison, on this machine,
without Ray — the measurement a serve sweep makes of one pair at one load, with the report's tables.

Each served model is a `--url` of a server already running here or a `--command` template (`{port}`,
`{model}`, `{gpus}`) that moecluster starts, as in a sweep (`docs/serving.md`). With `--dense-url` or
`--dense-command` the two are measured in counterbalanced windows (A B B A; a started server restarts for
every window, as in a scheduled pair) and printed with MoE/dense ratios and their intervals; alone, one
server runs all its windows behind one start. The load is `--concurrency N` (closed loop) or
`--request-rate R` (open loop; `--burstiness`, `--max-in-flight`; arrivals seeded by `--seed`, the same
for both sides). The options are added to `bench` by `serve_options`; `bench` hands them here.
"""
from __future__ import annotations

import json
import os
import re
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from moecluster.workloads.serve.template import template_problem
from moecluster.spec.records import ServeSpec, TaskResult, TaskSpec

if TYPE_CHECKING:
    from moecluster.report.cells import TableData

from moecluster.cli.errors import InputError
from moecluster.cli.finite import BoundedInt, BoundedText, FiniteFloatRange

#: bench's own options a serve bench uses; any other given with `--workload serve` is refused
COMMON = {"workload", "device", "duration_s", "warmup_s", "repeats", "meter", "seed", "as_json", "match"}
MAX_RATE = 1e6
URL = re.compile(r"^https?://[^\s/]+(/[^\s]*)?$")
PARAMS = FiniteFloatRange(min=1, max=1e15)  # a count written as 30.5e9, as in a sweep; taken as a whole number

_OPTIONS: list[Callable[[Any], Any]] = [
    click.option("--url", "serve_url", type=BoundedText(1000), default=None,
                 help="serve: a server already running on this machine (its GPUs are metered as they are)."),
    click.option("--command", "serve_command", type=BoundedText(4000), default=None,
                 help="serve: a server command for moecluster to start, with {port} (and {model}, {gpus})."),
    click.option("--model", "serve_model", type=BoundedText(1000), default=None,
                 help="serve: the model requests name (and {model} in --command)."),
    click.option("--params-total", type=PARAMS, default=None,
                 help="serve: the served model's parameters (only for the per-parameter normalisations)."),
    click.option("--params-active", type=PARAMS, default=None,
                 help="serve: its active parameters per token (an MoE's)."),
    click.option("--dense-url", type=BoundedText(1000), default=None, help="serve: the dense comparison's server."),
    click.option("--dense-command", type=BoundedText(4000), default=None,
                 help="serve: the dense comparison's server command."),
    click.option("--dense-model", type=BoundedText(1000), default=None, help="serve: the dense model's name."),
    click.option("--dense-params-total", type=PARAMS, default=None,
                 help="serve: the dense model's parameters."),
    click.option("--concurrency", type=BoundedInt(min=1, max=100_000), default=None,
                 help="serve: requests kept in flight (closed loop; the default, 1)."),
    click.option("--request-rate", type=FiniteFloatRange(min=0, min_open=True, max=MAX_RATE), default=None,
                 help="serve: requests per second arriving whatever the server does (open loop)."),
    click.option("--burstiness", type=FiniteFloatRange(min=0, min_open=True, max=1000), default=None,
                 help="serve: the shape of the gamma gaps between arrivals (1, the default: Poisson)."),
    click.option("--max-in-flight", type=BoundedInt(min=1, max=100_000), default=None,
                 help="serve: open loop's cap on requests sent and unanswered (default: none)."),
    click.option("--max-tokens", type=BoundedInt(min=1, max=1_000_000), default=None,
                 help="serve: the cap of every response (default 256)."),
    click.option("--output", "serve_output", type=click.Choice(["natural", "fixed"]), default=None,
                 help="serve: the model's own stop, capped (default), or exactly --max-tokens (vLLM, SGLang)."),
    click.option("--prompts", "prompts_file", type=BoundedText(4096), default=None,
                 help="serve: a JSONL or ShareGPT file of prompts (default: the committed set)."),
    click.option("--startup-timeout", "startup_timeout_s", type=FiniteFloatRange(min=0, min_open=True, max=86_400),
                 default=None, help="serve: seconds a started server may take to become healthy (default 600)."),
]


def serve_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the serve options to `bench` (they reach it as keyword arguments, handed on to `run_serve_bench`)."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def _given(ctx: click.Context, names: Any) -> list[str]:
    return [n for n in names if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE]


def _flag(ctx: click.Context, name: str) -> str:
    param = next(p for p in ctx.command.params if p.name == name)
    return str(param.opts[0]) if isinstance(param, click.Option) else name


def refuse_serve_options(ctx: click.Context, workload: str, serve: dict[str, Any]) -> None:
    """InputError where a serve option is given to another workload."""
    given = _given(ctx, serve)
    if given:
        raise InputError(f"{_flag(ctx, given[0])} is an option of --workload serve (not {workload})")


def _name(model: str) -> str:
    """A task name from a model's path or id: its last part, with what an id may not hold replaced."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", Path(model.rstrip("/")).name or model)[:60].lstrip("-.") or "served"


def _reach(url: str | None, command: str | None, flags: tuple[str, str]) -> dict[str, Any]:
    """The `url` or `command` of one served model, exactly one of them, checked as a sweep checks it."""
    if (url is None) == (command is None):
        raise InputError(f"give exactly one of {flags[0]} (a running server) or {flags[1]} (a server to start)")
    if url is not None and not URL.match(url):
        raise InputError(f"{flags[0]}: {url!r} is not an http(s) URL")
    if command is not None:
        problem = template_problem(command)
        if problem:
            raise InputError(f"{flags[1]}: {problem}")
    return {"url": url, "command": command}


def _load(serve: dict[str, Any], seed: int) -> dict[str, Any]:
    """The load's `ServeSpec` fields: closed loop (`--concurrency`) or open loop (`--request-rate`)."""
    rate = serve["request_rate"]
    if rate is None:
        for key, flag in (("burstiness", "--burstiness"), ("max_in_flight", "--max-in-flight")):
            if serve[key] is not None:
                raise InputError(f"{flag} is an option of an open-loop load: it needs --request-rate")
        return {"concurrency": serve["concurrency"] or 1}
    if serve["concurrency"] is not None:
        raise InputError("give --concurrency (requests kept in flight) or --request-rate (requests/s arriving),"
                         " not both")
    return {"concurrency": 0, "request_rate": rate, "burstiness": serve["burstiness"] or 1.0,
            "max_in_flight": serve["max_in_flight"], "arrival_seed": seed}


def serve_specs(serve: dict[str, Any], *, device: str, duration_s: float, warmup_s: float, repeats: int, meter: str,
                seed: int, match: str) -> list[TaskSpec]:
    """The tasks: the served model alone, or the dense comparison then the MoE (dense first, as the A of A B)."""
    from moecluster.head.sweep.serve_schema import DEFAULT_PROMPTS, MAX_PROMPTS, read_prompt_file

    if serve["serve_model"] is None:
        raise InputError("--model: required with --workload serve (the model requests name)")
    served = _reach(serve["serve_url"], serve["serve_command"], ("--url", "--command"))
    pair = serve["dense_url"] is not None or serve["dense_command"] is not None
    if not pair and (serve["dense_model"] is not None or serve["dense_params_total"] is not None):
        raise InputError("--dense-model needs --dense-url or --dense-command")
    load = _load(serve, seed)
    try:
        prompts = read_prompt_file(Path(serve["prompts_file"]), 200) if serve["prompts_file"] else \
            read_prompt_file(DEFAULT_PROMPTS, MAX_PROMPTS)
    except ValueError as exc:
        raise InputError(f"--prompts: {exc}") from None
    common_serve: dict[str, Any] = dict(
        max_tokens=serve["max_tokens"] or 256, output=serve["serve_output"] or "natural", prompts=prompts,
        startup_timeout_s=serve["startup_timeout_s"] or 600.0, **load)
    moe = serve["serve_model"]
    load_id = ServeSpec(name="x", model="x", **common_serve).load_id
    pair_id = f"bench-{_name(moe)}-{load_id}"
    common: dict[str, Any] = dict(pair_id=pair_id, run_id=f"bench-{os.getpid()}", workload="serve", device=device,
                                  duration_s=duration_s, warmup_s=warmup_s, repeats=repeats, meter=meter,
                                  batch_size=load["concurrency"] or load.get("max_in_flight") or 1,
                                  dtype="bfloat16" if device == "cuda" else "float32")
    total, active = (None if v is None else round(v) for v in (serve["params_total"], serve["params_active"]))
    if total is not None and active is not None and active > total:
        raise InputError(f"--params-active: {active:,} is more than --params-total ({total:,})")
    counts = {k: v for k, v in (("params_total", total), ("params_active", active or total)) if v is not None}
    specs = [TaskSpec(task_id=f"{pair_id}-moe" if pair else pair_id, kind="moe", impl="served",
                      model_name=_name(moe), model=counts,
                      serve=ServeSpec(name=_name(moe), model=moe, **served, **common_serve), **common)]
    if pair:
        dense = serve["dense_model"]
        if dense is None:
            raise InputError("--dense-model: required with --dense-url or --dense-command")
        reach = _reach(serve["dense_url"], serve["dense_command"], ("--dense-url", "--dense-command"))
        d_total = None if serve["dense_params_total"] is None else round(serve["dense_params_total"])
        d_counts = {} if d_total is None else {"params_total": d_total, "params_active": d_total}
        specs.insert(0, TaskSpec(task_id=f"{pair_id}-dense-{match}", kind="dense", impl="dense", match=match,
                                 model_name=_name(dense), model=d_counts,
                                 serve=ServeSpec(name=_name(dense), model=dense, **reach, **common_serve), **common))
    return specs


def run_serve_bench(ctx: click.Context, serve: dict[str, Any], **common: Any) -> None:
    """The `bench` command for workload serve (`bench` parsed the options; the serve ones are in `serve`)."""
    from moecluster.spec.extras import require_workload

    from moecluster.cli.bench import console, echo_failures, warn_without_interval

    foreign = [n for n in _given(ctx, [p.name for p in ctx.command.params if p.name])
               if n not in COMMON and n not in serve]
    if foreign:
        raise InputError(f"{_flag(ctx, foreign[0])} is not an option of --workload serve")
    if common["match"] == "seed":
        raise InputError("--match seed: a served dense model matches total or active parameters")
    as_json = common.pop("as_json")
    specs = serve_specs(serve, device=common.pop("device") or "cpu", **common)
    require_workload("serve", feature="bench --workload serve")
    results = _run(specs)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        from moecluster.report.terminal import FittedTable

        for table in result_tables(results):
            console().print(FittedTable(table))
        echo_failures(results)
        if len(results) == 2:
            warn_without_interval(results)
    if any(r.status != "ok" for r in results):
        sys.exit(1)


def _run(specs: list[TaskSpec]) -> list[TaskResult]:
    """A pair in counterbalanced windows (`bench.run_pair_alternating`); one server, all windows behind one
    start; either holding the devices against other runs, as a scheduled pair does."""
    from moecluster.node.device_lock import run_holding_devices
    from moecluster.measure.runner import run_task

    from moecluster.cli.bench import console, run_pair_alternating

    if len(specs) == 2:
        return run_pair_alternating(specs, specs[0].repeats)
    with console(stderr=True).status(f"measuring {specs[0].task_id} ({specs[0].repeats} windows)"):
        return run_holding_devices(specs, lambda: [run_task(specs[0])], node=socket.gethostname(),
                                   run_id=specs[0].run_id)


def result_tables(results: list[TaskResult]) -> list[TableData]:
    """The report's serve tables for these results: a pair's comparison, or the one side alone."""
    from moecluster.report.aggregate.serve import serve_comparisons, serve_side
    from moecluster.report.aggregate.tasks import task_stats
    from moecluster.report.serve import latency_table, normalisations_table, side_tables, \
        throughput_table

    from moecluster.cli.bench import bench_ratio

    ok = [r for r in results if r.status == "ok" and r.serve is not None]
    if len(results) == 2:
        ratio = bench_ratio(results)
        if ratio is not None:
            comparisons = serve_comparisons([ratio])
            return [throughput_table(comparisons), latency_table(comparisons), normalisations_table(comparisons)]
    return side_tables([serve_side(task_stats(r)) for r in ok]) if ok else []
