"""Making a run: reach Ray, check the cluster can run every pair, create (or reopen) the run
directory, record the environment, start the node agents, run the scheduler, record the end.

The CLI hands a `RunPlan` and `RunOptions` in and shows what a `RunView` is told; everything
else — including what happens on Ctrl-C or SIGTERM — lives here, so it can be driven and tested
without the CLI.

- Ray is reached before anything is written: a cluster that cannot be reached, or cannot run a
  pair, raises `ClusterError` (one line) with no run directory left behind.
- A joined cluster's failure detection is checked from what its nodes report
  (`schedule.raysettings.check_probed`); each problem is a warning naming the `ray start` fix.
- SIGTERM is treated like Ctrl-C (SIGINT): the scheduler cancels what runs, the run is marked
  `interrupted` (resume with `--resume`), Ray is shut down, and `RunInterrupted` says which signal
  ended it; Ray's own SIGTERM handler (exit with a crash dump) is replaced while the run goes on.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from moecluster.orchestrator import rundir
from moecluster.orchestrator.local_submits import registered_submit
from moecluster.orchestrator.store import RunStore
from moecluster.orchestrator.sweep import PairPlan

from .plan import RunPlan, with_run_id, write_new_run


@dataclass(frozen=True)
class RunOptions:
    """How to run: where Ray is (None: a local instance with these CPUs and GPUs), retries, CPUs
    per pair, the node agents, Ray's dashboard."""

    address: str | None = None
    max_retries: int = 3
    num_gpus: int | None = None
    num_cpus: int | None = None
    cpus_per_task: float = 1.0
    agents: bool = True
    agent_port: int = 9400
    dashboard: bool = False


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: this submit's counts, the run's totals and its state (`finished`, `incomplete`)."""

    run_id: str
    run_dir: Path
    counts: dict[str, int]  # tasks stored ok / failed by this submit
    totals: dict[str, int]  # the run's planned / ok / failed / missing tasks
    state: str
    duration_s: float


class RunInterrupted(Exception):
    """The run was stopped by `signum` (SIGINT or SIGTERM) and marked `interrupted`."""

    def __init__(self, run_id: str, signum: int) -> None:
        self.run_id, self.signum = run_id, signum
        super().__init__(f"run {run_id} interrupted by {signal.Signals(signum).name}")


class Events(Protocol):
    """The scheduler's events (`schedule.Events`), shown while the sweep runs."""

    def pair_started(self, pair: PairPlan, node: str, attempt: int) -> None: ...

    def pair_retried(self, pair: PairPlan, attempt: int, reason: str) -> None: ...

    def stored(self, result: Any, written: bool) -> None: ...


class RunView(Protocol):
    """What the run tells its user (the CLI prints it)."""

    def notice(self, line: str) -> None:
        """One line of information (where the run goes, the node agents)."""

    def warning(self, line: str) -> None:
        """One line the user should act on."""

    def sweep_progress(self, pairs: Sequence[PairPlan], slots: int, name: str) -> AbstractContextManager[Events]:
        """Shows the sweep while the scheduler runs it."""


@dataclass
class SignalSeen:
    """The signal that interrupted the body of `sigterm_as_interrupt` (None: none, or Ctrl-C)."""

    signum: int | None = None


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[SignalSeen]:
    """For the body, SIGTERM raises KeyboardInterrupt in the main thread, as Ctrl-C does (never
    caught by `except Exception`, so the same clean-up runs), and is noted in the `SignalSeen`
    yielded (Ray's compiled code may re-raise the interrupt as a new KeyboardInterrupt, so the
    exception cannot carry it). The previous handler is restored after the body."""
    seen = SignalSeen()

    def handler(signum: int, frame: FrameType | None) -> None:
        seen.signum = signum
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGTERM, previous)


def execute(run: RunPlan, options: RunOptions, view: RunView) -> RunOutcome:
    """Run `run` on Ray as `options` say; `RunInterrupted` if SIGINT or SIGTERM stops it."""
    from moecluster.orchestrator import schedule

    schedule.connect(schedule.ClusterOptions(address=options.address, num_cpus=options.num_cpus,
                                             num_gpus=options.num_gpus, include_dashboard=options.dashboard))
    try:
        with sigterm_as_interrupt() as seen:  # after ray.init, which installs its own handler
            return _run(run, options, view, seen)
    finally:
        schedule.disconnect()


