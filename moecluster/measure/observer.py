"""What a running task tells the outside world while it runs: the `TaskObserver` protocol.

The runner calls an observer at three points of one task: when it has its GPUs
(`started`), every ~0.5 s while it measures (`progress`, the task's completed
inferences so far), and when it has its result (`finished`). The node agent's exporter
turns these calls into Prometheus series (see `moecluster.node.agent.task_labels`),
so energy and rate can be attributed to tasks live. Observers must be cheap and must
never raise into the runner: a broken observer must not fail a benchmark.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from moecluster.devices import GpuInfo
    from moecluster.spec.records import TaskResult, TaskSpec


@runtime_checkable
class TaskObserver(Protocol):
    """Receives one task's lifecycle: `started`, then `progress`..., then `finished`."""

    def started(self, spec: "TaskSpec", gpus: "Sequence[GpuInfo]") -> None:
        """The task owns `gpus` (DeviceSet numbering) and is about to run."""

    def progress(self, inferences_total: int) -> None:
        """The task has completed `inferences_total` inferences (monotonic) so far."""

    def finished(self, result: "TaskResult") -> None:
        """The task is over (ok or failed); forget it."""


class NullObserver:
    """An observer that does nothing: the default when no agent is listening."""

    def started(self, spec: "TaskSpec", gpus: "Sequence[GpuInfo]") -> None:
        return None

    def progress(self, inferences_total: int) -> None:
        return None

    def finished(self, result: "TaskResult") -> None:
        return None


__all__ = ["NullObserver", "TaskObserver"]
