"""A gang rank's own rules (its Ray life is tested through `moecluster submit` in tests/head/schedule)."""
from __future__ import annotations

import pytest

from moecluster.node.gang import GangRank, backend_for
from moecluster.spec.records import TaskSpec


def test_nccl_between_cuda_gpus_gloo_on_the_cpu() -> None:
    spec = TaskSpec(task_id="t", pair_id="p", kind="moe", impl="sorted", model={}, device="cuda")
    assert backend_for([spec]) == ("nccl", "cuda")
    cpu = TaskSpec(task_id="t", pair_id="p", kind="moe", impl="sorted", model={}, device="cpu")
    assert backend_for([cpu]) == ("gloo", "cpu")


def test_a_rank_outside_its_gang_is_refused() -> None:
    with pytest.raises(ValueError, match=r"rank 2 \(local rank 0\) outside a gang of 2"):
        GangRank(2, 2)
    with pytest.raises(ValueError, match="outside a gang"):
        GangRank(1, 2, local_rank=2)
