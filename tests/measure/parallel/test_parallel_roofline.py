"""The gang's roof is the sum of its GPUs' peaks; its bytes depend on how the task is split."""
from __future__ import annotations

from moecluster.measure.meters.peaks import Peaks
from moecluster.measure.parallel.roofline import data_parallel_bytes, expert_parallel_bytes, gang_peaks


def test_peaks_are_summed_over_ranks_and_say_so() -> None:
    p = gang_peaks([Peaks(1e12, 2e12, "gemm A"), Peaks(3e12, 4e12, "gemm A")])
    assert (p.flops_per_s, p.bytes_per_s) == (4e12, 6e12)
    assert p.source == "sum over 2 GPUs of each one's measured peaks (gemm A)"
    mixed = gang_peaks([Peaks(1.0, 1.0, "x"), Peaks(1.0, 1.0, "y")])
    assert "rank 0: x | rank 1: y" in mixed.source


def test_bytes_per_global_batch_by_split() -> None:
    assert data_parallel_bytes(1000.0, 4) == 4000.0  # every rank reads the whole dense model
    assert expert_parallel_bytes(1000.0, router_params=10, dtype_bytes=2, world_size=4) == 1060.0
