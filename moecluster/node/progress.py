"""What a running pair tells the head and the node agent: its start, and its progress.

`PairStarted` is the first thing a pair's task (or a gang's rank 0) hands back, before it
measures anything: the attempt the head numbered, the node, Ray's GPUs, the process. The head
counts attempts and times its watchdog from these reports, so its bookkeeping lives with the
head alone and survives the loss of any worker (no tracker actor that could be placed on, and
lost with, a worker). Progress goes to the node agent's task labels (`pair_observer`).
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from moecluster.measure.observer import TaskObserver

if TYPE_CHECKING:
    from moecluster.devices import GpuInfo
    from moecluster.spec.records import TaskResult, TaskSpec


@dataclass(frozen=True)
class PairStarted:
    """One attempt of a pair has its GPUs on `node` and is about to measure."""

    pair_id: str
    attempt: int  # 1 for the first attempt; the head numbers attempts, the task echoes it
    node_id: str
    node: str
    gpus: tuple[str, ...]  # Ray's GPU ids of the task (rank 0's, for a gang)
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)  # the node's clock


class FanOut:
    """One observer calling several, in order."""

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


def pair_observer() -> FanOut:
    """The observer of a pair's tasks on this node: the node agent's task labels (one file per
    GPU, read by the agent's exporter), where the agent side is installed."""
    observers: list[TaskObserver] = []
    try:
        from moecluster.node.agent.task_labels import FileTaskObserver

        observers.append(FileTaskObserver())
    except ImportError:
        pass
    return FanOut(*observers)
