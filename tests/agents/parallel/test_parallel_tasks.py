"""A task's local build for a gang refuses what cannot run split over N ranks (no collectives needed)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch

from moecluster.agents.parallel.tasks import build_local
from moecluster.agents.records import TaskSpec

MOE = {"num_experts": 4, "expert_hidden_dim": 8, "expert_num_layers": 1, "top_k": 2, "input_dim": 16, "output_dim": 4}
SPEC = TaskSpec(task_id="m", pair_id="p", kind="moe", impl="grouped", model=MOE, device="cpu", batch_size=8,
                expert_parallel=2)
CPU = torch.device("cpu")


@pytest.mark.parametrize("change, message", [
    ({"expert_parallel": 4}, "expert_parallel 4 but the gang has 2 ranks"),
    ({"batch_size": 9}, "batch_size 9 is not divisible by the world size 2"),
    ({"model": {**MOE, "num_experts": 3, "top_k": 1}}, "num_experts 3 is not divisible by the world size 2"),
    ({"device": "cuda"}, "task device 'cuda' but the gang runs on cpu"),
])
def test_impossible_splits_are_refused_naming_the_numbers(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_local(replace(SPEC, **change), 0, 2, CPU)


def test_the_moe_is_built_whole_and_the_dense_twin_on_its_shard() -> None:
    moe = build_local(SPEC, 1, 2, CPU)
    assert moe.parallel == "expert" and moe.prepared.inputs.shape[0] == 8
    dense = TaskSpec(task_id="d", pair_id="p", kind="dense", impl="dense", match="total", device="cpu", batch_size=8,
                     model={"hidden_dim": 8, "num_layers": 1, "input_dim": 16, "output_dim": 4}, cuda_graphs=False)
    built = build_local(dense, 1, 2, CPU)
    assert built.parallel == "data" and built.prepared.inputs.shape[0] == 4
