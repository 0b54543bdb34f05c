"""What one rank of a gang measures before any model exists: its GPU, meter, idle power and peaks.

The same order as the one-device runner: the settled idle power of the rank's GPU first (once per
GPU per run, `meters.idle`), then the device's peaks for every dtype of the pair (once per
process, `meters.peaks`), both while nothing else holds the GPU. Each rank meters only its own
GPU: with `meter: fake`, fake devices (numbered by local rank unless indices are given); on the
CPU none, with the reason (never a zero); otherwise NVML, by the CUDA device's UUID.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..devices import DeviceSet, Gpu, open_devices
from ..meters.energy import EnergyMeter
from ..meters.idle import IdleCache, IdleReading, idle_for_run, idle_scope
from ..meters.peaks import PeakCache, Peaks
from moecluster.spec.records import GpuRecord, TaskSpec
from ..runner import gpu_records, open_task_devices, select_gpus, set_fake_load, versions
from ..workloads.base import torch_dtype


@dataclass(frozen=True)
class RankFacts:
    """What a rank tells the gang about itself (picklable): node, GPUs, idle, peaks per dtype name, versions."""

    rank: int
    node: str
    gpus: tuple[GpuRecord, ...]
    idle: IdleReading | None
    peaks: Mapping[str, Peaks]
    versions: Mapping[str, str]


def open_rank_devices(spec: TaskSpec, device: torch.device, node: str, index: int) -> DeviceSet:
    """This rank's device set where the caller gave none: fake GPUs 0..index (`meter: fake`), else the runner's."""
    if spec.meter == "fake":
        return open_devices("fake", count=index + 1, node=node)
    return open_task_devices(spec, device, node)


def rank_gpus(devices: DeviceSet, device: torch.device, gpu_indices: Sequence[int] | None, index: int) -> list[Gpu]:
    """This rank's GPUs: by CUDA UUID under NVML, else the given indices (`[index]` by default)."""
    if gpu_indices is None and devices.kind != "nvml":
        gpu_indices = [index]
    return select_gpus(devices, device, gpu_indices)


def rank_facts(rank: int, specs: Sequence[TaskSpec], devices: DeviceSet, gpus: Sequence[Gpu], meter: EnergyMeter,
               device: torch.device, node: str, peaks: PeakCache, idle_cache: IdleCache) -> RankFacts:
    """Read this rank's idle power and peaks (nothing may run on its GPU meanwhile) and describe it."""
    records = gpu_records(gpus, device, node)
    set_fake_load(gpus, 0.0)
    idle = idle_for_run(meter, idle_scope(specs[0].run_id, specs[0].replicate), idle_cache)
    measured: dict[str, Peaks] = {}
    for name in dict.fromkeys(s.dtype for s in specs):
        try:
            dtype = torch_dtype(name)
        except ValueError:
            continue  # the task itself reports its unknown dtype
        measured[name] = peaks.get(device, dtype)
    return RankFacts(rank=rank, node=node, gpus=records, idle=idle, peaks=measured, versions=versions(devices))
