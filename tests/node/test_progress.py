"""A pair's start report carries the head's attempt number and this process; observers fan out."""
from __future__ import annotations

import os
import pickle
import time
from typing import Any

from moecluster.node.progress import FanOut, PairStarted
from moecluster.spec.records import TaskResult, TaskSpec

SPEC = TaskSpec(task_id="t-moe", pair_id="p", kind="moe", impl="sorted", model={})


class Recording:
    def __init__(self) -> None:
        self.events: list[str] = []

    def started(self, spec: TaskSpec, gpus: Any) -> None:
        self.events.append(f"started {spec.task_id}")

    def progress(self, inferences_total: int) -> None:
        self.events.append(f"progress {inferences_total}")

    def finished(self, result: TaskResult) -> None:
        self.events.append(f"finished {result.status}")


def test_a_start_report_names_the_attempt_the_node_and_this_process_and_survives_pickling() -> None:
    before = time.time()
    report = PairStarted(pair_id="p", attempt=2, node_id="abc", node="host-a", gpus=("1",))
    assert report.pid == os.getpid() and before <= report.started_at <= time.time()
    assert pickle.loads(pickle.dumps(report)) == report  # Ray ships it to the head as it is


def test_observers_fan_out_in_order() -> None:
    first, second = Recording(), Recording()
    fan = FanOut(first, second)
    fan.started(SPEC, [])
    fan.progress(128)
    fan.finished(TaskResult(spec=SPEC, status="ok"))
    assert first.events == second.events == ["started t-moe", "progress 128", "finished ok"]
