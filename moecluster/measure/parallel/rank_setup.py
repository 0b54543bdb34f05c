"""Which devices one rank of a gang measures with: its own GPU of the node's device set.

Each rank meters only its own GPU: with `meter: fake`, fake devices (numbered by local rank unless
indices are given); on the CPU none, with the reason (never a zero); otherwise NVML, by the CUDA
device's UUID. What a rank then reads before any model exists (idle power, the counter's update
period, peaks) is the one-device runner's own set-up, `session.read_facts`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from moecluster.devices import DeviceSet, Gpu
from moecluster.measure.session import RankFacts, open_task_devices, read_facts, select_gpus
from moecluster.spec.records import TaskSpec

__all__ = ["RankFacts", "open_rank_devices", "rank_gpus", "read_facts"]


def open_rank_devices(spec: TaskSpec, device: torch.device, node: str, index: int) -> DeviceSet:
    """This rank's device set where the caller gave none: fake GPUs 0..index (`meter: fake`), else the runner's."""
    return open_task_devices(spec, device, node, fake_count=index + 1)


def rank_gpus(devices: DeviceSet, device: torch.device, gpu_indices: Sequence[int] | None, index: int) -> list[Gpu]:
    """This rank's GPUs: by CUDA UUID under NVML, else the given indices (`[index]` by default)."""
    if gpu_indices is None and devices.kind != "nvml":
        gpu_indices = [index]
    return select_gpus(devices, device, gpu_indices)
