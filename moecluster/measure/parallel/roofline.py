"""The roofline of a gang: the task's FLOPs and bytes over the N GPUs' summed peaks.

A gang of N GPUs can at best do N GPUs' work at once, so its roof is the sum of the peaks each
rank measured on its own GPU (`meters.peaks`), and its roofline time is the whole task's FLOPs
and bytes over those sums. The bytes are what the gang must move from memory, which depends on
how the task is split:

- dense, data parallel: every rank reads the whole model for its B/N rows, so a global batch
  moves N times the weights (N times one rank's bytes per batch);
- MoE, expert parallel: each expert that receives tokens is read once, by its owner, and the
  router by every rank: the one-device bytes plus N - 1 more reads of the router.

Communication is not in the roof: the all-to-all's time and energy are reported beside it
(`TaskResult.phases`, `TaskResult.alltoall`), so a fraction well below 1 for an expert-parallel
task shows what the exchange costs.
"""
from __future__ import annotations

from collections.abc import Sequence

from moecluster.measure.meters.peaks import Peaks


def gang_peaks(per_rank: Sequence[Peaks]) -> Peaks:
    """The peaks of N GPUs together: FLOP/s and bytes/s summed over ranks; the source says so."""
    if not per_rank:
        raise ValueError("no rank's peaks")
    sources = list(dict.fromkeys(p.source for p in per_rank))
    what = sources[0] if len(sources) == 1 else " | ".join(f"rank {i}: {p.source}" for i, p in enumerate(per_rank))
    return Peaks(flops_per_s=sum(p.flops_per_s for p in per_rank), bytes_per_s=sum(p.bytes_per_s for p in per_rank),
                 source=f"sum over {len(per_rank)} GPUs of each one's measured peaks ({what})")


def data_parallel_bytes(rank_bytes_per_batch: float, world_size: int) -> float:
    """Bytes a global batch moves when every rank runs the whole model on its rows."""
    return rank_bytes_per_batch * world_size


def expert_parallel_bytes(one_device_bytes_per_batch: float, router_params: int, dtype_bytes: int,
                          world_size: int) -> float:
    """Bytes a global batch moves with experts split over ranks: one device's, plus the router on every other rank."""
    return one_device_bytes_per_batch + (world_size - 1) * router_params * dtype_bytes
