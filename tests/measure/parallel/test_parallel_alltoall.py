"""All-to-all accounting as nccl-tests defines it (the collective itself runs in the gang tests)."""
from __future__ import annotations

import pytest
import torch

from moecluster.measure.parallel.alltoall import algbw_busbw, send_buffer


def test_bandwidths_follow_nccl_tests_for_alltoall() -> None:
    algbw, busbw = algbw_busbw(bytes_per_rank=8e6, time_s=1e-3, world_size=4)
    assert algbw == pytest.approx(8e9) and busbw == pytest.approx(6e9)


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_algbw_is_the_send_buffer_over_time_and_busbw_the_share_that_crosses(world: int) -> None:
    # each rank sends 1 MB in 2 ms, 1/n of it to itself: algbw 0.5 GB/s, busbw what crosses to the others
    algbw, busbw = algbw_busbw(bytes_per_rank=1e6, time_s=2e-3, world_size=world)
    assert algbw == pytest.approx(5e8)
    assert busbw == pytest.approx(1e6 * (world - 1) / world / 2e-3)


def test_send_buffer_splits_evenly_with_at_least_one_element_per_rank() -> None:
    buf = send_buffer(1000, 4, torch.float32, torch.device("cpu"))
    assert buf.numel() == 248 and buf.numel() % 4 == 0
    assert send_buffer(1, 4, torch.bfloat16, torch.device("cpu")).numel() == 4
