"""The gang's context and process group: validation, teardown on every exit path, bounded rendezvous."""
from __future__ import annotations

import ipaddress
import socket

import pytest
import torch
import torch.distributed as dist

from moecluster.measure.parallel.gang import run_gang_rank
from moecluster.node.address import node_address
from moecluster.measure.parallel.group import GangContext, free_port, process_group
from moecluster.spec.records import TaskSpec


def ctx(world: int = 1, rank: int = 0, timeout_s: float = 10.0) -> GangContext:
    return GangContext(rank=rank, world_size=world, master_addr="127.0.0.1", master_port=free_port(),
                       backend="gloo", timeout_s=timeout_s)


def test_context_validates_and_reads_torchrun_variables() -> None:
    with pytest.raises(ValueError, match="rank 2 is not in a gang of 2"):
        GangContext(rank=2, world_size=2, master_addr="h", master_port=1)
    with pytest.raises(ValueError, match="backend 'mpi'"):
        GangContext(rank=0, world_size=1, master_addr="h", master_port=1, backend="mpi")
    env = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}
    c = GangContext.from_env(env, backend="gloo")
    assert (c.rank, c.world_size, c.local_rank, c.master_addr, c.master_port) == (1, 4, 1, "10.0.0.1", 29500)
    assert c.torch_device() == torch.device("cpu") and c.resolved_backend(c.torch_device()) == "gloo"
    with pytest.raises(ValueError, match="lacks MASTER_ADDR"):
        GangContext.from_env({"RANK": "0", "WORLD_SIZE": "1", "MASTER_PORT": "1"})
    nccl_on_cpu = GangContext(rank=0, world_size=1, master_addr="h", master_port=1, backend="nccl", device="cpu")
    with pytest.raises(ValueError, match="nccl needs CUDA"):
        nccl_on_cpu.resolved_backend(nccl_on_cpu.torch_device())


def test_rendezvous_helpers_give_a_bindable_port_and_an_address() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", port))
    assert ipaddress.ip_address(node_address()).version == 4


def test_collectives_of_a_one_rank_gang_and_teardown_on_every_exit() -> None:
    with process_group(ctx()) as gang:
        gang.barrier()
        assert gang.from_rank0([3, 5]) == [3, 5] and gang.all_gather({"a": 1}) == [{"a": 1}]
        assert gang.first_failure() is None
        gang.post_failure("rank 0: first")
        gang.post_failure("rank 0: second")
        assert gang.first_failure() == "rank 0: first"
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="boom"):
        with process_group(ctx()):
            raise RuntimeError("boom")
    assert not dist.is_initialized()


def test_a_missing_peer_ends_the_rendezvous_at_the_timeout() -> None:
    with pytest.raises(Exception, match="(?i)time"):
        with process_group(ctx(world=2, timeout_s=1.0)):
            pass
    assert not dist.is_initialized()


def test_a_gang_that_cannot_form_returns_failed_results_on_rank_zero() -> None:
    spec = TaskSpec(task_id="t", pair_id="p", kind="moe", impl="grouped", device="cpu", expert_parallel=2,
                    model={"num_experts": 2, "expert_hidden_dim": 8, "expert_num_layers": 1, "top_k": 1})
    (result,) = run_gang_rank([spec], ctx(world=2, timeout_s=1.0))
    assert result.status == "failed" and result.world_size == 2
    assert result.error is not None and result.error.startswith("rank 0: gang set-up failed: ")
    assert not dist.is_initialized()
