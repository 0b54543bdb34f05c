"""Gangs: an expert-parallel pair on `n` GPUs, run by `n` Ray actors in one placement group.

One attempt (`GangRun`):
1. a placement group of `n` one-GPU bundles (`STRICT_PACK` by default: one node; the sweep's
   `placement_strategy` otherwise, e.g. `SPREAD`);
2. once it is placed, one `GangRankActor` per rank on bundle `rank` (one call at a time, no
   restarts: a rank that dies is not replaced inside a running process group);
3. rank 0's `rendezvous()` picks its node's address and a port free there, and reports the
   attempt's start (`PairStarted`); that object reference is an argument of every rank's `run()`,
   so Ray hands the address to the ranks without a round trip through the head;
4. every rank checks its GPU, joins the process group and measures
   (`measure.parallel.run_gang_rank`); rank 0 returns the gang's results, the others [].

A gang fails as one. The first rank whose call errors or whose actor dies ends the attempt:
every actor of the gang is killed (a rank blocked in a collective with a dead peer goes with
it) and the placement group removed. The scheduler then puts the pair back at the front of its
queue and starts a new attempt (new placement group, new actors, new port), up to its retries.
Results are handed back once, after every rank of one attempt returned.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import ray
from moecluster.node.gang import Rendezvous
from moecluster.node.progress import PairStarted
from moecluster.spec.records import TaskResult
from moecluster.head.sweep import PairPlan
from ray.exceptions import RayActorError
from ray.util.placement_group import PlacementGroup, placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from moecluster.head.schedule.cluster import ACCELERATOR_PREFIX
from moecluster.head.schedule.remote import GangRankActor
from moecluster.head.schedule.resources import ACCELERATOR_SHARE, PairResources

# After a rank fails, how long to wait for the other ranks' errors (the first error seen may be
# a survivor's broken collective; the dead rank's own error names the cause).
SETTLE_S = 1.0


@dataclass(frozen=True)
class GangOutcome:
    """How a gang's attempt ended: rank 0's results, or why it failed (`error`)."""

    results: tuple[TaskResult, ...]
    error: str | None


def first_line(exc: BaseException) -> str:
    """`Type: last line of the message` (Ray errors carry the remote traceback before it)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:500]


def actor_name(pair: PairPlan, attempt: int, rank: int) -> str:
    """The Ray name of one rank's actor (run, pair, attempt and rank; unique within a cluster)."""
    return f"gang-{pair.tasks[0].run_id}-{pair.pair_id}-a{attempt}-r{rank}"


def bundle_nodes(pg: PlacementGroup) -> list[str]:
    """The node id of every bundle of a placed group, in bundle (rank) order."""
    table = placement_group_table(pg)["bundles_to_node_id"]
    return [table[i] for i in sorted(table)]


def local_ranks(nodes: list[str]) -> list[int]:
    """Each rank's index among the ranks on its node (`nodes`: each rank's node, in rank order)."""
    return [nodes[:rank].count(node) for rank, node in enumerate(nodes)]


