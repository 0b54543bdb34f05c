"""Where a Ray task or actor runs: its node (id and label), the GPUs Ray gave it, their devices.

On a cluster of fake GPUs (`meter: fake`, no CUDA) the task's devices are `FakeDevices`
numbered like Ray's GPU ids, with the Ray node id in their UUIDs (so GPUs of different nodes
differ) and the node's accelerator type in their names. Otherwise there are none to build: the
runner opens NVML (or none) itself and maps CUDA devices by UUID.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from moecluster.devices import DeviceSet, FakeDevices
from moecluster.spec.records import TaskSpec

from moecluster.node.names import node_names

#: The node label Ray sets on GPU nodes (and the fake cluster on its nodes).
ACCELERATOR_LABEL = "ray.io/accelerator-type"


@dataclass(frozen=True)
class Place:
    """This process's place in the cluster, as Ray sees it."""

    node_id: str
    node: str  # the node's label, as the node agents name it
    gpu_ids: tuple[int, ...]  # Ray's GPU ids given to this task or actor
    accelerator_type: str | None
    assigned: tuple[str, ...] = ()  # the same ids as Ray states them (UUIDs where the node lists GPUs so)
    node_gpus: int = 0  # GPUs the node advertises to Ray


def node_name_and_gpus(node_id: str) -> tuple[str, int]:
    """The node's name as the node agents label it (host name, made unique within the cluster)
    and the GPUs it advertises; the node id's prefix (and 0) when Ray cannot be asked (a name is
    not worth failing a task for)."""
    import ray

    try:
        alive = [n for n in ray.nodes() if n.get("Alive")]
        gpus = next((int(n.get("Resources", {}).get("GPU", 0)) for n in alive if n["NodeID"] == node_id), 0)
        return node_names(alive).get(node_id) or node_id[:12], gpus
    except Exception:  # noqa: BLE001 - any Ray error: fall back to the id
        return node_id[:12], 0


def here() -> Place:
    """The place of the calling Ray task or actor (needs a Ray worker process)."""
    import ray

    ctx = ray.get_runtime_context()
    node_id = ctx.get_node_id()
    label = ctx.get_node_labels().get(ACCELERATOR_LABEL)
    accelerator = label if isinstance(label, str) or label is None else (label[0] if label else None)
    assigned = tuple(sorted(str(i) for i in ctx.get_accelerator_ids().get("GPU", [])))
    name, gpus = node_name_and_gpus(node_id)
    return Place(node_id=node_id, node=name, gpu_ids=tuple(sorted(int(i) for i in assigned if i.isdigit())),
                 accelerator_type=accelerator, assigned=assigned, node_gpus=gpus)


def fake_devices(specs: Sequence[TaskSpec], place: Place) -> DeviceSet | None:
    """Fake GPUs for tasks metered `fake` on Ray GPUs; None otherwise (the runner opens its own)."""
    if not place.gpu_ids or not specs or specs[0].meter != "fake":
        return None
    name = f"Fake {place.accelerator_type}" if place.accelerator_type else "Fake GPU"
    return FakeDevices(max(place.gpu_ids) + 1, node=place.node_id, name=name)


def gpu_indices(devices: DeviceSet | None, place: Place) -> list[int] | None:
    """The indices the runner selects in `devices`: Ray's GPU ids for fake devices, else None."""
    return list(place.gpu_ids) if devices is not None else None
