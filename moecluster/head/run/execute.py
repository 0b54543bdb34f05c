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
- The run has one owner: a new run is locked the moment its directory is made, a resumed one
  before Ray starts (`rundir.lock_run`; a second head gets `RunBusy`, naming the holder), and a
  resume plans what is missing again once it holds the run, so no pair runs twice.
- The disk: the runs directory is checked before Ray starts (a file, read-only, full:
  `InputError`). A failure to write while making the run removes what was made (nothing ran). A
  result that cannot be stored is kept (`RunStore.add`); the run then stops once its pair's
  results are in, cancels what runs, is marked `interrupted` where that can still be written, and
  `RunStopped` says, in one line, what failed on which disk and where the results were kept;
  `--resume` stores them first and runs only what is missing.
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
from typing import TYPE_CHECKING, Any, Protocol

from moecluster.head import rundir
from moecluster.head.local_submits import registered_submit
from moecluster.head.store import RunStore, StoreWriteFailed, pending_dirs
from moecluster.head.sweep import PairPlan

from moecluster.head.run.plan import RunPlan, replan, with_run_id, write_new_run

if TYPE_CHECKING:  # the scheduler imports Ray, which this module loads only when a run starts
    from moecluster.head.schedule import Events


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


class RunStopped(Exception):
    """The run could not be written (a full disk, an I/O error) and stopped; the message (one line)
    names the run, the error, the disk, where results it could not store were kept, and whether
    the run could be marked `interrupted`."""

    def __init__(self, run_id: str, message: str) -> None:
        self.run_id = run_id
        super().__init__(message)


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
    """Run `run` on Ray as `options` say; `RunInterrupted` if SIGINT or SIGTERM stops it,
    `RunStopped` if its disk does, `RunBusy` if another head holds the run."""
    from moecluster.head import schedule

    held = contextlib.ExitStack()  # the run's lock, from the moment it is taken to the end
    try:
        if run.resume:
            run_dir = run.root / run.run_id
            rundir.check_writable(run_dir, f"run {run.run_id}: its directory")
            held.enter_context(rundir.lock_run(run_dir, run.run_id))
            run, adopted = _adopt_pending(run)
            if not run.pairs:  # all that was missing had been kept pending: no Ray needed
                return _settle(run, adopted)
        else:
            rundir.check_writable(run.root, "runs directory")
        schedule.connect(schedule.ClusterOptions(address=options.address, num_cpus=options.num_cpus,
                                                 num_gpus=options.num_gpus, include_dashboard=options.dashboard))
        try:
            with sigterm_as_interrupt() as seen:  # after ray.init, which installs its own handler
                return _run(run, options, view, seen, held)
        finally:
            schedule.disconnect()
    finally:
        held.close()


def _adopt_pending(run: RunPlan) -> tuple[RunPlan, list[Any]]:
    """Store the results a stopped head kept pending, then plan the rest again under the lock."""
    run_dir = run.root / run.run_id
    try:
        with RunStore(run_dir) as store:
            adopted = store.adopt_pending()
    except StoreWriteFailed as exc:
        raise RunStopped(run.run_id, f"run {run.run_id}: {exc} on {rundir.disk_line(run_dir)}; nothing was run;"
                         f" free space, then: moecluster submit --resume {run.run_id}") from None
    return replan(run), adopted


def _settle(run: RunPlan, adopted: list[Any]) -> RunOutcome:
    """A resumed run with nothing left to run: record its end state."""
    run_dir = run.root / run.run_id
    with RunStore(run_dir) as store:
        totals = store.counts()
        state = "finished" if not totals["failed"] and not totals["missing"] else "incomplete"
        try:
            store.set_meta(state=state, finished_at=time.time())
        except StoreWriteFailed as exc:
            raise RunStopped(run.run_id, f"run {run.run_id}: its results are stored, but its end could not be"
                             f" recorded: {exc} on {rundir.disk_line(run_dir)}") from None
    counts = {k: sum(r.status == k for r in adopted) for k in ("ok", "failed")}
    return RunOutcome(run_id=run.run_id, run_dir=run_dir, counts=counts, totals=totals, state=state, duration_s=0.0)


def _make_run_dir(run: RunPlan, held: contextlib.ExitStack) -> tuple[RunPlan, Path, rundir.RunLock]:
    """Create and hold the new run's directory and write its sweep and plan; on a failed write,
    remove what was made (nothing ran) and raise `RunStopped`."""
    try:
        run_dir, new_id, lock = rundir.create_run_dir(run.root, run.run_id, explicit=run.explicit_id)
    except OSError as exc:
        raise RunStopped(run.run_id, f"cannot make run {run.run_id} under {run.root.absolute()}:"
                         f" {exc.strerror or exc} on {rundir.disk_line(run.root)}; nothing was run") from None
    held.callback(lock.release)
    if new_id != run.run_id:
        run = with_run_id(run, new_id)
    try:
        write_new_run(run_dir, run)
    except OSError as exc:  # StoreWriteFailed included
        rundir.remove_half_made(run_dir, lock)
        raise RunStopped(run.run_id, f"cannot make run {run.run_id}: {_why(exc)} on {rundir.disk_line(run.root)};"
                         " nothing was run and no run directory is left") from None
    return run, run_dir, lock


