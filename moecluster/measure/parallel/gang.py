"""The body one rank of a gang runs: a pair's tasks on N GPUs, measured together, one record per task.

`run_gang_rank` is called on every rank at once (one process per GPU, e.g. one Ray actor each)
with the same specs. Rank 0 returns the gang's results, one `TaskResult` per spec in the order
given; the other ranks return []. The MoE task runs expert parallel (`ep_moe`), the dense twins
data parallel on the same GPUs (`tasks`), so the pair compares like with like.

Order: the pair runner's counterbalanced rounds (`pair.round_order`: A B B A, reversed where a
spec has `reverse_order`); each window gets its own warm-up, as in the pair runner, but a task's
model is built once, at its first window, and kept until its last. For each window, on every rank:

1. local work only (the `on_window` hook, building the task's model at its first window); then
   the ranks compare notes (`all_gather_object`): if any rank failed, the task fails for the gang,
   its error naming that rank, and the gang goes on with the other tasks;
2. collective work: sharing the MoE's weights (first window), warm-up and the agreed step counts
   (`lockstep`), the window itself — a barrier, then every rank's meter over the same steps ending
   in a barrier, so the windows of all ranks start and end together — and the ranks' readings
   gathered and merged (`merge`: energy summed over ranks, kept per GPU);
3. after an expert-parallel task's last window, outside every energy window: a timed pass of the
   step's phases (`phases`: route, dispatch, experts, combine; time and bytes sent) and the raw
   all-to-all at the task's dispatch and combine sizes with its own energy window (`alltoall`).

Failure inside collective work cannot be agreed on (the peers are inside a collective the failing
rank will not join), so it ends the gang: the failing rank posts its error to the gang's store and
leaves, which destroys its process group and breaks its peers' collectives (at once on gloo; on
NCCL after the timeout), and they leave too. Rank 0 then reports the task that was running as
failed with the first rank's error (the root cause), and every task not yet finished as failed
with "gang aborted"; finished tasks keep their results. The process group is destroyed on every
exit path (`group.process_group`).

Energy: each rank meters its own GPU (`rank_setup`); on the CPU energy is unavailable, with the
reason, never a zero; `meter: fake` uses fake devices so the whole pipeline runs without GPUs.
The roofline is the task's FLOPs and bytes over the N GPUs' summed peaks (`roofline`).
"""
from __future__ import annotations

import socket
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from moecluster.devices import DeviceSet, Gpu
from moecluster.measure.meters.energy import EnergyMeter
from moecluster.measure.meters.idle import IdleCache
from moecluster.measure.meters.peaks import PeakCache
from moecluster.measure.observer import NullObserver, TaskObserver
from moecluster.measure.pair import round_order
from moecluster.spec.records import AllToAllPoint, PhaseStat, TaskResult, TaskSpec
from moecluster.measure.parallel.alltoall import alltoall_points
from moecluster.measure.parallel.group import Gang, GangContext, process_group
from moecluster.measure.parallel.lockstep import StepPlan, run_steps, warm_up
from moecluster.measure.parallel.merge import RankWindow, energy_source, merge_phases, merge_window, window_notes
from moecluster.measure.parallel.phases import PhaseClock
from moecluster.measure.session import failed_result, set_fake_load
from moecluster.measure.parallel.rank_setup import RankFacts, open_rank_devices, rank_gpus, read_facts
from moecluster.measure.parallel.results import GangWindow, gang_result
from moecluster.measure.parallel.tasks import GangTask, LocalBuild, build_local, share

ALLTOALL_ENERGY_WINDOW_S = 2.0  # the all-to-all's energy window (shorter where the task's windows are)

T = TypeVar("T")
Log = Callable[[str], None]


@dataclass
class _Run:
    """One task's progress on this rank (bookkeeping, not a record)."""

    spec: TaskSpec
    started_at: float
    build: LocalBuild | None = None
    task: GangTask | None = None
    plan: StepPlan | None = None
    windows: list[GangWindow] = field(default_factory=list)
    result: TaskResult | None = None


@dataclass(frozen=True)
class _Rank:
    """What this rank measures with, once set up."""

    gang: Gang
    meter: EnergyMeter
    gpus: tuple[Gpu, ...]
    facts: tuple[RankFacts, ...]
    observer: TaskObserver
    say: Log

    def sync(self) -> None:
        if self.gang.device.type == "cuda":
            torch.cuda.synchronize(self.gang.device)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _agree(gang: Gang, work: Callable[[], T], say: Log) -> tuple[T | None, str | None]:
    """Run `work` here (no collectives inside it), then learn whether every rank succeeded (a collective).

    Returns (this rank's value, None) when all did, else (value or None, "rank r: error") of the first rank
    that failed.
    """
    value: T | None = None
    err: str | None = None
    try:
        value = work()
    except Exception as exc:  # noqa: BLE001 - a rank's failure is the gang's data
        say(traceback.format_exc())
        err = _error(exc)
    errors = gang.all_gather(err)
    first = next(((r, e) for r, e in enumerate(errors) if e), None)
    return value, (f"rank {first[0]}: {first[1]}" if first else None)


