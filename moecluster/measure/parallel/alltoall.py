"""The raw `all_to_all_single` of the gang at the task's message sizes: time, bandwidth, energy.

What the exchange alone costs, measured in the same gang as the task, beside the task's own
dispatch and combine phases. Each size is the bytes each rank sends in one call (its whole send
buffer, the chunk it keeps for itself included, as nccl-tests counts it), split evenly over ranks.

Time: `ALLTOALL_REPS` calls back to back after `ALLTOALL_WARMUP` calls, each call timed on its own
(CUDA events between successive calls on a GPU, the host clock on a CPU); a rank's time is the
median of its calls, the gang's the slowest rank's median (a collective ends when its last rank
does). Bandwidths as nccl-tests defines them for alltoall: algorithm bandwidth = bytes each rank
sends / time; bus bandwidth = algbw × (n − 1) / n (the share that crosses links).

Energy: how the energy of communication is obtained. One energy window per gang runs nothing but
back-to-back all-to-alls at the first size (the dispatch size), every rank metering its own GPU
over the same calls (the count agreed from rank 0's median, so it lasts about the window's length;
barriers at both ends). The point's `energy_j` is the window's energy summed over ranks divided by
the number of calls: the total GPU energy per all-to-all, idle draw included, as every other
window's energy is. It is measured, not inferred from the task's phases; where a rank cannot meter
energy (a CPU, `meter: none`) it is None.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from moecluster.measure.meters.energy import EnergyMeter
from moecluster.spec.records import AllToAllPoint
from moecluster.measure.parallel.group import Gang
from moecluster.measure.parallel.merge import sum_all

ALLTOALL_REPS = 20
ALLTOALL_WARMUP = 3


@dataclass(frozen=True)
class RankTiming:
    """One rank's median seconds per call at one size."""

    bytes_per_rank: int
    time_s: float


def send_buffer(bytes_per_rank: float, world_size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A send buffer of about `bytes_per_rank` (whole elements, a multiple of the world size, at least one per rank)."""
    elem = torch.empty((), dtype=dtype).element_size()
    numel = max(world_size, int(bytes_per_rank) // elem // world_size * world_size)
    return torch.ones(numel, dtype=dtype, device=device)


def algbw_busbw(bytes_per_rank: float, time_s: float, world_size: int) -> tuple[float, float]:
    """(algorithm, bus) bandwidth in bytes/s, as nccl-tests defines them for alltoall."""
    algbw = bytes_per_rank / time_s
    return algbw, algbw * (world_size - 1) / world_size


def _call_times_s(src: torch.Tensor, dst: torch.Tensor, reps: int) -> list[float]:
    if src.is_cuda:
        events = [torch.cuda.Event(enable_timing=True) for _ in range(reps + 1)]
        events[0].record()
        for i in range(reps):
            dist.all_to_all_single(dst, src)
            events[i + 1].record()
        events[-1].synchronize()
        return [float(a.elapsed_time(b)) / 1e3 for a, b in zip(events, events[1:])]
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        dist.all_to_all_single(dst, src)
        out.append(time.perf_counter() - t0)
    return out


def time_alltoall(gang: Gang, bytes_per_rank: float, dtype: torch.dtype, reps: int = ALLTOALL_REPS,
                  warmup: int = ALLTOALL_WARMUP) -> RankTiming:
    """This rank's median seconds per `all_to_all_single` of about `bytes_per_rank` (a collective)."""
    src = send_buffer(bytes_per_rank, gang.world_size, dtype, gang.device)
    dst = torch.empty_like(src)
    for _ in range(warmup):
        dist.all_to_all_single(dst, src)
    if src.is_cuda:
        torch.cuda.synchronize(gang.device)
    gang.barrier()
    times = _call_times_s(src, dst, reps)
    return RankTiming(bytes_per_rank=src.numel() * src.element_size(), time_s=statistics.median(times))


def _energy_per_call_j(gang: Gang, bytes_per_rank: float, dtype: torch.dtype, time_s: float, window_s: float,
                       meter: EnergyMeter) -> float | None:
    """Energy per call summed over ranks, from one window of back-to-back calls (a collective)."""
    src = send_buffer(bytes_per_rank, gang.world_size, dtype, gang.device)
    dst = torch.empty_like(src)
    (calls,) = gang.from_rank0([max(1, math.ceil(window_s / time_s))])

    def work() -> int:
        for _ in range(calls):
            dist.all_to_all_single(dst, src)
        if src.is_cuda:
            torch.cuda.synchronize(gang.device)
        gang.barrier()
        return calls

    gang.barrier()
    _, reading = meter.measure(work)
    total = sum_all(gang.all_gather(reading.energy_j))
    return total / calls if total is not None else None


def alltoall_points(gang: Gang, sizes: Sequence[float], dtype: torch.dtype, *, meter: EnergyMeter,
                    energy_window_s: float, reps: int = ALLTOALL_REPS) -> tuple[AllToAllPoint, ...]:
    """The gang's all-to-all at each size (bytes each rank sends); the energy window at the first (a collective)."""
    points: list[AllToAllPoint] = []
    for i, size in enumerate(sizes):
        timings = gang.all_gather(time_alltoall(gang, size, dtype, reps))
        t = max(r.time_s for r in timings)
        sent = timings[0].bytes_per_rank
        algbw, busbw = algbw_busbw(sent, t, gang.world_size)
        energy = _energy_per_call_j(gang, size, dtype, t, energy_window_s, meter) if i == 0 else None
        points.append(AllToAllPoint(bytes_per_rank=float(sent), time_s=t, algbw_bytes_per_s=algbw,
                                    busbw_bytes_per_s=busbw, energy_j=energy))
    return tuple(points)
