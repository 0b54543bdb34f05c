"""A task's local build for a gang refuses what cannot run split over N ranks; its dispatch form is an option."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch
from gang_harness import run_ranks

from moecluster.workloads.mlp.expert_parallel import HOSTSYNC, STATIC
from moecluster.measure.parallel.group import GangContext, process_group
from moecluster.measure.parallel.tasks import MEASURE, build_local, share
from moecluster.spec.records import TaskSpec

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


def _both_dispatches(ctx: GangContext) -> tuple[dict[str, str], dict[str, str], float]:
    """This rank's ep-static and measured task forms, and the largest difference of their steps from ep-hostsync's."""
    with process_group(ctx) as gang, torch.inference_mode():
        outs, forms = {}, {}
        for dispatch in (HOSTSYNC, STATIC, MEASURE):
            task = share(build_local(SPEC, gang.rank, gang.world_size, gang.device), gang, dispatch=dispatch)
            out = task.step()
            assert isinstance(out, torch.Tensor)
            outs[dispatch], forms[dispatch] = out, dict(task.form)
        diff = max(float((outs[d] - outs[HOSTSYNC]).abs().max()) for d in (STATIC, MEASURE))
        return forms[STATIC], forms[MEASURE], diff


def test_the_dispatch_form_is_chosen_and_recorded() -> None:
    results = run_ranks(_both_dispatches, 2)
    for static, measured, diff in results:
        assert static["dispatch"] == STATIC and static["experts"].startswith(STATIC) and "capturable" in static["graph"]
        chosen, _, how = measured["dispatch"].partition(", ")
        assert chosen in (HOSTSYNC, STATIC) and how.startswith("chosen by measurement")
        assert f"{HOSTSYNC} " in how and f"{STATIC} " in how and " ms" in how
        assert diff < 1e-5
    assert len({measured["dispatch"].partition(", ")[0] for _, measured, _ in results}) == 1  # one choice per gang