def _run(run: RunPlan, options: RunOptions, view: RunView, seen: SignalSeen) -> RunOutcome:
    from moecluster.orchestrator import schedule

    inv = schedule.inventory()
    schedule.check_feasible(list(run.pairs), inv, options.cpus_per_task)
    if run.resume:
        run_dir = run.root / run.run_id
    else:
        run_dir, new_id = rundir.create_run_dir(run.root, run.run_id, explicit=run.explicit_id)
        if new_id != run.run_id:
            run = with_run_id(run, new_id)
        write_new_run(run_dir, run)
    pairs = list(run.pairs)
    with RunStore(run_dir) as store:
        meta = store.meta()
        store.set_meta(state="running", host=socket.gethostname(), pid=os.getpid(), sweep=run.sweep.name,
                       address=options.address or "local", created_at=meta.get("created_at", time.time()),
                       resumed_at=time.time() if run.resume else None)
        try:
            _record_environment(run_dir, options, run.resume, view)
            gpu_mode = any(schedule.uses_gpus(p, inv.total_gpus) for p in pairs)
            slots = schedule.parallel_slots(inv, gpu_mode, options.cpus_per_task)
            view.notice(f"run {run.run_id}: {run.tasks} tasks in {len(pairs)} pairs on {len(inv.nodes)} node(s),"
                        f" {slots} slot(s) -> {run_dir}")
            if options.agents:
                _start_agents(run_dir, options.agent_port, "fake" if run.sweep.meter == "fake" else "auto", view)
            started = time.time()
            # registered: another submit on this machine is warned of (device locks keep them apart)
            with registered_submit(run.run_id, options.address, say=view.warning), \
                    view.sweep_progress(pairs, slots, run.sweep.name) as events:
                scheduler = schedule.Scheduler(store, inv, schedule.ScheduleOptions(
                    max_retries=options.max_retries, cpus_per_task=options.cpus_per_task), events, warn=view.warning)
                counts = scheduler.run(pairs)
        except KeyboardInterrupt:
            store.set_meta(state="interrupted", finished_at=time.time())
            raise RunInterrupted(run.run_id, seen.signum or signal.SIGINT) from None
        totals = store.counts()
        state = "finished" if not totals["failed"] and not totals["missing"] else "incomplete"
        store.set_meta(state=state, finished_at=time.time())
    return RunOutcome(run_id=run.run_id, run_dir=run_dir, counts=counts, totals=totals, state=state,
                      duration_s=time.time() - started)


def _record_environment(run_dir: Path, options: RunOptions, resume: bool, view: RunView) -> None:
    """`environment.json` (a new file per resume) from every node's probe; on a joined cluster,
    a warning for each way its Ray settings would slow the recovery from a lost node."""
    from moecluster.orchestrator import schedule
    from moecluster.orchestrator.environment import collect_environment
    from moecluster.orchestrator.schedule.raysettings import check_probed

    name = rundir.ENVIRONMENT_FILE if not resume else f"environment-resume-{time.strftime('%Y%m%d-%H%M%S')}.json"
    probe = schedule.probe_nodes()
    (run_dir / name).write_text(json.dumps(collect_environment({"address": options.address or "local", **probe}),
                                           indent=2) + "\n")
    if options.address is not None:
        for line in check_probed(probe):
            view.warning(line)


def _start_agents(run_dir: Path, port: int, device: str, view: RunView) -> None:
    try:
        from moecluster.orchestrator.node_agents import ensure_node_agents

        addresses = ensure_node_agents(run_dir, port=port, device=device)
        view.notice(f"node agents: {', '.join(addresses)}")
    except Exception as exc:  # noqa: BLE001 - live metrics are a convenience; the sweep runs without
        view.warning(f"node agents not started ({type(exc).__name__}: {' '.join(str(exc).split())[:200]});"
                     " the sweep runs without live metrics")
