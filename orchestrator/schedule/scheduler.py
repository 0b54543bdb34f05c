"""The head's loop: submit every pair to Ray, store each result the moment it returns.

- One Ray task per pair (one per rank for a gang, after its placement group is ready),
  longest estimated first so the tail of the sweep is short.
- A pair lost with its node or worker is retried by Ray (`max_retries`, system failures
  only; a failing task is data, returned as `status="failed"`, never retried). Its results
  arrive once and are stored once, with the number of attempts.
- A pair that no alive node could run any more (its only nodes gone, e.g. the one node of
  its GPU model) is recorded as failed after a grace period, instead of waiting forever.
- A watchdog cancels a pair that has run (since its last start, as the tracker saw it) far
  beyond its estimate, sized not to pre-empt Ray's own retry after a network partition
  (see `sweep.estimate.watchdog_s`), and records its tasks as failed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

from moecluster.agents.records import TaskResult, TaskSpec
from moecluster.orchestrator.store import RunStore
from moecluster.orchestrator.sweep import PairPlan
from moecluster.orchestrator.sweep.estimate import watchdog_s

from . import gang
from .cluster import ACCELERATOR_PREFIX, Inventory, inventory
from .remote import pair_task
from .resources import ACCELERATOR_SHARE, PairResources, fits, pair_resources
from .tracker import PairTracker

TRACKER_POLL_S = 2.0


@dataclass(frozen=True)
class ScheduleOptions:
    max_retries: int = 3
    cpus_per_task: float = 1.0
    poll_s: float = 0.5
    watchdog: Callable[[float], float] = watchdog_s
    stranded_check_s: float = 15.0
    stranded_grace_s: float = 120.0  # a lost node may come back (restart, autoscaler) before we give up


class Events(Protocol):
    """What the head shows while a sweep runs (the CLI's progress bar implements it)."""

    def pair_started(self, pair: PairPlan, node: str, attempt: int) -> None: ...

    def stored(self, result: TaskResult, written: bool) -> None: ...


class NoEvents:
    def pair_started(self, pair: PairPlan, node: str, attempt: int) -> None:
        return None

    def stored(self, result: TaskResult, written: bool) -> None:
        return None


@dataclass
class _Job:
    pair: PairPlan
    res: PairResources
    refs: list[Any] = field(default_factory=list)
    done: int = 0
    pg: Any = None
    started_at: float | None = None
    attempts: int = 0
    node: str = ""
    stranded_since: float | None = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:500]


def failed_result(spec: TaskSpec, error: str, node: str = "", started_at: float = 0.0) -> TaskResult:
    return TaskResult(spec=spec, status="failed", error=error, node=node, started_at=started_at,
                      finished_at=time.time())


