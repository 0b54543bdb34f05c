"""`moecluster submit`, `runs`, `status`: run a sweep on Ray, list runs, inspect one.

`submit` validates the sweep (exit 2 and one line naming the key if it is bad; nothing is
started and no run directory is left), expands it into matched pairs, reaches Ray (a local
instance, or `--address`), checks the cluster can run every pair, creates
`runs/<run-id>/`, and stores every task's result the moment it returns. `--resume RUN_ID`
runs only the tasks of a run that are missing or failed.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml

from moecluster.orchestrator import rundir
from moecluster.orchestrator.store import RunStore, StoreDamaged

from .errors import InputError
from .finite import FiniteFloatRange

# A real sweep is tens to a few thousand tasks; 10,000 is hours of GPU time at the shortest
# windows. `--max-tasks` raises it; the count is taken before expanding (sweep/size.py).
DEFAULT_MAX_TASKS = 10_000
# A dry run prints the first rows of a bigger plan and a summary line, not every row.
DRY_RUN_ROWS = 200

if TYPE_CHECKING:
    from moecluster.orchestrator.sweep import PairPlan, Plan, SweepFile

# The sweep, the views and Ray are imported inside the commands: this module is imported
# whenever the CLI package is (for registration), also by modules the sweep itself imports.


def _overrides(pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {item!r}: expected KEY=VALUE, e.g. --set repeats=1")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise InputError(f"--set {key}: value is not YAML: {' '.join(str(exc).split())}") from None
    return out


def _missing_pairs(plan: Plan, status: dict[str, str]) -> list[PairPlan]:
    """The pairs with a task not stored `ok`, reduced to those tasks (a dense-only rest needs one GPU)."""
    out = []
    for pair in plan.pairs:
        keep = [(i, t) for i, t in enumerate(pair.tasks) if status.get(t.task_id) != "ok"]
        if not keep:
            continue
        idx = [i for i, _ in keep]
        tasks = tuple(t for _, t in keep)
        out.append(replace(pair, tasks=tasks, params_total=tuple(pair.params_total[i] for i in idx),
                           params_active=tuple(pair.params_active[i] for i in idx),
                           estimated_s=tuple(pair.estimated_s[i] for i in idx),
                           gpus=pair.gpus if any(t.kind == "moe" for t in tasks) else 1))
    return out


def _write_new_run(run_dir: Path, sweep: SweepFile, source: Path, plan: Plan) -> None:
    resolved = sweep.model_dump(mode="json", exclude_none=True)
    header = f"# resolved by moecluster from {source} ({len(plan.pairs)} pairs, {len(plan.tasks)} tasks)\n"
    (run_dir / rundir.SWEEP_FILE).write_text(header + yaml.safe_dump(resolved, sort_keys=False))
    (run_dir / rundir.SOURCE_FILE).write_text(source.read_text())
    with RunStore(run_dir) as store:
        store.set_plan((t, est) for p in plan.pairs for t, est in zip(p.tasks, p.estimated_s))


def _start_agents(run_dir: Path, port: int, device: str) -> None:
    from . import submit_views as views

    try:
        from moecluster.orchestrator.node_agents import ensure_node_agents

        addresses = ensure_node_agents(run_dir, port=port, device=device)
        views.console(stderr=True).print(f"node agents: {', '.join(addresses)}", highlight=False)
    except Exception as exc:  # noqa: BLE001 - live metrics are a convenience; the sweep runs without
        click.echo(f"moecluster: warning: node agents not started ({type(exc).__name__}: "
                   f"{' '.join(str(exc).split())[:200]}); the sweep runs without live metrics", err=True)


def _warn(line: str) -> None:
    click.echo(f"moecluster: warning: {line}", err=True)


@click.command()
@click.argument("sweep_file", required=False, type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the task table (pairs, shapes, parameters, GPUs, estimated"
              " time) and exit; Ray is not started.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print the planned tasks as JSON.")
@click.option("--address", help="Join an existing Ray cluster (`auto`, `host:port`, `ray://host:port`);"
              " the token comes from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token."
              " Default: start a local Ray instance with this machine's GPUs (or CPUs).")
@click.option("--resume", "resume_id", metavar="RUN_ID", help="Finish a run: run only its missing and failed tasks.")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path),
              help=f"Root of the run directories (default: ${rundir.ENV_VAR}, else ./runs).")
@click.option("--run-id", help="Name of the new run (default: <sweep name>-<date>-<time>).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a top-level sweep key, e.g. --set repeats=1 --set 'batch_size=[128, 512]'.")
@click.option("--meter", type=click.Choice(["auto", "nvml", "fake", "none"]),
              help="Energy source for every task (overrides the sweep's `meter`).")
@click.option("--max-tasks", type=click.IntRange(min=1), default=DEFAULT_MAX_TASKS, show_default=True,
              help="Refuse a sweep planning more tasks than this (counted before expanding).")
@click.option("--max-retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="Ray retries of a pair lost with its node or worker (a failing task is not retried).")
@click.option("--num-gpus", type=click.IntRange(min=0), help="GPUs of the local instance (default: detected).")
@click.option("--num-cpus", type=click.IntRange(min=1), help="CPUs of the local instance (default: detected).")
@click.option("--cpus-per-task", type=FiniteFloatRange(min=0), default=1.0, show_default=True,
              help="CPUs each pair (each rank) holds besides its GPU.")
@click.option("--agents/--no-agents", default=True, show_default=True,
              help="Make sure a metrics agent serves on every node (for Prometheus and Grafana).")
@click.option("--agent-port", type=click.IntRange(min=0, max=65535), default=9400, show_default=True)
@click.option("--dashboard/--no-dashboard", default=False, show_default=True,
              help="Start Ray's dashboard with the local instance.")
def submit(sweep_file: Path | None, dry_run: bool, as_json: bool, address: str | None, resume_id: str | None,
           runs_dir: Path | None, run_id: str | None, sets: tuple[str, ...], meter: str | None, max_tasks: int,
           max_retries: int,
           num_gpus: int | None, num_cpus: int | None, cpus_per_task: float, agents: bool, agent_port: int,
           dashboard: bool) -> None:
    """Run a sweep of matched dense/MoE pairs on Ray and store every result as it arrives."""
    from moecluster.orchestrator.sweep import SweepError

    try:
        _submit(sweep_file, dry_run, as_json, resume_id, runs_dir, run_id, sets, meter, max_tasks,
                dict(address=address, max_retries=max_retries, num_gpus=num_gpus, num_cpus=num_cpus,
                     cpus_per_task=cpus_per_task, agents=agents, agent_port=agent_port, dashboard=dashboard))
    except SweepError as exc:
        raise InputError(str(exc)) from None
    except StoreDamaged as exc:
        raise InputError(f"run {resume_id!r} is damaged: {exc}") from None


def _submit(sweep_file: Path | None, dry_run: bool, as_json: bool, resume_id: str | None, runs_dir: Path | None,
            run_id: str | None, sets: tuple[str, ...], meter: str | None, max_tasks: int,
            run_options: dict[str, Any]) -> None:
    from moecluster.orchestrator.sweep import expand, load_sweep
    from moecluster.orchestrator.sweep.size import check_task_count

    root = rundir.runs_root(runs_dir)
    if resume_id is not None:
        if sweep_file is not None or run_id is not None or sets or meter:
            raise click.UsageError("--resume RUN_ID takes the run's own sweep: give no SWEEP_FILE, --run-id,"
                                   " --set or --meter")
        run_dir = rundir.find_run(root, resume_id)
        with RunStore(run_dir, read_only=True) as store:
            meta = store.meta()
        from . import submit_views as views

        if views.run_state(meta) == "running":
            raise InputError(f"run {resume_id} is still running (pid {meta.get('pid')} on {meta.get('host')});"
                             " stop that head first")
        source = run_dir / rundir.SWEEP_FILE
        sweep = load_sweep(source)
        plan = expand(sweep, run_id=resume_id)
        with RunStore(run_dir, read_only=True) as store:
            planned = [spec.task_id for spec, _ in store.planned()]
            status = store.task_status()
        if planned != [t.task_id for t in plan.tasks]:
            raise InputError(f"run {resume_id}: its sweep.yaml no longer expands to the tasks it planned")
        pairs = _missing_pairs(plan, status)
        run_id, explicit = resume_id, True
        if not pairs:
            click.echo(f"run {run_id}: nothing to do, all {len(plan.tasks)} tasks are stored ok")
            return
    else:
        if sweep_file is None:
            raise click.UsageError("give a SWEEP_FILE (or --resume RUN_ID)")
        overrides = _overrides(sets)
        if meter:
            overrides["meter"] = meter
        source = sweep_file
        sweep = load_sweep(sweep_file, overrides)
        explicit = run_id is not None
        run_id = rundir.check_run_id(run_id) if run_id else rundir.new_run_id(sweep.name)
        if explicit and (root / run_id).exists():
            raise InputError(f"run {run_id!r} already exists under {root} (use --resume {run_id} to finish it)")
        check_task_count(sweep, max_tasks)
        plan = expand(sweep, run_id=run_id)
        pairs = list(plan.pairs)
    _refuse_gangs_without_node_side(pairs, source)
    from moecluster.orchestrator.sweep.estimate import short_window_warning

    warning = short_window_warning(sweep.duration_s, sweep.device, sweep.meter)
    if warning:
        click.echo(f"moecluster: warning: {warning}", err=True)
    if dry_run:
        _print_plan(replace(plan, pairs=tuple(pairs)), sweep, as_json)
        return
    _run(pairs, plan, sweep, root=root, run_id=run_id, resume=resume_id is not None, sweep_file=sweep_file,
         explicit_id=explicit, **run_options)


def _refuse_gangs_without_node_side(pairs: list[PairPlan], source: Path) -> None:
    """InputError when a pair needs a gang (expert_parallel > 1) and this installation lacks
    the node side that runs one: nothing is measured rather than something that is not EP."""
    if not any(p.gpus > 1 for p in pairs):
        return
    from moecluster.agents.node.capability import gang_problem

    problem = gang_problem()
    if problem is not None:
        raise InputError(f"{source}: expert_parallel > 1 cannot run: {problem}")


def _print_plan(plan: Plan, sweep: SweepFile, as_json: bool) -> None:
    from . import submit_views as views

    if as_json:
        rows = [{**t.to_dict(), "estimated_s": est, "params_total": pt, "params_active": pa,
                 "gpus": p.gpus if t.kind == "moe" else 1}
                for p in plan.pairs for t, est, pt, pa in zip(p.tasks, p.estimated_s, p.params_total, p.params_active)]
        click.echo(json.dumps({"sweep": sweep.name, "pairs": len(plan.pairs), "tasks": rows,
                               "skipped": list(plan.skipped)}, indent=2))
        return
    out = views.console()
    shown = _first_pairs(plan, DRY_RUN_ROWS)
    out.print(views.plan_table(replace(plan, pairs=shown), f"sweep {sweep.name}: dry run, nothing started"))
    hidden = len(plan.pairs) - len(shown)
    if hidden:
        shown_rows = sum(len(p.tasks) for p in shown)
        out.print(f"... first {shown_rows} of {len(plan.tasks):,} tasks shown; {hidden:,} more pairs not printed"
                  " (--json lists every task)", highlight=False)
    out.print(views.plan_summary(plan), highlight=False)


def _first_pairs(plan: Plan, max_rows: int) -> tuple[PairPlan, ...]:
    """The leading pairs of `plan` whose tasks fit in `max_rows` table rows (at least one pair)."""
    shown: list[PairPlan] = []
    rows = 0
    for pair in plan.pairs:
        if shown and rows + len(pair.tasks) > max_rows:
            break
        shown.append(pair)
        rows += len(pair.tasks)
    return tuple(shown)


def _run(pairs: list[PairPlan], plan: Plan, sweep: SweepFile, *, root: Path, run_id: str, resume: bool,
         sweep_file: Path | None, explicit_id: bool, address: str | None, max_retries: int, num_gpus: int | None,
         num_cpus: int | None, cpus_per_task: float, agents: bool, agent_port: int, dashboard: bool) -> None:
    from moecluster.orchestrator import schedule
    from moecluster.orchestrator.environment import collect_environment
    from moecluster.orchestrator.local_submits import registered_submit

    from . import submit_views as views

    err = views.console(stderr=True)
    try:
        schedule.connect(schedule.ClusterOptions(address=address, num_cpus=num_cpus, num_gpus=num_gpus,
                                                 include_dashboard=dashboard))
    except schedule.ClusterError as exc:
        raise InputError(str(exc)) from None
    try:
        inv = schedule.inventory()
        try:
            schedule.check_feasible(pairs, inv, cpus_per_task)
        except schedule.ClusterError as exc:
            raise InputError(str(exc)) from None
        if resume:
            run_dir = root / run_id
        else:
            run_dir, new_id = rundir.create_run_dir(root, run_id, explicit=explicit_id)
            if new_id != run_id:  # a generated id taken in the same second: the tasks carry the new one
                from moecluster.orchestrator.sweep import expand

                run_id, plan = new_id, expand(sweep, run_id=new_id)
                pairs = list(plan.pairs)
            assert sweep_file is not None
            _write_new_run(run_dir, sweep, sweep_file, plan)
        with RunStore(run_dir) as store:
            meta = store.meta()
            store.set_meta(state="running", host=socket.gethostname(), pid=os.getpid(), sweep=sweep.name,
                           address=address or "local", created_at=meta.get("created_at", time.time()),
                           resumed_at=time.time() if resume else None)
            try:
                env_name = rundir.ENVIRONMENT_FILE if not resume else \
                    f"environment-resume-{time.strftime('%Y%m%d-%H%M%S')}.json"
                cluster = {"address": address or "local", **schedule.probe_nodes()}
                (run_dir / env_name).write_text(json.dumps(collect_environment(cluster), indent=2) + "\n")
                gpu_mode = any(schedule.uses_gpus(p, inv.total_gpus) for p in pairs)
                slots = schedule.parallel_slots(inv, gpu_mode, cpus_per_task)
                err.print(f"run {run_id}: {sum(len(p.tasks) for p in pairs)} tasks in {len(pairs)} pairs on"
                          f" {len(inv.nodes)} node(s), {slots} slot(s) -> {run_dir}", highlight=False)
                if agents:
                    _start_agents(run_dir, agent_port, "fake" if sweep.meter == "fake" else "auto")
                progress = views.SweepProgress(pairs, slots, sweep.name)
                scheduler = schedule.Scheduler(store, inv, schedule.ScheduleOptions(
                    max_retries=max_retries, cpus_per_task=cpus_per_task), progress)
                started = time.time()
                with registered_submit(run_id, address, say=_warn), progress:  # warns of another submit here
                    counts = scheduler.run(pairs)
            except KeyboardInterrupt:
                store.set_meta(state="interrupted", finished_at=time.time())
                click.echo(f"moecluster: interrupted; finish with: moecluster submit --resume {run_id}", err=True)
                sys.exit(130)
            final = store.counts()
            store.set_meta(state="finished" if not final["failed"] and not final["missing"] else "incomplete",
                           finished_at=time.time())
    finally:
        schedule.disconnect()
    err.print(f"run {run_id}: {counts['ok']} ok, {counts['failed']} failed in {views.duration(time.time() - started)};"
              f" run total {final['ok']} ok, {final['failed']} failed, {final['missing']} missing of"
              f" {final['planned']}. Inspect: moecluster status {run_id}", highlight=False)
    if final["failed"] or final["missing"]:
        sys.exit(1)


@click.command()
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), help="Root of the run directories.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def runs(runs_dir: Path | None, as_json: bool) -> None:
    """List the runs under the runs directory, oldest first."""
    from . import submit_views as views

    root = rundir.runs_root(runs_dir)
    rows: list[dict[str, Any]] = []
    damaged: list[str] = []
    for path in rundir.list_runs(root):
        try:
            with RunStore(path, read_only=True) as store:
                meta, counts = store.meta(), store.counts()
        except StoreDamaged as exc:
            # One damaged run is named; the others are still listed.
            damaged.append(f"run {path.name} is damaged: {exc}")
            rows.append({"run": path.name, "sweep": "", "state": "damaged", "created": "", "damaged": str(exc),
                         **{k: "?" for k in ("ok", "failed", "missing", "planned")}})
            continue
        created = meta.get("created_at")
        rows.append({"run": path.name, "sweep": meta.get("sweep", ""), "state": views.run_state(meta),
                     "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if created else "", **counts})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo(f"no runs under {root}")
    else:
        views.console().print(views.runs_table(rows, str(root)))
        for line in damaged:
            click.echo(f"moecluster: warning: {line}", err=True)


@click.command()
@click.argument("run_id")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), help="Root of the run directories.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's state and every stored record as JSON.")
def status(run_id: str, runs_dir: Path | None, as_json: bool) -> None:
    """Show one run: its state, and every planned task with its result so far."""
    from . import submit_views as views

    run_dir = rundir.find_run(rundir.runs_root(runs_dir), run_id)
    try:
        with RunStore(run_dir, read_only=True) as store:
            meta, counts, attempts = store.meta(), store.counts(), store.attempts()
            planned = [spec for spec, _ in store.planned()]
            results = {r.spec.task_id: r for r in store.results()}
    except StoreDamaged as exc:
        raise InputError(f"run {run_id!r} is damaged: {exc}") from None
    state = views.run_state(meta)
    if as_json:
        click.echo(json.dumps({"run": run_id, "state": state, "meta": meta, "counts": counts,
                               "results": [r.to_dict() for r in results.values()]}, indent=2))
        return
    out = views.console()
    out.print(views.status_table(run_id, planned, results, attempts))
    out.print(f"{run_dir}: {state}; {counts['ok']} ok, {counts['failed']} failed, {counts['missing']} missing"
              f" of {counts['planned']} tasks", highlight=False)
    if state != "running" and (counts["failed"] or counts["missing"]):
        out.print(f"finish it with: moecluster submit --resume {run_id}", highlight=False)


COMMANDS = [submit, runs, status]
