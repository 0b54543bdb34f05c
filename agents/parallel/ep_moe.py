"""The MoE of `MoEMLP`, expert parallel over the N ranks of a gang.

Same layers, same weights, same function as the one-device model it is built from: rank r holds
experts [r·E/N, (r+1)·E/N) and a copy of the router; the global batch of B rows is split into N
shards of B/N rows, one per rank. One step, on every rank at once:

1. route: the router's top-k (or the forced experts of a skewed load) on this rank's shard; the
   token copies are sorted by expert, so the copies bound for each rank lie together;
2. dispatch: the per-expert counts go to the experts' owners (`all_to_all_single` on an int64
   tensor), each rank learns its split sizes (one host sync: uneven splits need them on the host),
   the copies travel with a second `all_to_all_single` (uneven splits, zero-size ones allowed), and
   the receiver regroups what it got (rank-major) by local expert;
3. experts: the rank's experts on their sorted copies — `MoEMLP.experts_forward` on a local
   `MoEMLP` holding the slice, with the kernel the one-device model chose by measurement (each
   expert sees the same rows on average, B·k/E), or one GEMM per expert for `sorted`;
4. combine: the outputs go back in the order they came (a third `all_to_all_single`, splits
   swapped), are weighted by their gates and summed into their tokens (`index_add_`).

The host sync of step 2 is why an expert-parallel step cannot be captured in a CUDA graph.
Bytes sent are the bytes that leave the rank (the copies it keeps for its own experts are not
sent): dispatch counts the copies' inputs and the counts, combine the outputs.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ..workloads.mlp.models import MoEMLP, route_top_k

PHASES = ("route", "dispatch", "experts", "combine")
EP_IMPLS = ("grouped", "sorted")  # `naive` loops over every expert with masks: a one-device form only
COUNT_BYTES = 8  # int64 counts


class StepMarks(Protocol):
    """Where a step reports its phases (`phases.PhaseClock`); None in a measurement window."""

    def start(self) -> None: ...

    def mark(self, phase: str, bytes_sent: int = 0) -> None: ...


def experts_per_rank(num_experts: int, world_size: int) -> int:
    """E / N; a ValueError naming both numbers when N does not divide E."""
    if world_size < 1:
        raise ValueError(f"world size must be >= 1, got {world_size}")
    if num_experts % world_size:
        raise ValueError(f"num_experts {num_experts} is not divisible by the world size {world_size}: "
                         "expert parallelism puts the same number of experts on every rank")
    return num_experts // world_size


def shard_rows(batch_size: int, world_size: int, rank: int) -> slice:
    """This rank's rows of a global batch; a ValueError naming both numbers when N does not divide B."""
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} is not divisible by the world size {world_size}: "
                         "every rank takes batch_size / world_size rows")
    rows = batch_size // world_size
    return slice(rank * rows, (rank + 1) * rows)


def expert_loop(experts: MoEMLP, h_sorted: Tensor, counts: list[int]) -> Tensor:
    """Every expert of `experts` on its rows of `h_sorted` (sorted by expert), one GEMM per layer and expert.

    The `sorted` implementation's computation, and the fallback where `MoEMLP.experts_forward`
    does not exist. Experts with no rows are skipped.
    """
    outs: list[Tensor] = []
    start = 0
    last = len(experts.weight) - 1
    for e, c in enumerate(counts):
        if not c:
            continue
        h = h_sorted[start:start + c]
        for layer, (w, b) in enumerate(zip(experts.weight, experts.bias)):
            h = F.linear(h, w[e], b[e])
            if layer < last:
                h = F.relu(h)
        outs.append(h)
        start += c
    return torch.cat(outs) if outs else h_sorted.new_empty(0, experts.shape.output_dim)