class Scheduler:
    """Runs pairs on the connected Ray cluster and writes their results to `store`."""

    def __init__(self, store: RunStore, inventory: Inventory, options: ScheduleOptions | None = None,
                 events: Events | None = None) -> None:
        self.store = store
        self.inventory = inventory
        self.options = options or ScheduleOptions()
        self.events = events or NoEvents()
        self._jobs: dict[Any, _Job] = {}  # pair-task ref not yet ready -> its job
        self._gangs: dict[Any, _Job] = {}  # placement-group ready ref -> job
        self._tracker: Any = None
        self._last_poll = 0.0
        self._last_stranded_check = time.monotonic()

    # -- submission ------------------------------------------------------------------------
    def _task_options(self, res: PairResources) -> dict[str, Any]:
        opts: dict[str, Any] = dict(num_cpus=res.cpus, num_gpus=res.gpus, max_retries=self.options.max_retries,
                                    retry_exceptions=False)
        if res.accelerator_type and res.ranks == 1:
            opts["resources"] = {ACCELERATOR_PREFIX + res.accelerator_type: ACCELERATOR_SHARE}
        return opts

    def _submit(self, pair: PairPlan) -> None:
        res = pair_resources(pair, self.inventory.total_gpus, self.options.cpus_per_task)
        job = _Job(pair=pair, res=res)
        if res.ranks == 1:
            ref = pair_task.options(name=f"pair {pair.pair_id}", **self._task_options(res)).remote(
                list(pair.tasks), tracker=self._tracker)
            job.refs.append(ref)
            self._jobs[ref] = job
            return
        job.pg = placement_group([res.bundle() for _ in range(res.ranks)], strategy=res.strategy)
        self._gangs[job.pg.ready()] = job

    def _launch_gang(self, job: _Job) -> None:
        nodes = gang.bundle_nodes(job.pg)
        addresses = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
        master = addresses[nodes[0]]
        port = gang.master_port(job.pair.pair_id)
        for rank in range(job.res.ranks):
            strategy = PlacementGroupSchedulingStrategy(job.pg, placement_group_bundle_index=rank)
            ref = pair_task.options(name=f"pair {job.pair.pair_id} rank {rank}", scheduling_strategy=strategy,
                                    **self._task_options(job.res)).remote(
                gang.rank_specs(job.pair.tasks, rank), rank=rank, tracker=self._tracker,
                env=gang.rank_env(rank, job.res.ranks, nodes, master, port))
            job.refs.append(ref)
            self._jobs[ref] = job

    # -- the loop --------------------------------------------------------------------------
    def run(self, pairs: list[PairPlan]) -> dict[str, int]:
        """Run `pairs` to the end; returns counts of tasks stored ok and failed."""
        here = ray.get_runtime_context().get_node_id()
        self._tracker = PairTracker.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True)).remote()
        counts = {"ok": 0, "failed": 0}
        try:
            for pair in sorted(pairs, key=lambda p: -p.total_estimated_s):
                self._submit(pair)
            while self._jobs or self._gangs:
                for result in self._step():
                    counts[result.status] += 1
        finally:
            self.cancel_all()
        return counts

    def _step(self) -> list[TaskResult]:
        waiting = list(self._gangs) + list(self._jobs)
        ready, _ = ray.wait(waiting, num_returns=1, timeout=self.options.poll_s)
        if ready:
            ready, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0)
        stored: list[TaskResult] = []
        for ref in ready:
            if ref in self._gangs:
                self._launch_gang(self._gangs.pop(ref))
                continue
            job = self._jobs.pop(ref)
            job.done += 1
            if job.done == len(job.refs):
                stored += self._finish(job)
        stored += self._watch()
        stored += self._stranded()
        return stored

    def _poll_tracker(self, force: bool = False) -> dict[str, Any]:
        now = time.monotonic()
        if not force and now - self._last_poll < TRACKER_POLL_S:
            return {}
        self._last_poll = now
        try:
            snapshot: dict[str, Any] = ray.get(self._tracker.snapshot.remote(), timeout=10)
        except Exception:  # noqa: BLE001 - without the tracker there is no progress, nothing worse
            return {}
        live = {job.pair.pair_id: job for job in self._jobs.values()}
        for pair_id, entry in snapshot.items():
            job = live.get(pair_id)
            if job is not None and entry.get("attempts", 0) > job.attempts:
                job.attempts, job.started_at, job.node = entry["attempts"], entry["started_at"], entry["node"]
                self.events.pair_started(job.pair, job.node, job.attempts)
        return snapshot

    def _finish(self, job: _Job) -> list[TaskResult]:
        try:
            per_rank = ray.get(job.refs)
            results = gang.merge_ranks(per_rank) if len(per_rank) > 1 else list(per_rank[0])
            error = None
        except Exception as exc:  # noqa: BLE001 - a lost pair is recorded, the sweep goes on
            results, error = [], exc
        self._release(job)
        entry = self._poll_tracker(force=True).get(job.pair.pair_id, {})
        job.attempts = max(job.attempts, int(entry.get("attempts", 0)))
        job.node = job.node or str(entry.get("node", ""))
        if error is not None:
            tries = f" after {job.attempts} attempt(s)" if job.attempts else ""
            results = [failed_result(spec, f"lost{tries}: {_first_line(error)}", job.node, job.started_at or 0.0)
                       for spec in job.pair.tasks]
        return self._store(job, results)

    def _store(self, job: _Job, results: list[TaskResult]) -> list[TaskResult]:
        for result in results:
            written = self.store.add(result, attempts=max(job.attempts, 1))
            self.events.stored(result, written)
        return results

    def _watch(self) -> list[TaskResult]:
        self._poll_tracker()
        now = time.time()
        late = {id(j): j for j in self._jobs.values()
                if j.started_at is not None and now - j.started_at > self.options.watchdog(j.pair.total_estimated_s)}
        out: list[TaskResult] = []
        for job in late.values():
            limit = self.options.watchdog(job.pair.total_estimated_s)
            for ref in job.refs:
                self._jobs.pop(ref, None)
                ray.cancel(ref, force=True)
            self._release(job)
            out += self._store(job, [failed_result(
                spec, f"watchdog: no result {limit:.0f} s after the pair started on {job.node or 'its node'}"
                f" (estimate {job.pair.total_estimated_s:.0f} s)", job.node, job.started_at or 0.0)
                for spec in job.pair.tasks])
        return out

    def _stranded(self) -> list[TaskResult]:
        now = time.monotonic()
        if now - self._last_stranded_check < self.options.stranded_check_s:
            return []
        self._last_stranded_check = now
        inv = inventory()
        waiting = {id(j): j for j in [*self._jobs.values(), *self._gangs.values()]}
        out: list[TaskResult] = []
        for job in waiting.values():
            if fits(job.res, inv):
                job.stranded_since = None
                continue
            job.stranded_since = job.stranded_since or now
            if now - job.stranded_since < self.options.stranded_grace_s:
                continue
            for ref in job.refs:
                self._jobs.pop(ref, None)
                ray.cancel(ref, force=True)
            self._gangs = {k: v for k, v in self._gangs.items() if v is not job}
            self._release(job)
            out += self._store(job, [failed_result(
                spec, f"unschedulable: for {self.options.stranded_grace_s:.0f} s no alive node could hold {job.res.ranks} x"
                f" {job.res.bundle()} ({job.res.strategy})") for spec in job.pair.tasks])
        return out

    def _release(self, job: _Job) -> None:
        if job.pg is not None:
            try:
                remove_placement_group(job.pg)
            except Exception:  # noqa: BLE001 - already gone with its node
                pass
            job.pg = None

    def cancel_all(self) -> None:
        """Cancel whatever still runs (Ctrl-C, or the end of `run`) and free placement groups."""
        for job in list(self._jobs.values()) + list(self._gangs.values()):
            for ref in job.refs:
                ray.cancel(ref, force=True)
            self._release(job)
        self._jobs.clear()
        self._gangs.clear()
        if self._tracker is not None:
            ray.kill(self._tracker)
            self._tracker = None