def _quietly(call: Callable[[], object], say: Log) -> None:
    """An observer call: it must not raise into a gang (a raise would leave the peers in a collective)."""
    try:
        call()
    except Exception:  # noqa: BLE001
        say(traceback.format_exc())


def _measure_window(rank: _Rank, run: _Run, task: GangTask, position: int, offset: int) -> GangWindow:
    """Warm up, then one window of the agreed steps on every rank; the merged window (a collective)."""
    gang, spec = rank.gang, task.spec
    set_fake_load(rank.gpus, 1.0)
    run.plan = warm_up(gang, task.step, rank.sync, spec.warmup_s, spec.duration_s)
    steps = run.plan.window_steps
    marks: list[float] = []

    def progress(done: int) -> None:
        _quietly(lambda: rank.observer.progress(offset + done * task.items_per_step), rank.say)

    def work() -> int:
        marks.append(time.time())
        run_steps(task.step, steps, rank.sync, progress)
        gang.barrier()
        return steps

    gang.barrier()
    ran, reading = rank.meter.measure(work)
    set_fake_load(rank.gpus, 0.0)
    parts = gang.all_gather(RankWindow(rank=gang.rank, steps=ran, started_at=marks[0], reading=reading))
    source, reason = energy_source(parts)
    window = merge_window(parts, task.items_per_step, position)
    _quietly(lambda: rank.observer.progress(offset + window.inferences), rank.say)
    return GangWindow(window=window, source=source, unavailable_reason=reason, notes=tuple(window_notes(parts)))


def _communication(rank: _Rank, run: _Run, task: GangTask) -> tuple[tuple[PhaseStat, ...], tuple[AllToAllPoint, ...]]:
    """An expert-parallel task's timed pass of its phases and its raw all-to-all (a collective)."""
    if task.part is None or run.plan is None:
        return (), ()
    gang, part = rank.gang, task.part
    clock = PhaseClock(gang.device)
    set_fake_load(rank.gpus, 1.0)
    gang.barrier()
    for _ in range(run.plan.phase_steps):
        part.phased(clock)
    phases = merge_phases(gang.all_gather(clock.summary()), part.phases)
    window_s = min(ALLTOALL_ENERGY_WINDOW_S, task.spec.duration_s)
    points = alltoall_points(gang, task.alltoall_sizes(), task.dtype, meter=rank.meter, energy_window_s=window_s)
    set_fake_load(rank.gpus, 0.0)
    return phases, points


def _fail(run: _Run, error: str, facts: Sequence[RankFacts], world_size: int, node: str, observer: TaskObserver,
          say: Log) -> None:
    """Record `run` as failed for the gang and tell the observer."""
    run.build, run.task = None, None
    result = failed_result(run.spec, error, node=node, started_at=run.started_at, finished_at=time.time(),
                           facts=facts, world_size=world_size)
    run.result = result
    _quietly(lambda: observer.finished(result), say)


def _window_of(rank: _Rank, run: _Run, r: int, position: int,
               on_window: Callable[[TaskSpec, int], None] | None) -> bool:
    """Repeat `r` of `run` (True if a window was measured; False if the task failed for the gang)."""
    gang, spec = rank.gang, run.spec

    def local() -> LocalBuild | None:
        if on_window is not None:
            on_window(spec, r)
        if run.task is None and run.build is None:
            rank.say(f"{spec.task_id}: building {spec.label()} for rank {gang.rank} of {gang.world_size}")
            return build_local(spec, gang.rank, gang.world_size, gang.device)
        return None

    build, err = _agree(gang, local, rank.say)
    if err is not None:
        _fail(run, f"repeat {r + 1}/{spec.repeats}: {err}" if spec.repeats > 1 else err, rank.facts,
              gang.world_size, rank.facts[0].node, rank.observer, rank.say)
        return False
    if build is not None:
        run.build = build
    if run.task is None:
        assert run.build is not None
        run.task, run.build = share(run.build, gang), None
        _quietly(lambda: rank.observer.started(spec, [g.info for g in rank.gpus]), rank.say)
    task = run.task
    offset = sum(w.window.inferences for w in run.windows)
    with torch.inference_mode():
        run.windows.append(_measure_window(rank, run, task, position, offset))
        if r + 1 < spec.repeats:
            return True
        phases, points = _communication(rank, run, task)
    run.result = gang_result(task, run.windows, rank.facts, phases=phases, alltoall=points,
                             started_at=run.started_at, finished_at=time.time())
    run.task = None  # free the model before the next task's window
    result = run.result
    _quietly(lambda: rank.observer.finished(result), rank.say)
    return True


