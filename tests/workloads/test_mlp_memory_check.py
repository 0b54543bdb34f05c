"""Before allocating, a model too big for the GPU's free memory fails with both numbers."""
from __future__ import annotations

import pytest
import torch

from moecluster.spec.records import TaskSpec
from moecluster.spec.mlp.shapes import MoEShape
from moecluster.workloads.mlp.workload import MlpWorkload, check_device_memory

MOE = MoEShape(num_experts=4, expert_hidden_dim=16, expert_num_layers=2, top_k=2, input_dim=24)
GiB = 2**30


def spec() -> TaskSpec:
    return TaskSpec(task_id="big", pair_id="p", kind="moe", impl="sorted", model=MOE.as_model(), device="cuda",
                    batch_size=16)


def test_too_big_for_free_memory_fails_before_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1024, 80 * GiB))
    with pytest.raises(ValueError) as info:
        MlpWorkload().prepare(spec(), torch.device("cuda"), torch.bfloat16)
    needed = MOE.params().total * 4  # built in float32, then converted
    message = str(info.value)
    assert f"{needed / GiB:,.2f} GiB ({MOE.params().total:,} parameters × 4 bytes)" in message
    assert "has 0.00 GiB free of 80.00 GiB" in message


def test_enough_free_memory_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (80 * GiB, 80 * GiB))
    assert check_device_memory(spec(), torch.device("cuda"), torch.float32) is None
