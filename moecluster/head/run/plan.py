"""What one `submit` will run: a new run of a sweep file, or the missing and failed tasks of a run.

Pure planning: nothing is started and nothing is written here (`execute` does that). A bad
sweep raises `SweepError`, a bad run id or an unknown run `InputError` (from `rundir`), and a
run that cannot be resumed `RunRefused`, each with one line naming the culprit. A resume's plan
is a preview: `execute` plans it again (`replan`) once it holds the run.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from moecluster.head import rundir
from moecluster.head.store import RunStore, pending_results
from moecluster.head.sweep import PairPlan, Plan, SweepFile, expand, load_sweep
from moecluster.head.sweep.size import check_task_count
from moecluster.workloads.registry import workload

from moecluster.head.run.state import run_state


class RunRefused(ValueError):
    """A run that cannot be started or resumed as asked; the message names the run and why."""


@dataclass(frozen=True)
class RunPlan:
    """A run about to be made: the sweep, its full plan, and the pairs this submit runs (all of
    them for a new run; for a resumed run its pairs with a task not stored `ok`, reduced to
    those tasks)."""

    sweep: SweepFile
    plan: Plan
    pairs: tuple[PairPlan, ...]
    run_id: str
    root: Path
    source: Path  # the sweep file given (new run) or the run's resolved sweep.yaml (resumed)
    resume: bool
    explicit_id: bool  # the id was given (--run-id, --resume), not generated

    @property
    def tasks(self) -> int:
        return sum(len(p.tasks) for p in self.pairs)


def plan_new(sweep_file: Path, overrides: dict[str, Any], root: Path, run_id: str | None,
             max_tasks: int) -> RunPlan:
    """A new run of `sweep_file` with top-level `overrides`, under `root`."""
    sweep = load_sweep(sweep_file, overrides)
    explicit = run_id is not None
    run_id = rundir.check_run_id(run_id) if run_id else rundir.new_run_id(sweep.name)
    if explicit and (root / run_id).exists():
        raise RunRefused(f"run {run_id!r} already exists under {root.absolute()}"
                         f" (use --resume {run_id} to finish it)")
    check_task_count(sweep, max_tasks)
    plan = _expand(sweep, run_id, root)
    return RunPlan(sweep=sweep, plan=plan, pairs=plan.pairs, run_id=run_id, root=root, source=sweep_file,
                   resume=False, explicit_id=explicit)


def plan_resume(root: Path, run_id: str) -> RunPlan:
    """The rest of run `run_id` under `root`: its pairs with a task not stored `ok` (none when the
    run is complete); refused while the head that ran it is still at work."""
    run_dir = rundir.find_run(root, run_id)
    with RunStore(run_dir, read_only=True) as store:
        meta = store.meta()
        planned = [spec.task_id for spec, _ in store.planned()]
    if run_state(meta, run_dir) == "running":
        holder = rundir.lock_holder(run_dir)
        if holder is not None:
            raise rundir.RunBusy(run_id, holder)
        raise RunRefused(f"run {run_id} is still running (pid {meta.get('pid')} on {meta.get('host')});"
                         " stop that head first")
    source = run_dir / rundir.SWEEP_FILE
    sweep = load_sweep(source)
    plan = _expand(sweep, run_id, root)
    if planned != [t.task_id for t in plan.tasks]:
        raise RunRefused(f"run {run_id}: its sweep.yaml no longer expands to the tasks it planned")
    run = RunPlan(sweep=sweep, plan=plan, pairs=(), run_id=run_id, root=root, source=source, resume=True,
                  explicit_id=True)
    return replan(run)


def stored_status(run_dir: Path) -> dict[str, str]:
    """task_id -> status of every result of the run: stored, or kept pending (stored by the next `--resume`)."""
    with RunStore(run_dir, read_only=True) as store:
        status = store.task_status()
    for _, result, _ in pending_results(run_dir):
        if status.get(result.spec.task_id) != "ok":
            status[result.spec.task_id] = result.status
    return status


def replan(run: RunPlan) -> RunPlan:
    """The resumed `run` reduced to what its store (and its pending results) still lack now."""
    status = stored_status(run.root / run.run_id)
    return replace(run, pairs=tuple(missing_pairs(run.plan, status)))


def missing_pairs(plan: Plan, status: dict[str, str]) -> list[PairPlan]:
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


def with_run_id(run: RunPlan, run_id: str) -> RunPlan:
    """The same new run under another id (a generated id taken in the same second): re-expanded,
    so that every task carries the id it is stored under."""
    plan = _expand(run.sweep, run_id, run.root)
    return replace(run, run_id=run_id, plan=plan, pairs=plan.pairs)


def _expand(sweep: SweepFile, run_id: str, root: Path) -> Plan:
    """The sweep's plan for run `run_id` under `root`, as its workload runs it there (a serve sweep's server
    logs in its run directory)."""
    return workload(sweep.workload).with_run_dir(expand(sweep, run_id=run_id), root / run_id)


def write_new_run(run_dir: Path, run: RunPlan) -> None:
    """The run directory's resolved sweep, the sweep as written, and the plan in the store."""
    resolved = run.sweep.model_dump(mode="json", exclude_none=True)
    header = (f"# resolved by moecluster from {run.source} ({len(run.plan.pairs)} pairs,"
              f" {len(run.plan.tasks)} tasks)\n")
    rundir.write_private(run_dir / rundir.SWEEP_FILE, header + yaml.safe_dump(resolved, sort_keys=False))
    rundir.write_private(run_dir / rundir.SOURCE_FILE, run.source.read_text())
    with RunStore(run_dir) as store:
        store.set_plan((t, est) for p in run.plan.pairs for t, est in zip(p.tasks, p.estimated_s))
