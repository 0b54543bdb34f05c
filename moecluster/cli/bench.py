"""`moecluster bench`: one dense/MoE pair on this machine, without Ray (`--workload llm`: `bench_llm`;
`--workload serve`: `bench_serve`).

By default every model is measured over 3 windows in counterbalanced order (A B B A ...: drift cancels), and
the MoE/dense ratios are printed with their 95 % intervals (Welch t on the log scale over the windows, as
`report` computes them): a single window has no interval and is no result. A figure printed without an
interval (`--repeats 1`, or a side without the figure) is flagged in one line on stderr.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from moecluster.spec.records import TaskResult, TaskSpec
from moecluster.spec.mlp.shapes import DTYPE_NAMES, IMPLS, MoEShape, match_dense

from moecluster.report.aggregate.bench import bench_ratio, missing_intervals
from moecluster.report import fmt

from moecluster.head.bench.mlp import bench_mlp
from moecluster.head.bench.pair import OnWindow
from moecluster.head.sweep.bounds import MAX_COUNT, MAX_NAME_CHARS, MAX_SEED, MAX_WINDOW_S, MAX_ZIPF_S

from moecluster.cli.bench_serve import refuse_serve_options, run_serve_bench, serve_options
from moecluster.cli.errors import InputError
from moecluster.cli.finite import BoundedInt, BoundedText, FiniteFloatRange

# The bounds of a sweep's keys (`sweep.bounds`, which says why), for the same options here.
COUNT = BoundedInt(min=1, max=MAX_COUNT)


def console(stderr: bool = False) -> Console:
    """A rich console that keeps wide tables readable when stdout is not a terminal."""
    return Console(stderr=stderr, width=None if sys.stdout.isatty() else 150)


def _shape_table(moe: MoEShape, match: str) -> Table:
    p = moe.params()
    t = Table(title="Shapes and parameters (nothing run)", title_justify="left")
    for col in ("model", "shape", "total params", "active / token", "vs target", "width alignment"):
        t.add_column(col, justify="right" if col != "model" else "left")
    t.add_row("MoE", f"E={moe.num_experts} h={moe.expert_hidden_dim} L={moe.expert_num_layers} k={moe.top_k}",
              f"{p.total:,}", f"{p.active_per_token:,}", "", f"router {p.router:,}")
    for mode in ("total", "active", "seed"):
        d = match_dense(moe, mode)  # type: ignore[arg-type]
        dp = d.params().total
        target = p.active_per_token if mode == "active" else p.total
        mark = " (selected)" if mode == match else ""
        t.add_row(f"dense/{mode}{mark}", f"w={d.hidden_dim} L={d.num_layers}", f"{dp:,}", f"{dp:,}",
                  f"{(dp - target) / target:+.3%}", f"{d.alignment()}")
    return t


def _fmt(v: float | None, spec: str = ",.1f") -> str:
    return "n/a" if v is None else format(v, spec)


def _result_table(results: Sequence[TaskResult]) -> Table:
    t = Table(title="moecluster bench", title_justify="left")
    for col in ("model", "params", "inferences/s", "avg W", "idle W", "J", "inferences/J", "roofline", "energy"):
        t.add_column(col, justify="left" if col in ("model", "energy") else "right")
    for r in results:
        if r.status != "ok":
            t.add_row(r.spec.label(), "", "[red]failed (below)[/red]", "", "", "", "", "", "")
            continue
        joules = [w.energy_j for w in r.windows if w.energy_j is not None]
        roof = f"{r.roofline.fraction:.1%} ({r.roofline.bound})" if r.roofline else "n/a"
        energy = r.energy_source or f"unavailable: {escape(r.energy_unavailable_reason or '')}"
        t.add_row(r.spec.label(), f"{r.params.total:,}" if r.params else "", _fmt(r.inferences_per_s),
                  _fmt(r.avg_power_w), _fmt(r.idle_power_w), _fmt(sum(joules) / len(joules) if joules else None),
                  _fmt(r.inferences_per_j, ",.2f"), roof, energy)
    ratios = bench_ratio(results)
    if ratios is not None:
        t.add_section()
        t.add_row("MoE / dense [95 % CI]", "", fmt.ratio(ratios.inferences_per_s), fmt.ratio(ratios.power_w), "", "",
                  fmt.ratio(ratios.inferences_per_j), "", "")
    return t


def no_interval_warning(results: Sequence[TaskResult]) -> str | None:
    """One line naming the ratios printed without an interval and why, else None."""
    missing = missing_intervals(results)
    if missing is None:
        return None
    windows = missing.windows
    why = f"{windows} window per model (--repeats {windows})" if windows < 2 else "a side without an interval"
    return (f"moecluster: warning: MoE/dense {', '.join(missing.names)} has no 95 % interval ({why}): not a result;"
            " use --repeats 3 or more")


def warn_without_interval(results: Sequence[TaskResult]) -> None:
    """`no_interval_warning` on stderr, when there is one."""
    line = no_interval_warning(results)
    if line is not None:
        click.echo(line, err=True)


def echo_failures(results: Sequence[TaskResult]) -> None:
    """Each failed task's error in full on stderr, as plain text: a table cell would cut it, and
    rich would read `moecluster[llm]` in a hint as markup."""
    for r in results:
        if r.status != "ok":
            click.echo(f"moecluster: {r.spec.label()} failed: {r.error or 'no error recorded'}", err=True)


FORM_COLUMNS = ("layout", "kernel", "graph", "candidates", "choice")


def _form_table(results: Sequence[TaskResult]) -> Table | None:
    """How each model ran (its measured fastest form and the candidates' times), if recorded."""
    if not any(r.form for r in results):
        return None
    t = Table(title="Forms (chosen by measurement at prepare)", title_justify="left")
    for col in ("model", *FORM_COLUMNS):
        t.add_column(col, justify="left")
    for r in results:
        t.add_row(r.spec.label(), *(escape(r.form.get(col, "")) for col in FORM_COLUMNS))  # "[in,out]" is no markup
    return t


@click.command()
@click.option("--workload", type=click.Choice(["mlp", "llm", "serve"]), default="mlp", show_default=True,
              help="The seed's MLPs, transformer LLMs (needs transformers: pip install 'moecluster[llm]'), or"
                   " models behind an OpenAI-compatible server (pip install 'moecluster[serving]'; --url or"
                   " --command, docs/serving.md).")
@click.option("--preset", default=None, type=BoundedText(MAX_NAME_CHARS),
              help="mlp: the seed's MoE configuration (small, medium, large, xxl; default small). llm: an MoE preset"
                   " (tiny-mixtral, mixtral-8x7b-8l, qwen3-30b-a3b-12l, mixtral-8x7b, ...; default tiny-mixtral)."
                   " The shape options below override its fields.")
@click.option("--num-experts", type=COUNT, help="Experts E.")
@click.option("--expert-hidden-dim", type=COUNT, help="Hidden width of every expert.")
@click.option("--expert-num-layers", type=COUNT, help="Hidden layers of every expert.")
@click.option("--top-k", type=COUNT, help="Experts per token (<= E).")
@click.option("--impl", type=click.Choice([*IMPLS, "library"]), default="grouped", show_default=True,
              help="MoE implementation (mlp: naive, sorted, grouped; llm: library = transformers' own experts,"
                   " grouped = moecluster's kernels).")
@click.option("--match", type=click.Choice(["total", "active", "seed"]), default="total", show_default=True,
              help="Dense twin sized by total or active parameters (aligned widths), or the seed's exact width.")
@click.option("--num-layers", type=COUNT, help="llm: decoder layers (overrides the preset's).")
@click.option("--phase", type=click.Choice(["prefill", "decode"]), default="decode", show_default=True,
              help="llm: measure the prefill of the prompts, or the decode of --gen-tokens tokens after them.")
@click.option("--prompt-len", type=COUNT, default=512, show_default=True,
              help="llm: tokens per prompt.")
@click.option("--gen-tokens", type=COUNT, default=128, show_default=True,
              help="llm decode: tokens generated per sequence (one response; no early stop).")
@click.option("--path", "llm_path", type=click.Choice(["fast", "reference"]), default="fast", show_default=True,
              help="llm: moecluster's fast path (static KV cache, CUDA graphs) or transformers' generate as is.")
@click.option("--dtype", type=click.Choice(DTYPE_NAMES), default="float32", show_default=True)
@click.option("--batch-size", type=COUNT, default=128, show_default=True)
@click.option("--device", type=click.Choice(["cuda", "cpu"]), default=None, help="Default: cuda if present, else cpu.")
@click.option("--duration", "duration_s", type=FiniteFloatRange(min=0, min_open=True, max=MAX_WINDOW_S),
              default=30.0, show_default=True, help="Seconds of each measurement window.")
@click.option("--warmup", "warmup_s", type=FiniteFloatRange(min=0, max=MAX_WINDOW_S), default=5.0,
              show_default=True, help="Seconds of warm-up before the first window (at least 3 batches).")
@click.option("--repeats", type=COUNT, default=3, show_default=True,
              help="Windows per model, in counterbalanced order (dense MoE MoE dense ...: drift cancels); the ratios'"
                   " 95 % intervals are over them (one window has none).")
@click.option("--load", type=click.Choice(["router", "zipf"]), default="router", show_default=True,
              help="Expert load: the router's own top-k, or a Zipf-skewed assignment.")
@click.option("--zipf-s", type=FiniteFloatRange(min=0, max=MAX_ZIPF_S), default=1.2, show_default=True,
              help="Zipf exponent.")
@click.option("--train-epochs", type=BoundedInt(min=0, max=MAX_COUNT), default=0, show_default=True,
              help="Train both models on the seed's synthetic task first (the seed uses 15).")
@click.option("--compile/--no-compile", "compile_", default=False, help="torch.compile the models.")
@click.option("--cuda-graphs", "cuda_graphs", is_flag=True,
              help="Require a CUDA graph for both models (fails where one is impossible: naive and sorted sync with"
                   " the host). Default: capture wherever possible, and record why not where not.")
@click.option("--eager", is_flag=True, help="Never capture a CUDA graph: launch every kernel eagerly, the seed's way.")
@click.option("--meter", type=click.Choice(["auto", "nvml", "fake", "none"]), default="auto", show_default=True,
              help="Energy source: NVML when present, a fake power model, or none.")
@click.option("--seed", type=BoundedInt(min=0, max=MAX_SEED), default=0, show_default=True,
              help="Weights, inputs and load are drawn from it.")
@click.option("--dry-run", is_flag=True, help="Print both models' shapes and parameter counts; run nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result records as JSON instead of a table.")
@serve_options
def bench(workload: str, preset: str | None, num_experts: int | None, expert_hidden_dim: int | None,
          expert_num_layers: int | None, top_k: int | None, impl: str, match: str, num_layers: int | None, phase: str,
          prompt_len: int, gen_tokens: int, llm_path: str, dtype: str, batch_size: int, device: str | None,
          duration_s: float, warmup_s: float, repeats: int, load: str, zipf_s: float, train_epochs: int,
          compile_: bool, cuda_graphs: bool, eager: bool, meter: str, seed: int, dry_run: bool, as_json: bool,
          **serve: Any) -> None:
    """Measure one dense/MoE pair on this machine (no Ray): throughput, energy, roofline."""
    ctx = click.get_current_context()
    own_bench = OWN_BENCHES.get(workload)  # the MLP's bench is the rest of this body
    if own_bench is not None:
        own_bench(ctx, serve=serve, preset=preset,
                  overrides={"num_experts": num_experts, "top_k": top_k, "num_layers": num_layers},
                  impl=impl, match=match, dtype=dtype, batch_size=batch_size, device=device, phase=phase,
                  prompt_len=prompt_len, gen_tokens=gen_tokens, path=llm_path, required_graphs=cuda_graphs,
                  eager=eager, dry_run=dry_run, as_json=as_json, duration_s=duration_s, warmup_s=warmup_s,
                  repeats=repeats, meter=meter, seed=seed)
        return
    refuse_serve_options(ctx, workload, serve)
    llm_given = [f"--{name.replace('_', '-')}" for name in ("num_layers", "phase", "prompt_len", "gen_tokens")
                 if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    if ctx.get_parameter_source("llm_path") == click.core.ParameterSource.COMMANDLINE:
        llm_given.append("--path")
    if llm_given:
        raise InputError(f"{llm_given[0]} is an option of --workload llm")
    with window_status(dry_run) as on_window:
        done = bench_mlp(preset=preset, overrides={"num_experts": num_experts, "expert_hidden_dim": expert_hidden_dim,
                                                   "expert_num_layers": expert_num_layers, "top_k": top_k},
                         impl=impl, match=match, device=device, required_graphs=cuda_graphs, eager=eager,
                         dry_run=dry_run, on_window=on_window, dtype=dtype, batch_size=batch_size,
                         duration_s=duration_s, warmup_s=warmup_s, repeats=repeats, load=load, zipf_s=zipf_s,
                         train_epochs=train_epochs, compile=compile_, meter=meter, seed=seed)
    if dry_run:
        moe, dense = done.moe, done.dense
        if as_json:
            click.echo(json.dumps({"moe": {**moe.as_model(), "params": vars(moe.params())},
                                   "dense": {**dense.as_model(), "match": match, "params": vars(dense.params())}},
                                  indent=2))
        else:
            console().print(_shape_table(moe, match))
        return
    print_results(done.results, as_json, [_result_table(done.results), _form_table(done.results)])


def print_results(results: Sequence[TaskResult], as_json: bool, tables: Sequence[Any]) -> None:
    """The results as JSON, or `tables` (None: left out) then each failure and a missing interval on stderr;
    exit code 1 where a task failed."""
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        for table in tables:
            if table is not None:
                console().print(table)
        echo_failures(results)
        if len(results) == 2:
            warn_without_interval(results)
    if any(r.status != "ok" for r in results):
        sys.exit(1)


@contextmanager
def window_status(dry_run: bool = False) -> Iterator[OnWindow]:
    """A status line on stderr while a bench runs (none for a dry run), and the `on_window` that updates it."""
    if dry_run:
        yield lambda spec, r: None
        return
    with console(stderr=True).status("waiting for the device if another run holds it") as status:
        def on_window(spec: TaskSpec, r: int | None) -> None:
            status.update(f"measuring {spec.task_id} ({spec.repeats} windows)" if r is None else
                          f"repeat {r + 1}/{spec.repeats}: {spec.label()} ({spec.duration_s:g} s window)")

        yield on_window


MLP_ONLY_OPTIONS = {"expert_hidden_dim": "--expert-hidden-dim", "expert_num_layers": "--expert-num-layers",
                    "load": "--load", "zipf_s": "--zipf-s", "train_epochs": "--train-epochs", "compile_": "--compile"}


def _llm(ctx: click.Context, *, serve: dict[str, Any], **options: Any) -> None:
    """`bench --workload llm`: refuse the MLP-only and serve options given, then hand over to `bench_llm`."""
    from moecluster.cli.bench_llm import run_llm_bench

    refuse_serve_options(ctx, "llm", serve)
    for name, flag in MLP_ONLY_OPTIONS.items():
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            raise InputError(f"{flag} is an option of --workload mlp")
    run_llm_bench(**options)


def _serve(ctx: click.Context, *, serve: dict[str, Any], device: str | None, duration_s: float, warmup_s: float,
           repeats: int, meter: str, seed: int, match: str, as_json: bool, **_: Any) -> None:
    """`bench --workload serve`: one served model or a served pair (`bench_serve`)."""
    run_serve_bench(ctx, serve, device=device, duration_s=duration_s, warmup_s=warmup_s, repeats=repeats,
                    meter=meter, seed=seed, match=match, as_json=as_json)


#: The workloads whose `bench` is a command of its own, by name (`--workload`).
OWN_BENCHES: dict[str, Callable[..., None]] = {"llm": _llm, "serve": _serve}


COMMANDS = [bench]
