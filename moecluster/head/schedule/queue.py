"""The head's queue of pairs waiting to start, and which of them may start now (no Ray here).

moecluster, not Ray, decides what runs next: it hands Ray only as many pairs as the alive nodes
can run at once, so Ray's own queue stays empty and a pair put back at the front of this queue
(its attempt was lost with a node or a process) is the next to start, ahead of pairs that never
ran. Ray's own retries would go to the back of its queue, behind every pair submitted so far.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from moecluster.head.sweep import PairPlan

from moecluster.head.schedule.cluster import Inventory
from moecluster.head.schedule.resources import PairResources, capacity


@dataclass
class Waiting:
    """A pair waiting to start: what it asks for, how many attempts it has had, and since when
    no alive node could run it (None: some node can)."""

    pair: PairPlan
    res: PairResources
    attempts: int = 0
    unplaceable_since: float | None = None


class PairQueue:
    """Pairs in the order they are to start: as given (`sweep.pairs.queue_order`), a pair put back
    after a lost attempt first."""

    def __init__(self, waiting: Sequence[Waiting] = ()) -> None:
        self._items: deque[Waiting] = deque(waiting)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Waiting]:
        return iter(self._items)

    def push_front(self, waiting: Waiting) -> None:
        """Put a pair whose attempt was lost before every other waiting pair."""
        self._items.appendleft(waiting)

    def admit(self, running: Sequence[PairResources], inv: Inventory, slots: int) -> list[Waiting]:
        """Take, in queue order, the pairs that can start now besides `running`.

        A pair starts when fewer pairs of its kind (same resources) run than the alive nodes hold,
        and the cluster's `slots` (one per GPU, or per CPU task) have room for its ranks. A pair
        whose kind is full waits without holding up pairs of other kinds (they use other slots); a
        pair the full cluster has no room for holds up every pair behind it, so nothing overtakes
        it. With nothing running, the first pair some node can hold always starts."""
        taken: list[Waiting] = []
        busy = list(running)
        for waiting in list(self._items):
            res = waiting.res
            room = capacity(res, inv)
            if room == 0 or sum(1 for r in busy if r == res) >= room:
                continue
            if busy and sum(r.ranks for r in busy) + res.ranks > slots:
                break
            taken.append(waiting)
            busy.append(res)
            self._items.remove(waiting)
        return taken

    def unplaceable(self, inv: Inventory, now: float, grace_s: float) -> list[Waiting]:
        """Remove and return the pairs no alive node has been able to run for `grace_s` (a lost
        node may come back, e.g. restarted, within it); note since when the others cannot."""
        out: list[Waiting] = []
        for waiting in list(self._items):
            if capacity(waiting.res, inv) > 0:
                waiting.unplaceable_since = None
                continue
            waiting.unplaceable_since = waiting.unplaceable_since if waiting.unplaceable_since is not None else now
            if now - waiting.unplaceable_since >= grace_s:
                self._items.remove(waiting)
                out.append(waiting)
        return out
