"""`moecluster submit`, `runs`, `status`: run a sweep on Ray, list runs, inspect one.

`submit` validates the sweep (exit 2 and one line naming the key if it is bad; nothing is
started and no run directory is left), expands it into matched pairs and hands the run to
`head.run` (reach Ray, a local instance or `--address`; check the cluster can run every
pair; create `runs/<run-id>/`; store every task's result the moment it returns). `--resume
RUN_ID` runs only the tasks of a run that are missing or failed. This module only parses and
prints: Ctrl-C and SIGTERM end a run the same way, one line, exit 130 or 143 (128 + the signal's
number, as a shell reports a process ended by it), the run marked `interrupted`. A run held by
another head (`RunBusy`) is refused like bad input: one line naming the holder, exit 2. A run
its disk stops (full, read-only, I/O error) ends with one line naming the disk and where its
unstored results were kept, exit 74 (`EXIT_DISK`, sysexits' EX_IOERR).
"""
from __future__ import annotations

import json
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from moecluster.spec.extras import MissingExtra, require_workload
from moecluster.head import rundir
from moecluster.head.store import RunStore, StoreDamaged

from moecluster.cli.errors import InputError, sweep_refused
from moecluster.cli.finite import BoundedInt, FiniteFloatRange, RayQuantity

# A real sweep is tens to a few thousand tasks; 10,000 is hours of GPU time at the shortest
# windows. `--max-tasks` raises it; the count is taken before expanding (sweep/size.py). Above a
# million, building the plan alone takes minutes and gigabytes: that is the most it can be raised to.
DEFAULT_MAX_TASKS = 10_000
MAX_MAX_TASKS = 1_000_000
# A week of one GPU (a day of an 8-GPU node) is longer than any sweep meant without thinking twice,
# and a bigger cluster's slots are known only once Ray is reached; `--max-hours` raises it, up to
# ten years (beyond, an estimate is a typo).
DEFAULT_MAX_HOURS = 168.0
MAX_MAX_HOURS = 87_660.0
# The local instance is this machine: no machine has more CPUs or GPUs than these (oversubscribed
# included), and one pair's rank runs on one node. A bound catches `1e9`, never a real machine.
MAX_LOCAL_CPUS = 4096
MAX_LOCAL_GPUS = 1024
MAX_CPUS_PER_TASK = 1024.0
# Each retry reruns a whole pair; a pair lost 100 times is a broken cluster, not bad luck.
MAX_RETRIES = 100
# A dry run prints the first rows of a bigger plan and a summary line, not every row.
DRY_RUN_ROWS = 200
EXIT_DISK = 74  # the run's disk stopped it (sysexits.h EX_IOERR); --resume finishes it

if TYPE_CHECKING:
    from moecluster.head.run import RunOptions, RunPlan
    from moecluster.head.sweep import PairPlan, Plan, SweepFile

# The sweep, the views and Ray are imported inside the commands: this module is imported
# whenever the CLI package is (for registration), also by modules the sweep itself imports.