def _run(run: RunPlan, options: RunOptions, view: RunView, seen: SignalSeen,
         held: contextlib.ExitStack) -> RunOutcome:
    from moecluster.head import schedule

    inv = schedule.inventory()
    schedule.check_feasible(list(run.pairs), inv, options.cpus_per_task)
    lock = None
    if run.resume:
        run_dir = run.root / run.run_id
    else:
        run, run_dir, lock = _make_run_dir(run, held)
    pairs = list(run.pairs)
    with RunStore(run_dir) as store:
        try:
            meta = store.meta()
            store.set_meta(state="running", host=socket.gethostname(), pid=os.getpid(), sweep=run.sweep.name,
                           address=options.address or "local", created_at=meta.get("created_at", time.time()),
                           resumed_at=time.time() if run.resume else None)
            _record_environment(run_dir, options, run.resume, view)
        except OSError as exc:  # nothing ran yet
            if lock is not None:  # a new run: remove it whole
                store.close()
                rundir.remove_half_made(run_dir, lock)
                raise RunStopped(run.run_id, f"cannot make run {run.run_id}: {_why(exc)} on"
                                 f" {rundir.disk_line(run_dir)}; nothing was run and no run directory is left"
                                 ) from None
            raise RunStopped(run.run_id, _stopped_line(run, store, exc)) from None
        try:
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
                    max_retries=options.max_retries, cpus_per_task=options.cpus_per_task),
                    StopWhenUnstored(events, store, pairs), warn=view.warning)
                counts = scheduler.run(pairs)
            if store.write_error is not None:
                raise StoreWriteFailed(store.write_error)
            totals = store.counts()
            state = "finished" if not totals["failed"] and not totals["missing"] else "incomplete"
            store.set_meta(state=state, finished_at=time.time())
        except KeyboardInterrupt:
            with contextlib.suppress(StoreWriteFailed):  # a head gone without the lock reads `interrupted` anyway
                store.set_meta(state="interrupted", finished_at=time.time())
            raise RunInterrupted(run.run_id, seen.signum or signal.SIGINT) from None
        except StoreWriteFailed as exc:
            raise RunStopped(run.run_id, _stopped_line(run, store, exc)) from None
    return RunOutcome(run_id=run.run_id, run_dir=run_dir, counts=counts, totals=totals, state=state,
                      duration_s=time.time() - started)


class StopWhenUnstored:
    """The scheduler's events, passed on to the view; once a result could not be stored (it was
    kept pending), `StoreWriteFailed` is raised when the last result of its pair is in, so the
    run stops with every result it got kept and no pair half-recorded."""

    def __init__(self, events: Events, store: RunStore, pairs: Sequence[PairPlan]) -> None:
        self._events, self._store = events, store
        self._left = {p.pair_id: len(p.tasks) for p in pairs}

    def pair_started(self, pair: PairPlan, node: str, attempt: int) -> None:
        self._events.pair_started(pair, node, attempt)

    def pair_retried(self, pair: PairPlan, attempt: int, reason: str) -> None:
        self._events.pair_retried(pair, attempt, reason)

    def stored(self, result: Any, written: bool) -> None:
        self._events.stored(result, written)
        pair_id = result.spec.pair_id
        self._left[pair_id] = self._left.get(pair_id, 1) - 1
        if self._store.write_error is not None and self._left[pair_id] <= 0:
            raise StoreWriteFailed(self._store.write_error)


def _why(exc: OSError) -> str:
    return str(exc) if isinstance(exc, StoreWriteFailed) else f"{exc.filename or ''}: {exc.strerror or exc}"


def _stopped_line(run: RunPlan, store: RunStore, exc: OSError) -> str:
    """One line: what could not be written on which disk, where the results it could not store
    are, whether the run is marked `interrupted`, and how to finish it."""
    run_dir = run.root / run.run_id
    parts = [f"run {run.run_id} stopped: {_why(exc)} on {rundir.disk_line(run_dir)}"]
    if store.kept:
        where = sorted({str(p.parent) for p in store.kept})
        parts.append(f"{len(store.kept)} result(s) it could not store are kept in {', '.join(where)}"
                     " (--resume stores them)")
    if store.unkept:
        tried = ", ".join(str(d) for d in pending_dirs(run_dir))
        parts.append(f"{len(store.unkept)} result(s) could be kept nowhere ({tried} are full too) and run again"
                     " on --resume")
    try:
        store.set_meta(state="interrupted", finished_at=time.time(), stopped_by=str(exc))
        parts.append("marked interrupted")
    except StoreWriteFailed as mark:
        parts.append(f"it could not be marked interrupted ({mark}); it reads as interrupted now that this head"
                     " has stopped")
    parts.append(f"free space, then: moecluster submit --resume {run.run_id}")
    return "; ".join(parts)


def _record_environment(run_dir: Path, options: RunOptions, resume: bool, view: RunView) -> None:
    """`environment.json` (a new file per resume) from every node's probe; on a joined cluster,
    a warning for each way its Ray settings would slow the recovery from a lost node."""
    from moecluster.head import schedule
    from moecluster.head.environment import collect_environment
    from moecluster.head.schedule.raysettings import check_probed

    name = rundir.ENVIRONMENT_FILE if not resume else f"environment-resume-{time.strftime('%Y%m%d-%H%M%S')}.json"
    probe = schedule.probe_nodes()
    rundir.write_private(run_dir / name, json.dumps(collect_environment({"address": options.address or "local",
                                                                         **probe}), indent=2) + "\n")
    if options.address is not None:
        for line in check_probed(probe):
            view.warning(line)


def _start_agents(run_dir: Path, port: int, device: str, view: RunView) -> None:
    try:
        from moecluster.head.node_agents import ensure_node_agents

        addresses = ensure_node_agents(run_dir, port=port, device=device)
        view.notice(f"node agents: {', '.join(addresses)}")
    except Exception as exc:  # noqa: BLE001 - live metrics are a convenience; the sweep runs without
        view.warning(f"node agents not started ({type(exc).__name__}: {' '.join(str(exc).split())[:200]});"
                     " the sweep runs without live metrics")
