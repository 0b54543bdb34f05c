"""The head's loop: start pairs on Ray in the order moecluster decides, store each result the
moment it returns.

- What runs next is moecluster's choice (`queue.PairQueue`): replicate rounds, longest estimate first in
  each (`sweep.pairs.queue_order`), and Ray
  gets only as many pairs as the alive nodes can run at once. A single-GPU pair is one Ray task
  (`gpu_pair_task`: a fresh process per pair); a pair of expert-parallel degree `n` is a gang of
  `n` actors (`gang.GangRun`).
- Every attempt reports its start first (`PairStarted`: node, Ray's GPUs, process, and the
  attempt number the head gave it). Attempts, the watchdog and the progress display go by these
  reports, kept here in the head: no actor holds bookkeeping that could be lost with a worker.
- An attempt is lost when its process or node dies (Ray's error), when the GCS marks its node
  dead (the inventory, polled every second: with `raysettings` that is seconds after a
  partition, long before gRPC gives up on the connection), when its node has not answered the
  head for `unreachable_s` (`reach`: with Ray's defaults the GCS takes about a minute, and the
  other nodes would wait for the pair meanwhile), or when its process computes on another GPU
  than Ray gave it (`GpuMismatch`). A node that does not answer gets no new pair until it does.
  The pair goes back to the *front* of the queue
  and starts as soon as a slot frees, up to `max_retries` times, while the rest of the sweep goes
  on. Ray's own retries are off: they would queue behind every pair already submitted.
- A failing task is data: the body returns it as `status="failed"`; it is stored, not retried.
  A task that raised an error of its own (not a lost process) fails its pair at once.
- A pair that no alive node could run any more (e.g. the one node of its GPU model is gone) is
  recorded as failed after a grace period (a lost node may come back), instead of waiting forever.
- A node the GCS marks dead is named once (`warn`): Ray ends that node's raylet even when the node
  is reachable again, so it stays out until its `ray start` is restarted.
- A watchdog cancels an attempt that has run, since its own start, far beyond its estimate
  (`sweep.estimate.watchdog_s`), and records the pair's tasks as failed.

Each task's result is stored once, with the number of the attempt that produced it. Every
attempt handed to Ray is recorded in the store too (`RunStore.pair_attempts`), with the moment
its loss put the pair back at the front of the queue.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import ray
from moecluster.node.binding import GpuMismatch
from moecluster.node.progress import PairStarted
from moecluster.spec.records import TaskResult, TaskSpec
from moecluster.head.store import RunStore
from moecluster.head.sweep import PairPlan
from moecluster.head.sweep.estimate import watchdog_s
from moecluster.head.sweep.pairs import queue_order
from ray.exceptions import RayTaskError

from moecluster.head.schedule.cluster import ACCELERATOR_PREFIX, Inventory, NodeInfo, inventory
from moecluster.head.schedule.gang import GangOutcome, GangRun, first_line
from moecluster.head.schedule.queue import PairQueue, Waiting
from moecluster.head.schedule.raysettings import HEAD_UNREACHABLE_S
from moecluster.head.schedule.reach import Reach
from moecluster.head.schedule.remote import cpu_pair_task, gpu_pair_task
from moecluster.head.schedule.resources import (
    ACCELERATOR_SHARE, PairResources, capacity, pair_resources, parallel_slots
)


@dataclass(frozen=True)
class ScheduleOptions:
    max_retries: int = 3  # new attempts of a pair after a lost one
    cpus_per_task: float = 1.0
    poll_s: float = 0.5
    watchdog: Callable[[float], float] = watchdog_s
    inventory_poll_s: float = 1.0  # how often the alive nodes are read (a dead node's pairs go back to the queue)
    stranded_grace_s: float = 120.0  # a lost node may come back (restart, autoscaler) before we give up
    unreachable_s: float = HEAD_UNREACHABLE_S  # a node silent this long to the head is treated as lost until it answers


#: Ray's label of every node: its node id (a task's `label_selector` keeps it off listed nodes)
NODE_ID_LABEL = "ray.io/node-id"


class Events(Protocol):
    """What the head shows while a sweep runs (the CLI's progress bar implements it)."""

    def pair_started(self, pair: PairPlan, node: str, attempt: int) -> None: ...

    def pair_retried(self, pair: PairPlan, attempt: int, reason: str) -> None:
        """Attempt `attempt` of `pair` was lost for `reason`; the pair is first in the queue again."""

    def stored(self, result: TaskResult, written: bool) -> None: ...


class NoEvents:
    def pair_started(self, pair: PairPlan, node: str, attempt: int) -> None:
        return None

    def pair_retried(self, pair: PairPlan, attempt: int, reason: str) -> None:
        return None

    def stored(self, result: TaskResult, written: bool) -> None:
        return None


class _Attempt:
    """One attempt of a pair on its way: a streaming Ray task (`gen`) or a gang, its start report,
    and its row in the store's attempts (None: never handed to Ray)."""

    def __init__(self, waiting: Waiting, number: int, gen: Any = None, gang: GangRun | None = None,
                 row: int | None = None) -> None:
        self.pair, self.res, self.number, self.gen, self.gang = waiting.pair, waiting.res, number, gen, gang
        self.row = row
        self.started: PairStarted | None = None
        self.started_mono: float | None = None  # the head's clock when the start report arrived
        self.unplaceable_since: float | None = None

    @property
    def node(self) -> str:
        return self.started.node if self.started is not None else ""

    @property
    def node_ids(self) -> set[str]:
        """The nodes the attempt runs on (as far as known: rank 0's report, every rank's bundle)."""
        ids = set(self.gang.node_ids) if self.gang is not None else set()
        return ids | ({self.started.node_id} if self.started is not None else set())

    def waiting(self) -> list[Any]:
        return self.gang.waiting() if self.gang is not None else [self.gen]

    def cancel(self) -> None:
        if self.gang is not None:
            self.gang.cancel()
        else:
            with contextlib.suppress(Exception):  # already over, or its node is gone
                ray.cancel(self.gen, force=True)


def failed_result(spec: TaskSpec, error: str, node: str = "", started_at: float = 0.0) -> TaskResult:
    return TaskResult(spec=spec, status="failed", error=error, node=node, started_at=started_at,
                      finished_at=time.time())


def complete(pair: PairPlan, results: list[TaskResult], node: str, started_at: float) -> list[TaskResult]:
    """One result per task of the pair, in its order: a task the node side returned nothing
    for is recorded as failed (never silently missing)."""
    by_id = {r.spec.task_id: r for r in results}
    return [by_id.get(spec.task_id) or failed_result(spec, "the pair's body returned no result for this task",
                                                       node, started_at) for spec in pair.tasks]


def brief(exc: BaseException, limit: int = 300) -> str:
    """`Type: first sentence` of an error (Ray's say what happened first, then pages of advice)."""
    line = first_line(exc)
    kind, _, text = line.partition(": ")
    sentence = text.split(". ")[0].rstrip(".")
    return f"{kind}: {sentence}"[:limit] if sentence else kind


def lost_not_failed(exc: BaseException) -> bool:
    """Whether an attempt's error means it was lost (process or node gone, wrong GPU: worth another
    attempt) rather than failed by an error of the body itself (which would only repeat)."""
    return isinstance(exc, GpuMismatch) or not isinstance(exc, RayTaskError)


class Scheduler:
    """Runs pairs on the connected Ray cluster and writes their results to `store`."""

    def __init__(self, store: RunStore, inventory: Inventory, options: ScheduleOptions | None = None,
                 events: Events | None = None, warn: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.inventory = inventory
        self.options = options or ScheduleOptions()
        self.events = events or NoEvents()
        self.warn = warn or (lambda line: None)
        self._known: dict[str, NodeInfo] = {n.node_id: n for n in inventory.nodes}  # every node seen alive
        self._dead: set[str] = set()  # nodes the GCS marked dead (named once)
        self._reach = Reach(self.options.unreachable_s)
        self._silent: set[str] = set()  # alive nodes that have not answered the head for `unreachable_s`
        self._queue = PairQueue()
        self._running: dict[str, _Attempt] = {}  # pair id -> its attempt under way
        self._gpu_mode = False
        self._last_inventory = time.monotonic()

    # -- the loop --------------------------------------------------------------------------
    def run(self, pairs: list[PairPlan]) -> dict[str, int]:
        """Run `pairs` to the end; returns counts of tasks stored ok and failed."""
        cpus = self.options.cpus_per_task
        waiting = [Waiting(p, pair_resources(p, self.inventory.total_gpus, cpus))
                   for p in queue_order(pairs)]
        self._gpu_mode = any(w.res.gpus for w in waiting)
        self._queue = PairQueue(waiting)
        counts = {"ok": 0, "failed": 0}
        try:
            while len(self._queue) or self._running:
                for result in self._step():
                    counts[result.status] += 1
        finally:
            self.cancel_all()
        return counts

    def _step(self) -> list[TaskResult]:
        stored = self._check_nodes()
        self._start_admitted()
        stored += self._collect()
        stored += self._watch()
        return stored

    # -- starting attempts -------------------------------------------------------------------
    def _start_admitted(self) -> None:
        slots = parallel_slots(self.inventory, self._gpu_mode, self.options.cpus_per_task)
        for waiting in self._queue.admit([a.res for a in self._running.values()], self.inventory, slots):
            self._start(waiting)

    def _start(self, waiting: Waiting) -> None:
        number, res, pair = waiting.attempts + 1, waiting.res, waiting.pair
        row = self.store.attempt_submitted(pair.pair_id, number, time.time())
        avoid = self._avoid()
        if res.ranks > 1:
            gang = GangRun(pair, res, attempt=number, label_selector=avoid)
            self._running[pair.pair_id] = _Attempt(waiting, number, gang=gang, row=row)
            return
        opts: dict[str, Any] = {"num_cpus": res.cpus, "num_gpus": res.gpus, "max_retries": 0,
                                "retry_exceptions": False, "name": f"pair {pair.pair_id} attempt {number}"}
        if avoid:
            opts["label_selector"] = avoid
        if res.accelerator_type:
            opts["resources"] = {ACCELERATOR_PREFIX + res.accelerator_type: ACCELERATOR_SHARE}
        task = gpu_pair_task if res.gpus else cpu_pair_task
        gen = task.options(**opts).remote(list(pair.tasks), number)
        self._running[pair.pair_id] = _Attempt(waiting, number, gen=gen, row=row)

    def _avoid(self) -> dict[str, str]:
        """Ray's label selector that keeps an attempt off the nodes that do not answer (none: {})."""
        return {NODE_ID_LABEL: f"!in({', '.join(sorted(self._silent))})"} if self._silent else {}

    # -- what comes back ---------------------------------------------------------------------
    def _collect(self) -> list[TaskResult]:
        owner = {ref: att for att in self._running.values() for ref in att.waiting()}
        if not owner:
            time.sleep(self.options.poll_s)  # nothing under way: pairs wait for a node to come back
            return []
        ready, _ = ray.wait(list(owner), num_returns=1, timeout=self.options.poll_s)
        if ready:
            ready, _ = ray.wait(list(owner), num_returns=len(owner), timeout=0)
        stored: list[TaskResult] = []
        for ref in ready:
            att = owner[ref]
            if self._running.get(att.pair.pair_id) is att:  # not settled already in this step
                stored += self._advance(att, ref)
        return stored

    def _advance(self, att: _Attempt, ref: Any) -> list[TaskResult]:
        if att.gang is not None:
            outcome = att.gang.advance(ref)
            if isinstance(outcome, PairStarted):
                self._mark_started(att, outcome)
            elif isinstance(outcome, GangOutcome):
                if outcome.error is not None:
                    return self._lost(att, outcome.error)  # a gang is retried whole, whatever ended it
                return self._finish(att, list(outcome.results))
            return []
        try:
            item = ray.get(next(att.gen))
        except StopIteration:
            return self._fail(att, "the pair's task ended without results")
        except Exception as exc:  # noqa: BLE001 - a lost attempt is retried, a failed one recorded
            return self._lost(att, brief(exc)) if lost_not_failed(exc) else self._fail(att, first_line(exc))
        if isinstance(item, PairStarted):
            self._mark_started(att, item)
            return []
        return self._finish(att, list(item))

    def _mark_started(self, att: _Attempt, report: PairStarted) -> None:
        att.started, att.started_mono = report, time.monotonic()
        self.events.pair_started(att.pair, report.node, report.attempt)

    def _finish(self, att: _Attempt, results: list[TaskResult]) -> list[TaskResult]:
        self._running.pop(att.pair.pair_id, None)
        started_at = att.started.started_at if att.started is not None else 0.0
        return self._store(att, complete(att.pair, results, att.node, started_at))

    def _fail(self, att: _Attempt, error: str) -> list[TaskResult]:
        """Record every task of the attempt's pair as failed with `error`; no new attempt."""
        att.cancel()
        self._running.pop(att.pair.pair_id, None)
        started_at = att.started.started_at if att.started is not None else 0.0
        return self._store(att, [failed_result(spec, error, att.node, started_at) for spec in att.pair.tasks])

    def _lost(self, att: _Attempt, reason: str) -> list[TaskResult]:
        """The attempt is gone: its pair goes back to the front of the queue, or, its retries
        spent, is recorded as failed. The store notes when (the head's clock): pairs handed to Ray
        before that moment keep their places; from then on this pair is first in the queue."""
        if att.row is not None:
            self.store.attempt_lost(att.row, time.time(), reason)
        if att.number > self.options.max_retries:
            return self._fail(att, f"lost {att.number} time(s); last: {reason}")
        att.cancel()
        self._running.pop(att.pair.pair_id, None)
        self.events.pair_retried(att.pair, att.number, reason)
        self._queue.push_front(Waiting(att.pair, att.res, attempts=att.number))
        return []

    def _store(self, att: _Attempt, results: list[TaskResult]) -> list[TaskResult]:
        attempts = att.started.attempt if att.started is not None else max(att.number, 1)  # the task's own word
        for result in results:
            written = self.store.add(result, attempts=attempts)
            self.events.stored(result, written)
        return results

    # -- nodes, watchdog -------------------------------------------------------------------
    def _check_nodes(self) -> list[TaskResult]:
        """Every `inventory_poll_s`: attempts on nodes the GCS marked dead are lost; pairs no alive
        node could run for `stranded_grace_s` are recorded as failed."""
        now = time.monotonic()
        if now - self._last_inventory < self.options.inventory_poll_s:
            return []
        self._last_inventory = now
        self.inventory = self._usable(inventory(), now)
        alive = {n.node_id for n in self.inventory.nodes}
        stored: list[TaskResult] = []
        for att in list(self._running.values()):
            gone = att.node_ids - alive
            if gone:
                where = att.node if att.started is not None and att.started.node_id in gone else f"{len(gone)} node(s)"
                why = (f"has not answered the head for {self.options.unreachable_s:g} s" if gone <= self._silent
                       else "was lost (Ray marked it dead)")
                stored += self._lost(att, f"its node {where} {why}")
                continue
            if att.started is None and capacity(att.res, self.inventory) == 0:  # queued in Ray, no node left
                att.unplaceable_since = att.unplaceable_since if att.unplaceable_since is not None else now
                if now - att.unplaceable_since >= self.options.stranded_grace_s:
                    stored += self._fail(att, self._unschedulable(att.res))
            else:
                att.unplaceable_since = None
        for waiting in self._queue.unplaceable(self.inventory, now, self.options.stranded_grace_s):
            att = _Attempt(waiting, waiting.attempts)
            stored += self._store(att, [failed_result(spec, self._unschedulable(waiting.res))
                                        for spec in waiting.pair.tasks])
        return stored

    def _usable(self, alive: Inventory, now: float) -> Inventory:
        """The alive nodes less those silent to the head; names each node the GCS marked dead, once,
        and each node that stops answering."""
        for node in alive.nodes:
            self._known[node.node_id] = node
        ids = {n.node_id for n in alive.nodes}
        for node_id, node in sorted(self._known.items()):
            if node_id not in ids and node_id not in self._dead:
                self._dead.add(node_id)
                self.warn(f"node {node_id} ({node.address}) was marked dead by Ray; it will not rejoin this cluster"
                          " until its `ray start` is restarted (Ray ends a node it declared dead, even one that"
                          " is reachable again); the other nodes go on")
        silent = self._reach.check(alive.nodes, now)
        for node_id in sorted(silent - self._silent):
            node = self._known[node_id]
            self.warn(f"node {node_id} ({node.address}) has not answered the head for"
                      f" {self.options.unreachable_s:g} s: its pairs go back to the queue and it gets no new pair"
                      " until it answers; the other nodes go on")
        self._silent = silent
        return Inventory(tuple(n for n in alive.nodes if n.node_id not in silent))

    def _unschedulable(self, res: PairResources) -> str:
        return (f"unschedulable: for {self.options.stranded_grace_s:.0f} s no alive node could hold"
                f" {res.ranks} x {res.bundle()} ({res.strategy})")

    def _watch(self) -> list[TaskResult]:
        now = time.monotonic()
        stored: list[TaskResult] = []
        for att in list(self._running.values()):
            limit = self.options.watchdog(att.pair.total_estimated_s)
            if att.started_mono is not None and now - att.started_mono > limit:
                stored += self._fail(att, f"watchdog: no result {limit:.0f} s after attempt {att.number} started on"
                                          f" {att.node or 'its node'} (estimate {att.pair.total_estimated_s:.0f} s)")
        return stored

    def cancel_all(self) -> None:
        """Cancel whatever still runs (Ctrl-C, SIGTERM, or the end of `run`): tasks, gangs and
        their placement groups."""
        for att in self._running.values():
            att.cancel()
        self._running.clear()
