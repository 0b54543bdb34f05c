"""Expand a serve sweep (`workload: serve`) into pairs: per served pair × load level (a concurrency or a
request rate), one pair of tasks — the dense model(s) first, then the MoE — measured alternately (A B B A)
on the same GPUs, each side's window behind a fresh server start.

Task ids read `<pair>-c<concurrency>-dense-<match>` / `-moe` (open loop: `<pair>-r<rate>-…`); a task's
`model` holds the user's parameter counts (`params_total`, `params_active`) and its `serve` the server, the
prompts and the load. An open loop's arrivals are seeded by `arrival_seed` alone, so every side of a pair
(and every pair at the same rate) gets the same arrival times.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from moecluster.spec.records import Kind, ServeSpec, TaskSpec

from moecluster.head.sweep.error import SweepError
from moecluster.head.sweep.estimate import task_estimate_s
from moecluster.head.sweep.pairs import PairPlan, Plan
from moecluster.head.sweep.schema import SweepFile
from moecluster.head.sweep.serve_schema import ServedModel, ServeSection, prompts_of

#: What a server start is estimated at: this share of its `startup_timeout_s`. The head's watchdog fails a
#: pair at twice its estimate (`estimate.watchdog_s`), so half the bound keeps a server that loads within its
#: own bound safe from the watchdog (the dry run's times are then pessimistic for a quick server).
SERVER_START_SHARE = 0.5
#: Where a task's server log goes, under its run directory.
SERVERS_DIR = "servers"


def serve_task_count(sweep: SweepFile) -> tuple[int, str]:
    """The tasks a serve sweep plans, and the product that gives them (before replicates)."""
    section = _section(sweep)
    levels = len(section.load_levels())
    count = sum(1 + len(p.dense) for p in section.pairs) * levels * len(sweep.accelerator_type)
    factors = [f"{len(section.pairs)} served pairs", f"{levels} {section.load_axis}"]
    return count, " × ".join(factors) + " (each its MoE and dense models)"


def _section(sweep: SweepFile) -> ServeSection:
    if sweep.serve is None:
        raise SweepError(f"sweep {sweep.name!r}: workload serve needs a serve section")
    return sweep.serve


def _serve_spec(model: ServedModel, section: ServeSection, level: tuple[int, float | None],
                prompts: tuple[str, ...]) -> ServeSpec:
    concurrency, rate = level
    open_loop: dict[str, Any] = {} if rate is None else dict(
        request_rate=rate, burstiness=section.burstiness, max_in_flight=section.max_in_flight,
        arrival_seed=section.arrival_seed)
    return ServeSpec(name=model.name, model=model.model, command=model.command, url=model.url,
                     concurrency=concurrency, max_tokens=section.max_tokens, output=section.output, prompts=prompts,
                     startup_timeout_s=model.startup_timeout_s or section.startup_timeout_s,
                     request_timeout_s=section.request_timeout_s, **open_loop)


def expand_serve(sweep: SweepFile, run_id: str = "local") -> Plan:
    """Every pair of a serve sweep, in file order (served pairs outermost, then the load levels)."""
    section = _section(sweep)
    try:
        prompts = prompts_of(section)
    except ValueError as exc:
        raise SweepError(f"serve.prompts: {exc}") from None
    pairs: list[PairPlan] = []
    for served in section.pairs:
        for accelerator in sweep.accelerator_type:
            for level in section.load_levels():
                concurrency, rate = level
                load_id = f"c{concurrency}" if rate is None else f"r{rate:g}".replace("+", "")
                pair_id = f"{served.name}-{load_id}" + (f"-{accelerator}" if len(sweep.accelerator_type) > 1
                                                             else "")
                common: dict[str, Any] = dict(
                    pair_id=pair_id, run_id=run_id, workload=sweep.workload, device=sweep.device,
                    duration_s=sweep.duration_s, warmup_s=sweep.warmup_s, repeats=sweep.repeats, meter=sweep.meter,
                    sample_power=sweep.sample_power, reverse_order=len(pairs) % 2 == 1,
                    batch_size=concurrency or section.max_in_flight or 1,
                    dtype="bfloat16" if sweep.device == "cuda" else "float32")
                sides: list[tuple[ServedModel, Kind, str | None]] = [(d, "dense", d.match or d.name)
                                                                     for d in served.dense]
                sides.append((served.moe, "moe", None))
                tasks = tuple(TaskSpec(
                    task_id=f"{pair_id}-dense-{match}" if kind == "dense" else f"{pair_id}-moe", kind=kind,
                    impl="served" if kind == "moe" else "dense", match=match, model_name=m.name,
                    model={"params_total": m.params_total, "params_active": m.active},
                    serve=_serve_spec(m, section, level, prompts), **common) for m, kind, match in sides)
                pairs.append(PairPlan(
                    pair_id=pair_id, model=served.name, tasks=tasks,
                    params_total=tuple(m.params_total for m, _, _ in sides),
                    params_active=tuple(m.active for m, _, _ in sides),
                    estimated_s=tuple(_estimate_s(t) for t in tasks), gpus=1,
                    accelerator_type=accelerator, placement_strategy=sweep.placement_strategy))
    return Plan(pairs=tuple(pairs), skipped=())


def _estimate_s(task: TaskSpec) -> float:
    """Seconds a served task holds its GPUs: per window a server start (`SERVER_START_SHARE` of its bound), the
    fill and warm-up, the window and the drain (a request's timeout at most; estimated as the window)."""
    serve = task.serve
    start_s = SERVER_START_SHARE * serve.startup_timeout_s if serve is not None else 0.0
    return task_estimate_s(task, 0) + task.repeats * (start_s + task.duration_s)


def with_log_dir(plan: Plan, run_dir: Path) -> Plan:
    """The plan with every serve task's server log under `<run_dir>/servers` (absolute: the node writes it)."""
    logs = str((run_dir / SERVERS_DIR).absolute())
    pairs = tuple(replace(p, tasks=tuple(replace(t, serve=replace(t.serve, log_dir=logs)) if t.serve else t
                                         for t in p.tasks)) for p in plan.pairs)
    return replace(plan, pairs=pairs)
