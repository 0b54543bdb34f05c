"""The Ray task that runs one pair (or one rank of a gang) on the GPU(s) Ray gave it.

It reports its start to the tracker, finds its GPUs (`ray.get_gpu_ids()`), names its node
the way the node agents do, and hands the specs to `pair.run_pair`. On a cluster of fake
GPUs (`meter: fake`, no CUDA) it builds `FakeDevices` numbered like Ray's GPU ids, with the
Ray node id in their UUIDs (so GPUs of different nodes differ) and the node's accelerator
type in their names. It returns plain `TaskResult`s; it never raises for a failing task.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import ray

from moecluster.agents.devices import DeviceSet, FakeDevices
from moecluster.agents.meters.peaks import PeakCache
from moecluster.agents.pair import run_pair
from moecluster.agents.records import TaskResult, TaskSpec

from .cluster import ACCELERATOR_LABEL
from .envvars import scoped_environ
from .tracker import FanOut, TrackerObserver

_PEAKS = PeakCache()  # measured ceilings per (device, dtype), kept for the worker process's life


def node_label(node_id: str) -> str:
    """The node's name as the node agents label it (host name, made unique within the cluster)."""
    from moecluster.orchestrator.node_agents import node_names

    try:
        return node_names([n for n in ray.nodes() if n.get("Alive")]).get(node_id) or node_id[:12]
    except Exception:  # noqa: BLE001 - a name is not worth failing a task for
        return node_id[:12]


def _devices(specs: Sequence[TaskSpec], gpu_ids: list[int], node_id: str) -> DeviceSet | None:
    if not gpu_ids or specs[0].meter != "fake":
        return None  # the runner opens NVML (or none) itself and maps CUDA devices by UUID
    accel = ray.get_runtime_context().get_node_labels().get(ACCELERATOR_LABEL)
    return FakeDevices(max(gpu_ids) + 1, node=node_id, name=f"Fake {accel}" if accel else "Fake GPU")


def _observer(tracker: Any, pair_id: str) -> Any:
    observers: list[Any] = []
    if tracker is not None:
        observers.append(TrackerObserver(tracker, pair_id))
    try:
        from moecluster.agents.exporter.task_labels import FileTaskObserver

        observers.append(FileTaskObserver())
    except ImportError:
        pass
    return FanOut(*observers)


def pair_body(specs: Sequence[TaskSpec], *, rank: int = 0, env: Mapping[str, str] | None = None,
              tracker: Any = None) -> list[TaskResult]:
    """Run `specs` alternately on this task's GPUs (see `pair.run_pair`)."""
    ctx = ray.get_runtime_context()
    node_id = ctx.get_node_id()
    node = node_label(node_id)
    gpu_ids = [int(i) for i in ray.get_gpu_ids()]
    pair_id = specs[0].pair_id
    if tracker is not None:
        tracker.started.remote(pair_id, rank, node, gpu_ids)
    devices = _devices(specs, gpu_ids, node_id)
    try:
        with scoped_environ(env or {}):
            return run_pair(specs, devices=devices, gpu_indices=gpu_ids if devices is not None else None,
                            node=node, observer=_observer(tracker if rank == 0 else None, pair_id), peaks=_PEAKS)
    finally:
        if devices is not None:
            devices.close()


pair_task = ray.remote(pair_body)
