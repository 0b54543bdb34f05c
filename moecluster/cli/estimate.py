"""`moecluster estimate`: analytic parameters, roofline, critical batch and EP traffic of MoE models."""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from moecluster.spec.mlp.shapes import PRESETS, ShapeError
from moecluster.head.estimate import (GPUS, KNOWN, Estimation, GpuSpec, ModelShape, estimate, gpu, mlp_preset)
from moecluster.head.estimate.formulas import DTYPE_BYTES
from moecluster.head.estimate.gpus import ALIASES
from moecluster.report.fmt import params as _params, seconds as _time, si as _si

from moecluster.head.sweep.bounds import MAX_COUNT
from moecluster.head.sweep.shown import shown
from moecluster.workloads.registry import workload

from moecluster.cli.errors import InputError, sweep_refused
from moecluster.cli.finite import BoundedInt

# A sweep's bound on counts (`sweep.bounds`): the same for the options that describe one.
COUNT = BoundedInt(min=1, max=MAX_COUNT)

# Far above any real model (1e15 parameters), far below float overflow: `1e400` is refused, not a traceback.
_MAX_COUNT = 1e15
_SUFFIX = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def parse_count(text: str, name: str) -> int:
    """`46.7B`, `5.6e9`, `12,900,000` -> an integer count; InputError naming the option."""
    m = re.fullmatch(r"\s*([0-9][0-9_,]*\.?[0-9]*(?:e[0-9]+)?)\s*([kKmMbBgGtT]?)\s*", text)
    if not m:
        raise InputError(f"{name}: {text!r} is not a count (e.g. 5.6B, 5.6e9, 5600000000)")
    count = float(m.group(1).replace(",", "").replace("_", "")) * _SUFFIX[m.group(2).lower()]
    if not math.isfinite(count) or count > _MAX_COUNT:
        raise InputError(f"{name}: {text!r} is too large (at most {_MAX_COUNT:.0e})")
    return int(round(count))


def _explicit(experts: int | None, top_k: int | None, expert_params: str | None, shared_params: str | None,
              d_model: int | None, moe_layers: int | None) -> ModelShape | None:
    given = {"--experts": experts, "--top-k": top_k, "--expert-params": expert_params}
    if all(v is None for v in (*given.values(), shared_params, d_model, moe_layers)):
        return None
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise InputError(f"an explicit shape needs {', '.join(missing)} as well")
    try:
        return ModelShape("custom", parse_count(shared_params or "0", "--shared-params"),
                          parse_count(expert_params, "--expert-params"), experts, top_k,  # type: ignore[arg-type]
                          d_model or 0, d_model or 0, moe_layers or 0)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _a2a(r: Estimation) -> str:
    if r.all_to_all_bytes_per_token is None:
        return "n/a: needs --d-model, --moe-layers"
    return _si(r.all_to_all_bytes_per_token, "B") if r.all_to_all_bytes_per_token else "0 B"


def _sweep_rows(path: Path, gpu_spec: GpuSpec) -> list[Estimation]:
    """One estimate per distinct MoE shape × dtype × batch × EP degree of a sweep file."""
    from moecluster.head.sweep import SweepError, expand, load_sweep

    try:
        plan = expand(load_sweep(path))
    except SweepError as exc:
        raise sweep_refused(exc) from None
    refusal = next((workload(p.moe.workload).estimate_refusal for p in plan.pairs
                    if workload(p.moe.workload).estimate_refusal), None)
    if refusal:
        raise InputError(f"{path}: {refusal}")
    rows: dict[tuple, Estimation] = {}
    for pair in plan.pairs:
        moe = pair.moe
        # an LLM forward processes batch × prompt tokens in prefill, one per sequence in decode
        tokens = moe.batch_size * (moe.prompt_len if moe.phase == "prefill" else 1)
        key = (pair.model, tuple(sorted(dict(moe.model).items())), moe.dtype, tokens, moe.expert_parallel)
        if key in rows:
            continue
        if moe.dtype not in gpu_spec.flops_per_s:
            raise InputError(f"{path}: dtype {moe.dtype} has no datasheet peak on {gpu_spec.label}")
        try:
            shape = workload(moe.workload).analytic_shape(moe, pair.model)
        except (ShapeError, TypeError) as exc:
            raise InputError(f"{path}: model {pair.model}: {exc}") from None
        rows[key] = estimate(shape, gpu_spec, moe.dtype, tokens, moe.expert_parallel)
    if not rows:
        raise InputError(f"{path}: the sweep expands to no MoE task")
    return list(rows.values())