class GangRun:
    """One attempt of a gang. The scheduler waits on `waiting()` and hands each ready reference
    to `advance()`, which returns the attempt's start report when rank 0 has it, and its outcome
    once the attempt is over."""

    def __init__(self, pair: PairPlan, res: PairResources, *, attempt: int = 1,
                 label_selector: dict[str, str] | None = None) -> None:
        """`label_selector`: Ray node labels every rank's node must match (e.g. nodes to keep off)."""
        if res.ranks < 2:
            raise ValueError(f"pair {pair.pair_id}: a gang needs at least 2 ranks, not {res.ranks}")
        self.pair, self.res, self.attempt = pair, res, attempt
        self.node_ids: list[str] = []  # each rank's node, once the group is placed
        self._actors: list[Any] = []
        self._runs: dict[Any, int] = {}  # run() reference -> rank
        self._meet: Any = None  # rank 0's rendezvous() reference, until it is seen
        self._returned: dict[int, list[TaskResult]] = {}
        self._pg: PlacementGroup | None = placement_group(
            [res.bundle() for _ in range(res.ranks)], strategy=res.strategy,
            name=f"moecluster {pair.pair_id} attempt {attempt}",
            bundle_label_selector=[dict(label_selector) for _ in range(res.ranks)] if label_selector else None)
        self._placing: Any = self._pg.ready()  # the placement group's ready() reference while it waits

    def waiting(self) -> list[Any]:
        """The references whose readiness moves the gang on."""
        if self._placing is not None:
            return [self._placing]
        meet = [self._meet] if self._meet is not None else []
        return meet + [ref for ref, rank in self._runs.items() if rank not in self._returned]

    def advance(self, ref: Any) -> PairStarted | GangOutcome | None:
        """React to `ref` being ready: rank 0's start report, the attempt's outcome, or None."""
        if self._placing is not None and ref == self._placing:
            self._placing = None
            if self._pg is None:
                return None
            try:
                self._launch(self._pg)
            except Exception as exc:  # noqa: BLE001 - e.g. the group went with its node
                return self._fail({-1: exc})
            return None
        if self._meet is not None and ref == self._meet:
            self._meet = None
            try:
                meet: Rendezvous = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - rank 0 died before it could report
                return self._fail({0: exc, **self._other_errors(ref)})
            return meet.started
        rank = self._runs.get(ref)
        if rank is None or rank in self._returned:
            return None  # a reference already handled
        try:
            self._returned[rank] = list(ray.get(ref))
        except Exception as exc:  # noqa: BLE001 - a rank's error or death ends the attempt
            return self._fail({rank: exc, **self._other_errors(ref)})
        if len(self._returned) < self.res.ranks:
            return None
        self.cancel()
        return GangOutcome(results=tuple(self._returned[0]), error=None)

    def cancel(self) -> None:
        """End the attempt: kill every actor, remove the placement group."""
        for actor in self._actors:
            with contextlib.suppress(Exception):  # already dead
                ray.kill(actor, no_restart=True)
        if self._pg is not None:
            with contextlib.suppress(Exception):  # already gone with its node
                remove_placement_group(self._pg)
        self._actors, self._runs, self._pg, self._placing, self._meet = [], {}, None, None, None

    def _launch(self, pg: PlacementGroup) -> None:
        world = self.res.ranks
        self.node_ids = bundle_nodes(pg)
        local = local_ranks(self.node_ids)
        resources = ({ACCELERATOR_PREFIX + self.res.accelerator_type: ACCELERATOR_SHARE}
                     if self.res.accelerator_type else {})
        self._actors = [
            GangRankActor.options(
                name=actor_name(self.pair, self.attempt, rank), num_cpus=self.res.cpus, num_gpus=self.res.gpus,
                resources=resources, max_concurrency=1, max_restarts=0, max_task_retries=0,
                scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=rank),
            ).remote(rank, world, local[rank])
            for rank in range(world)]
        self._meet = self._actors[0].rendezvous.remote(self.pair.pair_id, self.attempt)
        specs = list(self.pair.tasks)
        self._runs = {actor.run.remote(specs, self._meet): rank for rank, actor in enumerate(self._actors)}

    def _other_errors(self, failed: Any) -> dict[int, BaseException]:
        """The other ranks' errors that arrive within `SETTLE_S` (their results are not kept)."""
        others = [r for r, rank in self._runs.items() if r != failed and rank not in self._returned]
        if not others:
            return {}
        ready, _ = ray.wait(others, num_returns=len(others), timeout=SETTLE_S)
        out: dict[int, BaseException] = {}
        for ref in ready:
            try:
                ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - collected for the message
                out[self._runs[ref]] = exc
        return out

    def _fail(self, errors: dict[int, BaseException]) -> GangOutcome:
        """End this attempt, naming a dead rank's error first."""
        died = sorted(errors, key=lambda r: (not isinstance(errors[r], RayActorError), r))
        why = "; ".join(f"{'placing' if r < 0 else f'rank {r}'}: {first_line(errors[r])}" for r in died)
        self.cancel()
        return GangOutcome(results=(), error=f"gang of {self.res.ranks}: {why}")
