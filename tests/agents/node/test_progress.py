"""The tracker counts a pair's attempts by rank 0's starts; observers fan out and never fail a task."""
from __future__ import annotations

from typing import Any

from moecluster.agents.node.progress import FanOut, PairTracker, TrackerObserver
from moecluster.agents.records import TaskResult, TaskSpec

SPEC = TaskSpec(task_id="t-moe", pair_id="p", kind="moe", impl="sorted", model={})


class _Method:
    def __init__(self, calls: list[tuple[Any, ...]], fail: bool) -> None:
        self._calls, self._fail = calls, fail

    def remote(self, *args: Any) -> None:
        if self._fail:
            raise RuntimeError("tracker gone")
        self._calls.append(args)


class TrackerHandle:
    """Stands in for a Ray actor handle of the tracker: records `progress.remote(...)` calls."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.progress = _Method(self.calls, fail)


class Recording:
    def __init__(self) -> None:
        self.events: list[str] = []

    def started(self, spec: TaskSpec, gpus: Any) -> None:
        self.events.append(f"started {spec.task_id}")

    def progress(self, inferences_total: int) -> None:
        self.events.append(f"progress {inferences_total}")

    def finished(self, result: TaskResult) -> None:
        self.events.append(f"finished {result.status}")


def test_attempts_count_rank_zero_starts_and_other_ranks_are_listed() -> None:
    tracker = PairTracker()
    tracker.started("p", 0, "node-a", [0])
    tracker.started("p", 1, "node-a", [1])
    tracker.progress("p", "t-moe", 640)
    tracker.started("p", 0, "node-b", [2])  # a retry
    entry = tracker.snapshot()["p"]
    assert entry["attempts"] == 2 and entry["node"] == "node-b" and entry["inferences"] == 0
    assert entry["ranks"] == {0: {"node": "node-b", "gpus": [2]}, 1: {"node": "node-a", "gpus": [1]}}


def test_observers_fan_out_and_the_tracker_hears_of_each_start() -> None:
    handle, recording = TrackerHandle(), Recording()
    fan = FanOut(TrackerObserver(handle, "p"), recording)
    fan.started(SPEC, [])
    fan.progress(128)
    fan.finished(TaskResult(spec=SPEC, status="ok"))
    assert recording.events == ["started t-moe", "progress 128", "finished ok"]
    assert handle.calls[0] == ("p", "t-moe", 0)


def test_a_broken_tracker_never_fails_the_task() -> None:
    handle, recording = TrackerHandle(fail=True), Recording()
    fan = FanOut(TrackerObserver(handle, "p"), recording)
    fan.started(SPEC, [])  # the tracker's call raises inside; the task's other observers go on
    fan.progress(1)
    fan.finished(TaskResult(spec=SPEC, status="ok"))
    assert handle.calls == [] and recording.events == ["started t-moe", "progress 1", "finished ok"]