def _set_up(gang: Gang, specs: Sequence[TaskSpec], devices: DeviceSet | None,
            gpu_indices: Sequence[int] | None, node: str, peaks: PeakCache, idle_cache: IdleCache,
            opened: list[DeviceSet], observer: TaskObserver, say: Log) -> tuple[_Rank | None, str | None]:
    """This rank's devices, meter, idle and peaks, agreed on by the gang (a collective)."""

    def local() -> tuple[list[Gpu], EnergyMeter, RankFacts]:
        ds = devices
        if ds is None:
            ds = open_rank_devices(specs[0], gang.device, node, gang.rank)
            opened.append(ds)
        gpus = rank_gpus(ds, gang.device, gpu_indices, gang.rank)
        meter = EnergyMeter(ds, gpus, sample_interval_s=0.1 if specs[0].sample_power else None)
        return gpus, meter, read_facts(gang.rank, specs, ds, gpus, meter, gang.device, node, peaks, idle_cache)

    value, err = _agree(gang, local, say)
    if err is not None or value is None:
        return None, f"gang set-up: {err}"
    gpus, meter, mine = value
    facts = tuple(gang.all_gather(mine))
    return _Rank(gang=gang, meter=meter, gpus=tuple(gpus), facts=facts, observer=observer, say=say), None


def _measure(gang: Gang, runs: list[_Run], *, devices: DeviceSet | None,
             gpu_indices: Sequence[int] | None, node: str, peaks: PeakCache, idle_cache: IdleCache,
             opened: list[DeviceSet], observer: TaskObserver, say: Log,
             on_window: Callable[[TaskSpec, int], None] | None) -> None:
    """Every window of every run, in the pair's order; on a broken gang, the failures (see the module)."""
    specs = [run.spec for run in runs]
    rank: _Rank | None = None
    current: _Run | None = None
    try:
        rank, err = _set_up(gang, specs, devices, gpu_indices, node, peaks, idle_cache, opened, observer, say)
        if rank is None:
            for run in runs:
                _fail(run, err or "gang set-up failed", (), gang.world_size, node, observer, say)
            return
        reverse = any(s.reverse_order for s in specs)
        position = 0
        for r in range(max(s.repeats for s in specs)):
            for i in round_order(len(runs), r, reverse):
                run = runs[i]
                if r >= run.spec.repeats or run.result is not None:
                    continue
                current = run
                if _window_of(rank, run, r, position, on_window):
                    position += 1
                current = None
        gang.barrier()  # nobody leaves while another still reads the last gather
    except Exception as exc:  # noqa: BLE001 - a broken gang is reported, not raised
        say(traceback.format_exc())
        where = f" in task {current.spec.task_id} ({current.spec.label()})" if current is not None else ""
        mine = f"rank {gang.rank}: {_error(exc)}{where}"
        root = mine
        try:
            gang.post_failure(mine)
            root = gang.first_failure() or mine
        except Exception:  # noqa: BLE001 - the store may be gone with rank 0
            pass
        for run in runs:
            if run.result is None:
                _fail(run, root if run is current else f"gang aborted: {root}", rank.facts if rank else (),
                      gang.world_size, node, observer, say)


def run_gang_rank(specs: Sequence[TaskSpec], ctx: GangContext, *, devices: DeviceSet | None = None,
                  gpu_indices: Sequence[int] | None = None, node: str | None = None,
                  observer: TaskObserver | None = None, peaks: PeakCache | None = None,
                  idle_cache: IdleCache | None = None, on_window: Callable[[TaskSpec, int], None] | None = None,
                  log: Log | None = None) -> list[TaskResult]:
    """Measure a pair's `specs` as rank `ctx.rank` of a gang; rank 0 returns one result per spec, others [].

    Every rank calls it at once with the same specs. `devices`/`gpu_indices`: this rank's device set
    and the indices of its GPUs in it (None: opened here, see `rank_setup`); `node`: this rank's
    node label; `observer`: hears this rank's GPUs' task starts, the gang's inference count and the
    results; `peaks`, `idle_cache`: measurements kept between calls; `on_window(spec, r)`: called on
    this rank before repeat `r` of `spec` (a raise fails that task for the gang). Never raises for a
    failing task or a broken gang: failures are results (status failed, the error naming the rank).
    """
    node = node or socket.gethostname()
    say: Log = log or (lambda _msg: None)
    runs = [_Run(spec=s, started_at=time.time()) for s in specs]
    opened: list[DeviceSet] = []
    try:
        with process_group(ctx) as gang:
            _measure(gang, runs, devices=devices, gpu_indices=gpu_indices, node=node,
                     peaks=peaks if peaks is not None else PeakCache(),
                     idle_cache=idle_cache if idle_cache is not None else IdleCache(),
                     opened=opened, observer=observer or NullObserver(), say=say, on_window=on_window)
    except Exception as exc:  # noqa: BLE001 - the gang could not form (rendezvous timed out, port taken, ...)
        say(traceback.format_exc())
        for run in runs:
            if run.result is None:
                _fail(run, f"rank {ctx.rank}: gang set-up failed: {_error(exc)}", (), ctx.world_size, node,
                      observer or NullObserver(), say)
    finally:
        for ds in opened:
            ds.close()
    results: list[TaskResult] = []
    for run in runs:
        if run.result is None:  # not expected: every path above gives each run a result
            _fail(run, f"rank {ctx.rank}: the gang ended before this task ran", (), ctx.world_size, node,
                  observer or NullObserver(), say)
        assert run.result is not None
        results.append(run.result)
    return results if ctx.rank == 0 else []
