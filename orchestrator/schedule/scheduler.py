"""The head's loop: submit every pair to Ray, store each result the moment it returns.

- A single-GPU pair is one Ray task (`gpu_pair_task`, a fresh worker per pair); a pair of
  expert-parallel degree `n` is a gang of `n` actors in one placement group (`gang.GangRun`).
  Longest estimated first, so the tail of the sweep is short.
- A pair task lost with its node or worker is retried by Ray (`max_retries`, system failures
  only; a failing task is data, returned as `status="failed"`, never retried). A gang fails
  and is retried as one (`max_retries` times). Either way its results arrive once and are
  stored once, with the number of attempts.
- A pair that no alive node could run any more (its only nodes gone, e.g. the one node of
  its GPU model) is recorded as failed after a grace period, instead of waiting forever.
- A watchdog cancels a pair that has run (since its last start, as the tracker saw it) far
  beyond its estimate, sized not to pre-empt Ray's own retry after a network partition
  (see `sweep.estimate.watchdog_s`), and records its tasks as failed.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import ray
from moecluster.agents.records import TaskResult, TaskSpec
from moecluster.orchestrator.store import RunStore
from moecluster.orchestrator.sweep import PairPlan
from moecluster.orchestrator.sweep.estimate import watchdog_s
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .cluster import ACCELERATOR_PREFIX, Inventory, inventory
from .gang import GangOutcome, GangRun, first_line
from .remote import PairTracker, cpu_pair_task, gpu_pair_task
from .resources import ACCELERATOR_SHARE, PairResources, fits, pair_resources

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


class _Job:
    """One pair on its way: a Ray task (`ref`) or a gang (`gang`), and what the tracker saw."""

    def __init__(self, pair: PairPlan, res: PairResources, ref: Any = None, gang: GangRun | None = None) -> None:
        self.pair, self.res, self.ref, self.gang = pair, res, ref, gang
        self.started_at: float | None = None
        self.attempts = 0
        self.node = ""
        self.stranded_since: float | None = None

    def waiting(self) -> list[Any]:
        return self.gang.waiting() if self.gang is not None else [self.ref]

    def cancel(self) -> None:
        if self.gang is not None:
            self.gang.cancel()
        else:
            ray.cancel(self.ref, force=True)


def failed_result(spec: TaskSpec, error: str, node: str = "", started_at: float = 0.0) -> TaskResult:
    return TaskResult(spec=spec, status="failed", error=error, node=node, started_at=started_at,
                      finished_at=time.time())


def complete(pair: PairPlan, results: list[TaskResult], node: str, started_at: float) -> list[TaskResult]:
    """One result per task of the pair, in its order: a task the node side returned nothing
    for is recorded as failed (never silently missing)."""
    by_id = {r.spec.task_id: r for r in results}
    return [by_id.get(spec.task_id) or failed_result(spec, "the pair's body returned no result for this task",
                                                       node, started_at) for spec in pair.tasks]


class Scheduler:
    """Runs pairs on the connected Ray cluster and writes their results to `store`."""

    def __init__(self, store: RunStore, inventory: Inventory, options: ScheduleOptions | None = None,
                 events: Events | None = None) -> None:
        self.store = store
        self.inventory = inventory
        self.options = options or ScheduleOptions()
        self.events = events or NoEvents()
        self._jobs: dict[str, _Job] = {}  # pair id -> job not yet stored
        self._tracker: Any = None
        self._last_poll = 0.0
        self._last_stranded_check = time.monotonic()

    # -- submission ------------------------------------------------------------------------
    def _submit(self, pair: PairPlan) -> None:
        res = pair_resources(pair, self.inventory.total_gpus, self.options.cpus_per_task)
        if res.ranks > 1:
            gang = GangRun(pair, res, max_retries=self.options.max_retries, tracker=self._tracker)
            self._jobs[pair.pair_id] = _Job(pair, res, gang=gang)
            return
        opts: dict[str, Any] = {"num_cpus": res.cpus, "num_gpus": res.gpus, "max_retries": self.options.max_retries,
                                    "retry_exceptions": False}
        if res.accelerator_type:
            opts["resources"] = {ACCELERATOR_PREFIX + res.accelerator_type: ACCELERATOR_SHARE}
        task = gpu_pair_task if res.gpus else cpu_pair_task
        ref = task.options(name=f"pair {pair.pair_id}", **opts).remote(list(pair.tasks), self._tracker)
        self._jobs[pair.pair_id] = _Job(pair, res, ref=ref)

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
            while self._jobs:
                for result in self._step():
                    counts[result.status] += 1
        finally:
            self.cancel_all()
        return counts

    def _step(self) -> list[TaskResult]:
        owner = {ref: job for job in self._jobs.values() for ref in job.waiting()}
        stored: list[TaskResult] = []
        if owner:
            ready, _ = ray.wait(list(owner), num_returns=1, timeout=self.options.poll_s)
            if ready:
                ready, _ = ray.wait(list(owner), num_returns=len(owner), timeout=0)
            for ref in ready:
                job = owner[ref]
                if self._jobs.get(job.pair.pair_id) is not job:
                    continue  # stored already in this step
                if job.gang is None:
                    stored += self._finish(job)
                    continue
                outcome = job.gang.advance(ref)
                if outcome is not None:
                    stored += self._finish_gang(job, outcome)
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
        for pair_id, entry in snapshot.items():
            job = self._jobs.get(pair_id)
            if job is not None and entry.get("attempts", 0) > job.attempts:
                job.attempts, job.started_at, job.node = entry["attempts"], entry["started_at"], entry["node"]
                self.events.pair_started(job.pair, job.node, job.attempts)
        return snapshot

    def _settle(self, job: _Job) -> None:
        """Take the job off the books, with the tracker's last word on its attempts and node."""
        self._jobs.pop(job.pair.pair_id, None)
        entry = self._poll_tracker(force=True).get(job.pair.pair_id, {})
        job.attempts = max(job.attempts, int(entry.get("attempts", 0)))
        job.node = job.node or str(entry.get("node", ""))

    def _finish(self, job: _Job) -> list[TaskResult]:
        try:
            results = list(ray.get(job.ref))
            error = None
        except Exception as exc:  # noqa: BLE001 - a lost pair is recorded, the sweep goes on
            results, error = [], exc
        self._settle(job)
        if error is not None:
            tries = f" after {job.attempts} attempt(s)" if job.attempts else ""
            results = [failed_result(spec, f"lost{tries}: {first_line(error)}", job.node, job.started_at or 0.0)
                       for spec in job.pair.tasks]
        return self._store(job, complete(job.pair, results, job.node, job.started_at or 0.0))

    def _finish_gang(self, job: _Job, outcome: GangOutcome) -> list[TaskResult]:
        self._settle(job)
        job.attempts = max(job.attempts, outcome.attempts)
        if outcome.error is not None:
            results = [failed_result(spec, f"lost: {outcome.error}", job.node, job.started_at or 0.0)
                       for spec in job.pair.tasks]
        else:
            results = complete(job.pair, list(outcome.results), job.node, job.started_at or 0.0)
        return self._store(job, results)

    def _store(self, job: _Job, results: list[TaskResult]) -> list[TaskResult]:
        for result in results:
            written = self.store.add(result, attempts=max(job.attempts, 1))
            self.events.stored(result, written)
        return results

    def _watch(self) -> list[TaskResult]:
        self._poll_tracker()
        now = time.time()
        late = [j for j in self._jobs.values()
                if j.started_at is not None and now - j.started_at > self.options.watchdog(j.pair.total_estimated_s)]
        out: list[TaskResult] = []
        for job in late:
            limit = self.options.watchdog(job.pair.total_estimated_s)
            job.cancel()
            self._jobs.pop(job.pair.pair_id, None)
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
        out: list[TaskResult] = []
        for job in list(self._jobs.values()):
            if fits(job.res, inv):
                job.stranded_since = None
                continue
            job.stranded_since = job.stranded_since or now
            if now - job.stranded_since < self.options.stranded_grace_s:
                continue
            job.cancel()
            self._jobs.pop(job.pair.pair_id, None)
            out += self._store(job, [failed_result(
                spec, f"unschedulable: for {self.options.stranded_grace_s:.0f} s no alive node could hold"
                f" {job.res.ranks} x {job.res.bundle()} ({job.res.strategy})") for spec in job.pair.tasks])
        return out

    def cancel_all(self) -> None:
        """Cancel whatever still runs (Ctrl-C, or the end of `run`): tasks, gangs and their
        placement groups, the tracker."""
        for job in self._jobs.values():
            job.cancel()
        self._jobs.clear()
        if self._tracker is not None:
            ray.kill(self._tracker)
            self._tracker = None
