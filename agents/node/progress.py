"""Progress of running pairs: a small tracker (a Ray actor on the head's node) that pairs report
to when they start (each attempt, so retries are counted), where, and how far they are.

The head polls the tracker for the progress display and for the watchdog, which counts a
pair's time from the moment it really started (not from its submission: a queued pair is not
late). Reports are fire-and-forget; a pair never waits on, or fails because of, the tracker.
`PairTracker` is a plain class: the head makes it a Ray actor, so its process imports only
this module.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from moecluster.agents.observer import TaskObserver

if TYPE_CHECKING:
    from moecluster.agents.devices import GpuInfo
    from moecluster.agents.records import TaskResult, TaskSpec

PROGRESS_EVERY_S = 2.0


class PairTracker:
    """Per pair: attempts, start time and node of the last attempt, the task running, its count."""

    def __init__(self) -> None:
        self._pairs: dict[str, dict[str, Any]] = {}

    def started(self, pair_id: str, rank: int, node: str, gpus: list[int]) -> None:
        """A pair (rank 0: a new attempt) has its GPUs on `node`."""
        entry = self._pairs.setdefault(pair_id, {"attempts": 0, "ranks": {}})
        if rank == 0:
            entry.update(attempts=entry["attempts"] + 1, started_at=time.time(), node=node, task=None,
                         inferences=0)
        entry["ranks"][rank] = {"node": node, "gpus": gpus}

    def progress(self, pair_id: str, task_id: str, inferences: int) -> None:
        """The pair's task `task_id` has done `inferences` so far."""
        entry = self._pairs.setdefault(pair_id, {"attempts": 0, "ranks": {}})
        entry.update(task=task_id, inferences=inferences, updated_at=time.time())

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every pair's entry, by pair id."""
        return self._pairs


class TrackerObserver:
    """The runner's observer inside a pair: forwards progress to the tracker every few seconds."""

    def __init__(self, tracker: Any, pair_id: str) -> None:
        self._tracker, self._pair_id = tracker, pair_id
        self._task = ""
        self._last = 0.0

    def started(self, spec: TaskSpec, gpus: Sequence[GpuInfo]) -> None:
        self._task = spec.task_id
        self._send(0, force=True)

    def progress(self, inferences_total: int) -> None:
        self._send(inferences_total)

    def finished(self, result: TaskResult) -> None:
        return None

    def _send(self, inferences: int, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            try:
                self._tracker.progress.remote(self._pair_id, self._task, inferences)
            except Exception:  # noqa: BLE001, S110 - progress is a convenience, never a failure
                pass


class FanOut:
    """One observer calling several (e.g. the tracker's and the node agent's)."""

    def __init__(self, *observers: TaskObserver) -> None:
        self._observers = observers

    def started(self, spec: TaskSpec, gpus: Sequence[GpuInfo]) -> None:
        for o in self._observers:
            o.started(spec, gpus)

    def progress(self, inferences_total: int) -> None:
        for o in self._observers:
            o.progress(inferences_total)

    def finished(self, result: TaskResult) -> None:
        for o in self._observers:
            o.finished(result)


def pair_observer(tracker: Any, pair_id: str) -> FanOut:
    """The observer of a pair's tasks on this node: the tracker's (when given) and the node
    agent's task labels (one file per GPU, read by the agent's exporter)."""
    observers: list[TaskObserver] = []
    if tracker is not None:
        observers.append(TrackerObserver(tracker, pair_id))
    try:
        from moecluster.agents.exporter.task_labels import FileTaskObserver

        observers.append(FileTaskObserver())
    except ImportError:
        pass
    return FanOut(*observers)
