"""A small actor on the head's node that running pairs report to: when they start (each
attempt, so Ray's retries are counted), where, and how far they are.

The head polls it for the progress display and for the watchdog, which counts a pair's time
from the moment it really started (not from its submission: a queued pair is not late).
Reports are fire-and-forget; a pair never waits on, or fails because of, the tracker.
"""
from __future__ import annotations

import time
from typing import Any

import ray

PROGRESS_EVERY_S = 2.0


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class PairTracker:
    def __init__(self) -> None:
        self._pairs: dict[str, dict[str, Any]] = {}

    def started(self, pair_id: str, rank: int, node: str, gpus: list[int]) -> None:
        entry = self._pairs.setdefault(pair_id, {"attempts": 0, "ranks": {}})
        if rank == 0:
            entry.update(attempts=entry["attempts"] + 1, started_at=time.time(), node=node, task=None,
                         inferences=0)
        entry["ranks"][rank] = {"node": node, "gpus": gpus}

    def progress(self, pair_id: str, task_id: str, inferences: int) -> None:
        entry = self._pairs.setdefault(pair_id, {"attempts": 0, "ranks": {}})
        entry.update(task=task_id, inferences=inferences, updated_at=time.time())

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return self._pairs


class TrackerObserver:
    """The runner's observer inside a pair: forwards progress to the tracker every few seconds."""

    def __init__(self, tracker: Any, pair_id: str) -> None:
        self._tracker, self._pair_id = tracker, pair_id
        self._task = ""
        self._last = 0.0

    def started(self, spec, gpus) -> None:  # type: ignore[no-untyped-def]
        self._task = spec.task_id
        self._send(0, force=True)

    def progress(self, inferences_total: int) -> None:
        self._send(inferences_total)

    def finished(self, result) -> None:  # type: ignore[no-untyped-def]
        return None

    def _send(self, inferences: int, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            try:
                self._tracker.progress.remote(self._pair_id, self._task, inferences)
            except Exception:  # noqa: BLE001 - progress is a convenience, never a failure
                pass


class FanOut:
    """One observer calling several (e.g. the tracker's and the node agent's)."""

    def __init__(self, *observers: Any) -> None:
        self._observers = observers

    def started(self, spec, gpus) -> None:  # type: ignore[no-untyped-def]
        for o in self._observers:
            o.started(spec, gpus)

    def progress(self, inferences_total: int) -> None:
        for o in self._observers:
            o.progress(inferences_total)

    def finished(self, result) -> None:  # type: ignore[no-untyped-def]
        for o in self._observers:
            o.finished(result)
