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

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from moecluster.spec.records import TaskResult

if TYPE_CHECKING:
    from moecluster.report.cells import TableData

from moecluster.cli.errors import InputError
from moecluster.cli.finite import BoundedInt, BoundedText, FiniteFloatRange

#: bench's own options a serve bench uses; any other given with `--workload serve` is refused
COMMON = {"workload", "device", "duration_s", "warmup_s", "repeats", "meter", "seed", "as_json", "match"}
MAX_RATE = 1e6
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


def run_serve_bench(ctx: click.Context, serve: dict[str, Any], **common: Any) -> None:
    """The `bench` command for workload serve (`bench` parsed the options; the serve ones are in `serve`)."""
    from moecluster.head.bench.serve import bench_serve
    from moecluster.report.terminal import FittedTable

    from moecluster.cli.bench import print_results, window_status

    foreign = [n for n in _given(ctx, [p.name for p in ctx.command.params if p.name])
               if n not in COMMON and n not in serve]
    if foreign:
        raise InputError(f"{_flag(ctx, foreign[0])} is not an option of --workload serve")
    as_json = common.pop("as_json")
    with window_status() as on_window:
        results = bench_serve(serve, on_window=on_window, **common).results
    print_results(results, as_json, [] if as_json else [FittedTable(t) for t in result_tables(results)])


def result_tables(results: Sequence[TaskResult]) -> list[TableData]:
    """The report's serve tables for these results: a pair's comparison, or the one side alone."""
    from moecluster.report.aggregate.bench import bench_ratio
    from moecluster.report.aggregate.serve import serve_comparisons, serve_side
    from moecluster.report.aggregate.tasks import task_stats
    from moecluster.report.serve import latency_table, normalisations_table, side_tables, \
        throughput_table

    ok = [r for r in results if r.status == "ok" and r.serve is not None]
    if len(results) == 2:
        ratio = bench_ratio(results)
        if ratio is not None:
            comparisons = serve_comparisons([ratio])
            return [throughput_table(comparisons), latency_table(comparisons), normalisations_table(comparisons)]
    return side_tables([serve_side(task_stats(r)) for r in ok]) if ok else []
