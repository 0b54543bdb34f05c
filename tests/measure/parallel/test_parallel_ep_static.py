"""The `ep-static` dispatch: the one-device MoE's function with no host sync (gloo gangs of 2, 4 and 8 on the CPU)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
from gang_harness import run_ranks

from moecluster.workloads.mlp.expert_parallel import HOSTSYNC, STATIC, ExpertParallelMoE, shard_rows
from moecluster.measure.parallel.group import GangContext, process_group
from moecluster.measure.parallel.phases import PhaseClock
from moecluster.workloads.mlp.models import MoEMLP
from moecluster.spec.mlp.shapes import MoEShape

ROWS_PER_RANK = 3
SYNCS = ("tolist", "item", "__bool__", "__int__", "__float__", "__index__", "nonzero", "cpu", "numpy")
CASES = ("router", "one_expert", "one_rank", "empty_experts", "never_self")


class HostSync(RuntimeError):
    """A step read a device value on the host."""


@contextmanager
def no_host_sync() -> Iterator[None]:
    """Within: every Tensor method that reads a value on the host (or has a data-dependent shape) raises."""
    saved = {name: getattr(torch.Tensor, name) for name in SYNCS}

    def refuse(name: str) -> Callable[..., object]:
        def call(*_: object, **__: object) -> object:
            raise HostSync(f"Tensor.{name} called in the step")
        return call

    for name in SYNCS:
        setattr(torch.Tensor, name, refuse(name))
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


def _forced(case: str, world: int, num_experts: int, top_k: int) -> torch.Tensor | None:
    """[B, top_k] expert ids making a skewed load, or None for the router's own choice."""
    batch, local = ROWS_PER_RANK * world, num_experts // world
    if case == "router":
        return None
    if case == "one_expert":  # every token's first copy to expert 0 (the second to expert 1)
        rows = [[0, 1][:top_k]] * batch
    elif case == "one_rank":  # every copy to rank 0's experts; with top_k 1 also uneven within rank 0
        rows = [[0, local - 1 if local > 1 else 1][:top_k]] * batch
    elif case == "empty_experts":  # only the last expert of every rank, token t to rank t mod N: uneven splits
        rows = [[(t % world) * local + local - 1, ((t + 1) % world) * local + local - 1][:top_k] for t in range(batch)]
    elif case == "never_self":  # each rank's tokens to the next rank only
        rows = [[((t // ROWS_PER_RANK + 1) % world) * local, ((t // ROWS_PER_RANK + 1) % world) * local + 1 % local]
                [:top_k] for t in range(batch)]
    else:
        raise ValueError(case)
    return torch.tensor(rows)


def _check(ctx: GangContext, num_experts: int) -> dict[str, object]:
    """On this rank, per (top_k, case): the largest error of ep-static against the full model and
    against ep-hostsync, its dropped copies; then the host-sync probes and a capacity-factor run."""
    out: dict[str, object] = {}
    with process_group(ctx) as gang, torch.inference_mode():
        n = gang.world_size
        rows = shard_rows(ROWS_PER_RANK * n, n, gang.rank)
        for top_k in (1, 2):
            torch.manual_seed(5)
            shape = MoEShape(num_experts=num_experts, expert_hidden_dim=8, expert_num_layers=2, top_k=top_k,
                             input_dim=6, output_dim=3)
            full = MoEMLP(shape, "grouped").eval()
            x = torch.randn(ROWS_PER_RANK * n, 6)
            for case in CASES:
                full.forced_experts = _forced(case, n, num_experts, top_k)
                ref = full(x)[rows]
                static = ExpertParallelMoE(full, gang.rank, n, dispatch=STATIC)
                hostsync = ExpertParallelMoE(full, gang.rank, n, dispatch=HOSTSYNC)
                with no_host_sync():
                    y = static(x[rows])
                out[f"{top_k}/{case}"] = (float((y - ref).abs().max()), float((y - hostsync(x[rows])).abs().max()),
                                          int(static.dropped_copies))
        try:
            with no_host_sync():
                hostsync(x[rows])
            out["hostsync_syncs"] = False
        except HostSync:
            out["hostsync_syncs"] = True
            gang.barrier()  # the peers' dispatch never started: line the gang up again
        # capacity factor 1 with every copy bound for rank 0: C = 3·2/n copies per pair, the rest dropped
        full.forced_experts = _forced("one_rank", n, num_experts, 2)
        capped = ExpertParallelMoE(full, gang.rank, n, dispatch=STATIC, capacity_factor=1.0)
        clock = PhaseClock(gang.device)
        for _ in range(2):
            y = capped(x[rows], clock)
        out["capped"] = (capped.capacity(ROWS_PER_RANK), int(capped.dropped_copies), bool(torch.isfinite(y).all()))
        out["phases"] = {name: p.bytes_sent for name, p in clock.summary().items()}
    return out


@pytest.mark.parametrize("world, num_experts", [(2, 4), (4, 8), (8, 8)])
def test_static_dispatch_matches_the_one_device_moe_without_a_host_sync(world: int, num_experts: int) -> None:
    per_rank = run_ranks(_check, world, num_experts, timeout_s=240.0)
    for rank, res in enumerate(per_rank):
        for top_k in (1, 2):
            for case in CASES:
                vs_full, vs_hostsync, dropped = res[f"{top_k}/{case}"]
                assert vs_full < 1e-5 and vs_hostsync < 1e-5 and dropped == 0, (rank, top_k, case)
        assert res["hostsync_syncs"], "the host-sync probe missed ep-hostsync's .tolist()"
        local = num_experts // world
        capacity, dropped, finite = res["capped"]
        assert capacity == max(1, -(-ROWS_PER_RANK * 2 // world)) and finite
        # per step: 6 copies to rank 0 (with one expert per rank, 3 to rank 0 and 3 to rank 1), C kept per pair
        per_step = ROWS_PER_RANK * 2 - capacity if local > 1 else 2 * (ROWS_PER_RANK - capacity)
        assert dropped == 2 * per_step, (rank, capacity, dropped)
        assert res["phases"]["dispatch"] == (world - 1) * capacity * 6 * 4 + (world - 1) * local * 8
        assert res["phases"]["combine"] == (world - 1) * capacity * 3 * 4


def test_bad_dispatch_options_are_refused_naming_the_value() -> None:
    full = MoEMLP(MoEShape(num_experts=4, expert_hidden_dim=8, expert_num_layers=2, top_k=2, input_dim=6,
                           output_dim=3), "grouped")
    with pytest.raises(ValueError, match="'ep-magic'"):
        ExpertParallelMoE(full, 0, 2, dispatch="ep-magic")
    with pytest.raises(ValueError, match="capacity_factor 0.0"):
        ExpertParallelMoE(full, 0, 2, dispatch=STATIC, capacity_factor=0.0)
    with pytest.raises(ValueError, match="capacity_factor 1.0"):
        ExpertParallelMoE(full, 0, 2, dispatch=HOSTSYNC, capacity_factor=1.0)
    ep = ExpertParallelMoE(full, 0, 2, dispatch=STATIC)
    assert ep.capacity(5) == 10 and ep.experts_form.startswith(STATIC)
