"""All-to-all accounting as nccl-tests defines it (the collective itself runs in the gang tests)."""
from __future__ import annotations

import pytest
import torch

from moecluster.agents.parallel.alltoall import algbw_busbw, send_buffer


def test_bandwidths_follow_nccl_tests_for_alltoall() -> None:
    algbw, busbw = algbw_busbw(bytes_per_rank=8e6, time_s=1e-3, world_size=4)
    assert algbw == pytest.approx(8e9) and busbw == pytest.approx(6e9)


def test_send_buffer_splits_evenly_with_at_least_one_element_per_rank() -> None:
    buf = send_buffer(1000, 4, torch.float32, torch.device("cpu"))
    assert buf.numel() == 248 and buf.numel() % 4 == 0
    assert send_buffer(1, 4, torch.bfloat16, torch.device("cpu")).numel() == 4