def _tables(rows: list[Estimation]) -> list[Table]:
    first = rows[0]
    varies = len({(r.dtype, r.batch_size, r.expert_parallel) for r in rows}) > 1
    t1 = Table(title="Total vs active parameters (seed 003) and dense-equivalent size (seed 004)",
               title_justify="left")
    for col in ("model", "E", "k", "total", "active", "active/total", "dense-equivalent", "published"):
        t1.add_column(col, justify="left" if col in ("model", "published") else "right")
    for r in rows:
        m = r.model
        t1.add_row(m.name, str(m.num_experts), str(m.top_k), _params(m.total_params), _params(m.active_params),
                   f"{m.active_ratio:.1%}", _params(r.dense_equivalent_params), m.published)
    g = GPUS[first.gpu]
    setting = "" if varies else f" ({first.dtype}, batch {first.batch_size}, EP degree {first.expert_parallel})"
    t2 = Table(title=f"Roofline per token on {g.label}{setting}; {g.source}", title_justify="left")
    extra = ("dtype", "batch", "EP") if varies else ()
    for col in ("model", *extra, "FLOPs/token", "bytes/token", "time/token", "bound", "energy/token @TDP",
                "critical batch GPU / MoE", "all-to-all/token"):
        t2.add_column(col, justify="left" if col in ("model", "dtype", "bound") else "right")
    for r in rows:
        cells = (r.dtype, str(r.batch_size), str(r.expert_parallel)) if varies else ()
        t2.add_row(r.model.name, *cells, _si(r.flops_per_token), _si(r.bytes_per_token, "B"),
                   _time(r.roofline_s_per_token),
                   r.roofline_bound, _si(r.roofline_j_per_token, "J"),
                   f"{r.critical_batch:,.0f} / {r.moe_critical_batch:,.0f}", _a2a(r))
    return [t1, t2]


@click.command("estimate")
@click.option("--model", "models", multiple=True, metavar="NAME",
              help=f"A known model (repeatable): {', '.join(KNOWN)}; 'all' for every one.")
@click.option("--preset", "presets", multiple=True, type=click.Choice(list(PRESETS)),
              help="One of the seed's MLP MoE presets (repeatable).")
@click.option("--experts", type=COUNT, help="Explicit shape: number of (routed) experts E.")
@click.option("--top-k", type=COUNT, help="Explicit shape: experts per token k.")
@click.option("--expert-params", metavar="COUNT", help="Explicit shape: one expert's parameters, all layers (5.6B).")
@click.option("--shared-params", metavar="COUNT", help="Explicit shape: always-active parameters (1.6B).")
@click.option("--d-model", type=COUNT, help="Explicit shape: width sent to an expert (for EP traffic).")
@click.option("--moe-layers", type=COUNT, help="Explicit shape: MoE layers per token (for EP traffic).")
@click.option("--gpu", "gpu_name", default="h100", show_default=True,
              type=click.Choice(sorted([*GPUS, *ALIASES])), help="Datasheet ceilings of this GPU.")
@click.option("--dtype", default="bfloat16", show_default=True, type=click.Choice(list(DTYPE_BYTES)),
              help="Weights and activations dtype.")
@click.option("--batch-size", default=1, show_default=True, type=COUNT, help="Tokens per batch.")
@click.option("--ep", "expert_parallel", default=1, show_default=True, type=COUNT,
              help="Expert-parallel degree (for all-to-all bytes per token).")
@click.option("--sweep", "sweep_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Every MoE shape of a sweep file, at its own dtype, batch size and EP degree.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def estimate_cmd(models: tuple[str, ...], presets: tuple[str, ...], experts: int | None, top_k: int | None,
                 expert_params: str | None, shared_params: str | None, d_model: int | None, moe_layers: int | None,
                 gpu_name: str, dtype: str, batch_size: int, expert_parallel: int, sweep_file: Path | None,
                 as_json: bool) -> None:
    """Analytic view of MoE models: total/active parameters, dense-equivalent size, roofline.

    With no model, preset, shape or sweep given, every known model is shown (seed 003's
    table). `--sweep` estimates every MoE shape of a sweep file at its own dtype, batch
    size and expert-parallel degree.
    Figures are estimates from published shapes and datasheet peaks; see
    `moecluster report` for what was measured.
    """
    shapes: list[ModelShape] = []
    names = list(KNOWN) if "all" in models else list(models)
    for name in names:
        if name.lower() not in KNOWN:
            raise InputError(f"--model {shown(name)} unknown (known: {', '.join(KNOWN)}, all)")
        shapes.append(KNOWN[name.lower()])
    try:
        shapes += [mlp_preset(p) for p in presets]
    except ShapeError as exc:
        raise InputError(str(exc)) from None
    custom = _explicit(experts, top_k, expert_params, shared_params, d_model, moe_layers)
    if custom is not None:
        shapes.append(custom)
    spec = gpu(gpu_name)
    rows = _sweep_rows(sweep_file, spec) if sweep_file is not None else []
    if not shapes and not rows:
        shapes = list(KNOWN.values())
    if shapes and dtype not in spec.flops_per_s:
        raise InputError(f"--dtype {dtype}: {spec.label} has no datasheet peak for it"
                         f" ({', '.join(spec.flops_per_s)})")
    rows = [estimate(m, spec, dtype, batch_size, expert_parallel) for m in shapes] + rows
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    console = Console(width=None if sys.stdout.isatty() else 160)
    for table in _tables(rows):
        console.print(table)
    for m in dict.fromkeys(r.model for r in rows):
        if m.note:
            console.print(f"[dim]{m.name}: {m.note}[/dim]")
    console.print("[dim]FLOPs/token = 2 × active; bytes/token = weights read once per batch (uniform routing);"
                  " time = max(compute, memory); energy at the board's TDP. Critical batch: tokens per batch"
                  " at which the MoE's experts turn compute-bound (GPU ridge × E/k).[/dim]")


COMMANDS = [estimate_cmd]