def _overrides(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`--set KEY=VALUE` items as top-level keys; each value is read as YAML with a sweep file's checks
    (size, depth, tags), and anything quoted in a refusal is cut."""
    from moecluster.head.sweep.loader import SweepError, load_value
    from moecluster.head.sweep.shown import shown

    out: dict[str, Any] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {shown(item)}: expected KEY=VALUE, e.g. --set repeats=1")
        try:
            out[key.strip()] = load_value(value, key.strip())
        except SweepError as exc:
            raise InputError(str(exc)) from None
    return out


@click.command()
@click.argument("sweep_file", required=False, type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the task table (pairs, shapes, parameters, GPUs, estimated"
              " time) and exit; Ray is not started.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print the planned tasks as JSON.")
@click.option("--address", help="Join an existing Ray cluster (`auto`, `host:port`, `ray://host:port`);"
              " the token comes from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token. Its head"
              " should run with moecluster's failure-detection settings (see docs/cluster.md; submit warns"
              " when it lacks them). Default: start a local Ray instance with this machine's GPUs (or CPUs).")
@click.option("--resume", "resume_id", metavar="RUN_ID", help="Finish a run: run only its missing and failed tasks.")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path),
              help=f"Root of the run directories (default: ${rundir.ENV_VAR}, else ./runs).")
@click.option("--run-id", help="Name of the new run (default: <sweep name>-<date>-<time>).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a top-level sweep key, e.g. --set repeats=1 --set 'batch_size=[128, 512]'.")
@click.option("--meter", type=click.Choice(["auto", "nvml", "fake", "none"]),
              help="Energy source for every task (overrides the sweep's `meter`).")
@click.option("--max-tasks", type=BoundedInt(min=1, max=MAX_MAX_TASKS), default=DEFAULT_MAX_TASKS, show_default=True,
              help="Refuse a sweep planning more tasks than this (counted before expanding).")
@click.option("--max-hours", type=FiniteFloatRange(min=0, min_open=True, max=MAX_MAX_HOURS), default=DEFAULT_MAX_HOURS,
              show_default=True, help="Refuse a sweep estimated to take longer than this on one GPU.")
@click.option("--max-retries", type=BoundedInt(min=0, max=MAX_RETRIES), default=3, show_default=True,
              help="New attempts of a pair lost with its node or process, each first in the queue"
              " (a failing task is not retried).")
@click.option("--num-gpus", type=BoundedInt(min=0, max=MAX_LOCAL_GPUS),
              help="GPUs of the local instance (default: detected).")
@click.option("--num-cpus", type=BoundedInt(min=1, max=MAX_LOCAL_CPUS),
              help="CPUs of the local instance (default: detected).")
@click.option("--cpus-per-task", type=RayQuantity(min=0, max=MAX_CPUS_PER_TASK), default=1.0, show_default=True,
              help="CPUs each pair (each rank) holds besides its GPU: 0, or 0.0001 (Ray's unit) up to 1024.")
@click.option("--agents/--no-agents", default=True, show_default=True,
              help="Make sure a metrics agent serves on every node (for Prometheus and Grafana).")
@click.option("--agent-port", type=BoundedInt(min=0, max=65535), default=9400, show_default=True)
@click.option("--dashboard/--no-dashboard", default=False, show_default=True,
              help="Start Ray's dashboard with the local instance.")
def submit(sweep_file: Path | None, dry_run: bool, as_json: bool, address: str | None, resume_id: str | None,
           runs_dir: Path | None, run_id: str | None, sets: tuple[str, ...], meter: str | None, max_tasks: int,
           max_hours: float, max_retries: int,
           num_gpus: int | None, num_cpus: int | None, cpus_per_task: float, agents: bool, agent_port: int,
           dashboard: bool) -> None:
    """Run a sweep of matched dense/MoE pairs on Ray and store every result as it arrives."""
    from moecluster.head.run import RunOptions, RunRefused
    from moecluster.head.sweep import SweepError

    try:
        _submit(sweep_file, dry_run, as_json, resume_id, runs_dir, run_id, sets, meter, max_tasks, max_hours,
                RunOptions(address=address, max_retries=max_retries, num_gpus=num_gpus, num_cpus=num_cpus,
                           cpus_per_task=cpus_per_task, agents=agents, agent_port=agent_port, dashboard=dashboard))
    except SweepError as exc:
        raise sweep_refused(exc) from None
    except RunRefused as exc:
        raise InputError(str(exc)) from None
    except StoreDamaged as exc:
        raise InputError(f"run {resume_id!r} is damaged: {exc}") from None


def _check_workload_extra(workload: str, source: Path | str, address: str | None) -> None:
    """The workload's extra: required here where this machine runs the tasks (the embedded local
    Ray; a dry run that passes means the run can start), a warning for a cluster, whose nodes run them
    (the head only plans and reports)."""
    feature = f"{source}: workload {workload}"
    if address is None:
        require_workload(workload, feature=f"{feature} (run on this machine)")
        return
    try:
        require_workload(workload, feature=f"{feature} (on every node that runs its tasks)")
    except MissingExtra as exc:
        click.echo(f"moecluster: warning: not installed on this machine: {exc}", err=True)


def _submit(sweep_file: Path | None, dry_run: bool, as_json: bool, resume_id: str | None, runs_dir: Path | None,
            run_id: str | None, sets: tuple[str, ...], meter: str | None, max_tasks: int, max_hours: float,
            options: RunOptions) -> None:
    from moecluster.head.run import plan_new, plan_resume
    from moecluster.head.store import pending_results
    from moecluster.head.sweep.estimate import short_window_warning
    from moecluster.head.sweep.size import check_plan_hours

    root = rundir.runs_root(runs_dir)
    if resume_id is not None:
        if sweep_file is not None or run_id is not None or sets or meter:
            raise click.UsageError("--resume RUN_ID takes the run's own sweep: give no SWEEP_FILE, --run-id,"
                                   " --set or --meter")
        run = plan_resume(root, resume_id)
        if not run.pairs and not pending_results(root / run.run_id):
            click.echo(f"run {run.run_id}: nothing to do, all {len(run.plan.tasks)} tasks are stored ok")
            return
    else:
        if sweep_file is None:
            raise click.UsageError("give a SWEEP_FILE (or --resume RUN_ID)")
        overrides = _overrides(sets)
        if meter:
            overrides["meter"] = meter
        run = plan_new(sweep_file, overrides, root, run_id, max_tasks)
        check_plan_hours(run.plan, run.sweep, max_hours)
    _refuse_gangs_without_node_side(list(run.pairs), run.source)
    _check_workload_extra(run.sweep.workload, run.source, options.address)
    warning = short_window_warning(run.sweep.duration_s, run.sweep.device, run.sweep.meter)
    if warning:
        click.echo(f"moecluster: warning: {warning}", err=True)
    if dry_run:
        _print_plan(replace(run.plan, pairs=run.pairs), run.sweep, as_json)
        return
    _run(run, options)


def _refuse_gangs_without_node_side(pairs: list[PairPlan], source: Path) -> None:
    """InputError when a pair needs a gang (expert_parallel > 1) and this installation lacks
    the node side that runs one: nothing is measured rather than something that is not EP."""
    if not any(p.gpus > 1 for p in pairs):
        return
    from moecluster.node.capability import gang_problem

    problem = gang_problem()
    if problem is not None:
        raise InputError(f"{source}: expert_parallel > 1 cannot run: {problem}")


def _print_plan(plan: Plan, sweep: SweepFile, as_json: bool) -> None:
    from moecluster.cli import submit_views as views

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


def _run(run: RunPlan, options: RunOptions) -> None:
    """Execute the run, printing as it goes; exit 1 when tasks failed or are missing, 130/143 when
    SIGINT/SIGTERM stopped it, 74 when its disk did."""
    from moecluster.head.run import RunInterrupted, RunStopped, execute
    from moecluster.head.store import StoreWriteFailed
    from moecluster.head.schedule import ClusterError

    from moecluster.cli import submit_views as views

    try:
        outcome = execute(run, options, views.CliRunView())
    except ClusterError as exc:
        raise InputError(str(exc)) from None
    except RunInterrupted as exc:
        click.echo(f"moecluster: interrupted by {signal.Signals(exc.signum).name}; finish with: moecluster submit"
                   f" --resume {exc.run_id}", err=True)
        sys.exit(128 + exc.signum)
    except (RunStopped, StoreWriteFailed) as exc:
        click.echo(f"moecluster: error: {' '.join(str(exc).split())}", err=True)
        sys.exit(EXIT_DISK)
    counts, totals = outcome.counts, outcome.totals
    views.console(stderr=True).print(
        f"run {outcome.run_id}: {counts['ok']} ok, {counts['failed']} failed in {views.duration(outcome.duration_s)};"
        f" run total {totals['ok']} ok, {totals['failed']} failed, {totals['missing']} missing of"
        f" {totals['planned']}. Inspect: moecluster status {outcome.run_id}", highlight=False)
    if totals["failed"] or totals["missing"]:
        sys.exit(1)


@click.command()
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), help="Root of the run directories.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def runs(runs_dir: Path | None, as_json: bool) -> None:
    """List the runs under the runs directory, oldest first."""
    from moecluster.head.run.state import run_state

    from moecluster.cli import submit_views as views

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
        rows.append({"run": path.name, "sweep": meta.get("sweep", ""), "state": run_state(meta, path),
                     "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if created else "", **counts})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo(rundir.no_runs_line(root))
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
    from moecluster.head.run.state import run_state
    from moecluster.head.store import pending_results

    from moecluster.cli import submit_views as views

    run_dir = rundir.find_run(rundir.runs_root(runs_dir), run_id)
    try:
        with RunStore(run_dir, read_only=True) as store:
            meta, counts, attempts = store.meta(), store.counts(), store.attempts()
            planned = [spec for spec, _ in store.planned()]
            results = {r.spec.task_id: r for r in store.results()}
    except StoreDamaged as exc:
        raise InputError(f"run {run_id!r} is damaged: {exc}") from None
    state = run_state(meta, run_dir)
    if as_json:
        click.echo(json.dumps({"run": run_id, "state": state, "meta": meta, "counts": counts,
                               "results": [r.to_dict() for r in results.values()]}, indent=2))
        return
    out = views.console()
    out.print(views.status_table(run_id, planned, results, attempts))
    # paths are printed as text: a folder named "[x]" is no rich markup
    out.print(f"{escape(str(run_dir))}: {state}; {counts['ok']} ok, {counts['failed']} failed,"
              f" {counts['missing']} missing of {counts['planned']} tasks", highlight=False)
    kept = pending_results(run_dir)
    if kept:
        where = ", ".join(sorted({str(path.parent) for path, _, _ in kept}))
        out.print(f"{len(kept)} result(s) its head could not store are kept in {escape(where)}; --resume stores them",
                  highlight=False)
    if state != "running" and (counts["failed"] or counts["missing"]):
        out.print(f"finish it with: moecluster submit --resume {run_id}", highlight=False)


COMMANDS = [submit, runs, status]