class ExpertParallelMoE(nn.Module):
    """Rank `rank`'s part of `full` over a gang of `world_size` (see the module's docstring).

    Built from a full `MoEMLP` (the weights are copied; `full` may be dropped afterwards): a
    ValueError when the world size does not divide the expert count, or the forced experts of a
    skewed load (one row per token of the global batch) do not split into equal shards, or the
    implementation has no expert-parallel form. Every rank must call `forward` the same number
    of times, with `world_size` shards of one global batch (its collectives pair up across ranks).
    """

    def __init__(self, full: MoEMLP, rank: int, world_size: int) -> None:
        super().__init__()
        if full.impl not in EP_IMPLS:
            raise ValueError(f"impl {full.impl!r} has no expert-parallel form ({', '.join(EP_IMPLS)})")
        shape = full.shape
        self.rank, self.world_size = rank, world_size
        self.local_experts = experts_per_rank(shape.num_experts, world_size)
        self.top_k = shape.top_k
        self.impl = full.impl
        self.router = copy.deepcopy(full.router)
        self.forced_experts: Tensor | None = None
        if full.forced_experts is not None:
            rows = shard_rows(full.forced_experts.shape[0], world_size, rank)
            self.forced_experts = full.forced_experts[rows].clone()
        first = rank * self.local_experts
        weight = full.weight[0]
        # the local module never routes: its top_k is 1 and its rows are token copies already
        local_shape = dataclasses.replace(shape, num_experts=self.local_experts, top_k=1)
        with torch.device(weight.device):
            self.experts = MoEMLP(local_shape, "grouped")
        self.experts.to(weight.dtype)
        with torch.no_grad():
            for dst, src in zip(self.experts.weight, full.weight):
                dst.copy_(src[first:first + self.local_experts])
            for dst, src in zip(self.experts.bias, full.bias):
                dst.copy_(src[first:first + self.local_experts])
        self.experts.eval().requires_grad_(False)
        # the same rows per expert as the one-device model (B·k/E on average), so its measured kernel holds
        self.experts.kernel = getattr(full, "kernel", None)
        self.uses_experts_forward = self.impl == "grouped" and callable(getattr(self.experts, "experts_forward", None))
        self._fixes_counts = callable(getattr(self.experts, "counts_fixed", None))

    @property
    def experts_form(self) -> str:
        """How the local experts run, for the task's record."""
        if self.uses_experts_forward:
            kernel = self.experts.kernel or "the fallback order's first for the rows received"
            return f"MoEMLP.experts_forward, kernel {kernel}"
        if self.impl == "grouped":
            return "per-expert GEMM loop (MoEMLP.experts_forward not available in this installation)"
        return "per-expert GEMM loop (sorted)"

    def route(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(gates [b, k], expert ids [b, k]) of this rank's rows, as `MoEMLP.route` computes them."""
        return route_top_k(self.router, x, self.top_k, self.forced_experts)

    def _experts(self, h_sorted: Tensor, counts_host: list[int], counts_device: Tensor) -> Tensor:
        if h_sorted.shape[0] == 0:
            return h_sorted.new_empty(0, self.experts.shape.output_dim)
        if self.uses_experts_forward:
            if not self._fixes_counts:
                out: Tensor = self.experts.experts_forward(h_sorted, counts_device)
                return out
            with self.experts.counts_fixed(counts_host):  # known on the host already: no second sync
                out = self.experts.experts_forward(h_sorted, counts_device)
            return out
        return expert_loop(self.experts, h_sorted, counts_host)

    def forward(self, x: Tensor, marks: StepMarks | None = None) -> Tensor:
        """This rank's output rows for its input rows `x` [B/N, in]; a collective step (see the class)."""
        n, local = self.world_size, self.local_experts
        experts = n * local
        elem = x.element_size()
        if marks is not None:
            marks.start()
        # 1. route: copies sorted by expert, hence grouped by the rank that owns the expert
        gates, idx = self.route(x)
        flat_idx, order = torch.sort(idx.flatten(), stable=True)
        token = order // self.top_k
        gate = gates.flatten()[order]
        xs = x[token]
        send_counts = torch.zeros(experts, dtype=torch.int64, device=x.device)  # bincount would sync on CUDA
        send_counts.index_add_(0, flat_idx, torch.ones_like(flat_idx))
        if marks is not None:
            marks.mark("route")
        # 2. dispatch: counts first (rank r receives, from every rank, the counts of its own experts)
        recv_counts = torch.empty_like(send_counts)
        dist.all_to_all_single(recv_counts, send_counts)
        both = torch.cat([send_counts, recv_counts]).tolist()  # the one host sync of a step
        send_e, recv_e = both[:experts], both[experts:]
        send_splits = [sum(send_e[r * local:(r + 1) * local]) for r in range(n)]
        recv_splits = [sum(recv_e[r * local:(r + 1) * local]) for r in range(n)]
        received = xs.new_empty(sum(recv_splits), x.shape[1])
        dist.all_to_all_single(received, xs.contiguous(), recv_splits, send_splits)
        local_host = [sum(recv_e[r * local + j] for r in range(n)) for j in range(local)]
        expert_of_row = torch.arange(local, device=x.device).repeat(n)
        expert_of_row = torch.repeat_interleave(expert_of_row, recv_counts, output_size=received.shape[0])
        perm = torch.sort(expert_of_row, stable=True).indices
        h_sorted = received[perm]
        if marks is not None:
            sent = (sum(send_splits) - send_splits[self.rank]) * x.shape[1] * elem + (n - 1) * local * COUNT_BYTES
            marks.mark("dispatch", sent)
        # 3. experts
        y_sorted = self._experts(h_sorted, local_host, recv_counts.view(n, local).sum(0).to(torch.int32))
        if marks is not None:
            marks.mark("experts")
        # 4. combine: back in arrival order, to the ranks they came from
        y = torch.empty_like(y_sorted)
        y[perm] = y_sorted
        back = y.new_empty(xs.shape[0], y.shape[1])
        dist.all_to_all_single(back, y, send_splits, recv_splits)
        out = x.new_zeros(x.shape[0], y.shape[1]).index_add_(0, token, back * gate.unsqueeze(1))
        if marks is not None:
            marks.mark("combine", (sum(recv_splits) - recv_splits[self.rank]) * y.shape[1] * elem)
        return out
