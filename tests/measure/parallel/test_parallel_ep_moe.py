"""The expert-parallel MoE computes the one-device MoEMLP's function (gloo gangs of 2 and 4 on the CPU)."""
from __future__ import annotations

import pytest
import torch
from gang_harness import run_ranks

from moecluster.workloads.mlp.expert_parallel import PHASES, ExpertParallelMoE, experts_per_rank, shard_rows
from moecluster.measure.parallel.group import GangContext, process_group
from moecluster.measure.parallel.phases import PhaseClock, PhaseSample
from moecluster.workloads.mlp.models import MoEMLP
from moecluster.spec.mlp.shapes import MoEShape

BATCH = 24


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref.double()).norm() / ref.double().norm())


def _model(num_experts: int, impl: str) -> tuple[MoEMLP, torch.Tensor]:
    torch.manual_seed(3)
    shape = MoEShape(num_experts=num_experts, expert_hidden_dim=16, expert_num_layers=2, top_k=2,
                     input_dim=12, output_dim=5)
    return MoEMLP(shape, impl).eval(), torch.randn(BATCH, 12)


def _forced(world: int, num_experts: int, case: str) -> torch.Tensor | None:
    """[BATCH, 2] expert ids making a skewed load, or None for the router's own choice."""
    local = num_experts // world
    if case == "router":
        return None
    if case == "all_to_rank0":  # every copy to rank 0's experts: the other ranks receive nothing
        return torch.tensor([[0, local - 1]] * BATCH)
    if case == "first_expert_of_two_ranks":  # ranks 0 and 1 use one of their experts; the others receive nothing
        return torch.tensor([[0, local]] * BATCH)
    if case == "never_self":  # each rank's tokens go to the next rank's experts only: no copy stays home
        rows = BATCH // world
        ids = [[((r + 1) % world) * local, ((r + 1) % world) * local + local - 1] for r in range(world)
               for _ in range(rows)]
        return torch.tensor(ids)
    raise ValueError(case)


def _compare(ctx: GangContext, num_experts: int, cases: list[str]) -> dict[str, object]:
    """On this rank: each (case, impl)'s relative error against the full model, and one timed pass's phases."""
    out: dict[str, object] = {}
    with process_group(ctx) as gang, torch.inference_mode():
        rows = shard_rows(BATCH, gang.world_size, gang.rank)
        for impl in ("grouped", "sorted"):
            full, x = _model(num_experts, impl)
            for case in cases:
                full.forced_experts = _forced(gang.world_size, num_experts, case)
                ref = full(x)
                ep = ExpertParallelMoE(full, gang.rank, gang.world_size)
                out[f"{case}/{impl}"] = (rel_err(ep(x[rows]), ref[rows]), ep.experts_form)
        clock = PhaseClock(gang.device)
        for _ in range(3):
            ep(x[rows], clock)
        out["phases"] = clock.summary()
        out["steps"] = clock.steps
    return out


@pytest.mark.parametrize("world, num_experts", [(2, 4), (4, 8)])
def test_expert_parallel_matches_the_one_device_moe(world: int, num_experts: int) -> None:
    cases = ["router", "all_to_rank0", "first_expert_of_two_ranks", "never_self"]
    per_rank = run_ranks(_compare, world, num_experts, cases)
    for rank, res in enumerate(per_rank):
        for case in cases:
            for impl, form in (("grouped", "MoEMLP.experts_forward"), ("sorted", "per-expert GEMM loop")):
                err, how = res[f"{case}/{impl}"]
                assert err < 1e-5, (rank, case, impl, err)
                assert how.startswith(form)
        phases = res["phases"]
        assert list(phases) == list(PHASES) and res["steps"] == 3
        assert all(isinstance(p, PhaseSample) and p.time_s > 0 for p in phases.values())
        # the timed pass ran the last case, "never_self": every copy leaves its rank
        copies_per_rank = BATCH // world * 2
        counts = (world - 1) * (num_experts // world) * 8
        assert phases["dispatch"].bytes_sent == copies_per_rank * 12 * 4 + counts
        assert phases["combine"].bytes_sent == copies_per_rank * 5 * 4
        assert phases["route"].bytes_sent == 0 and phases["experts"].bytes_sent == 0


def test_uneven_splits_are_refused_naming_both_numbers() -> None:
    with pytest.raises(ValueError, match=r"num_experts 6 .* world size 4"):
        experts_per_rank(6, 4)
    with pytest.raises(ValueError, match=r"batch_size 10 .* world size 4"):
        shard_rows(10, 4, 0)
    full, _ = _model(6, "grouped")
    with pytest.raises(ValueError, match=r"num_experts 6 .* world size 4"):
        ExpertParallelMoE(full, 0, 4)
    full.impl = "naive"
    with pytest.raises(ValueError, match="no expert-parallel form"):
        ExpertParallelMoE(full, 0, 2)


def test_shards_cover_the_batch_in_rank_order() -> None:
    assert [shard_rows(12, 3, r) for r in range(3)] == [slice(0, 4), slice(4, 8), slice(8, 12)]
    assert experts_per_rank(8, 4) == 2
