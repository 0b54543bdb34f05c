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

That is the `ep-hostsync` dispatch (the reference): the host sync of step 2 is why it cannot be
captured in a CUDA graph. The `ep-static` dispatch has no host sync and no data-dependent shape:

- every rank sends every peer a block of C rows (C = `capacity` token copies per (source,
  destination) pair; every rank passes the same number of rows, as `shard_rows` gives), so
  `all_to_all_single` runs with equal splits and needs no split sizes on the host; the
  per-expert counts of the copies actually placed travel in a small all-to-all of their own
  and stay on the device;
- the receiver sorts its n·C rows by local expert (padding rows last, expert ids from the counts
  with `searchsorted`), runs its experts (`torch._grouped_mm` with device offsets where it runs,
  else every expert on every row with a mask), and zeroes the padding rows;
- combine sends the n·C output rows back in the same layout; each copy reads its own slot.

Capacity: by default the worst case, C = tokens per rank × top_k (every copy of a rank bound for
one peer): exact, nothing is ever dropped. A `capacity_factor` f gives C = ceil(f · tokens·k / n)
(f = 1: an even load exactly fits) capped at the worst case; copies beyond C for a peer are
dropped, contribute nothing to their token (as in Switch-style capacity), and are counted on the
device in `dropped_copies` (read it after the steps, outside any graph) — never silently.

Bytes sent are the bytes that leave the rank (the copies it keeps for its own experts are not
sent): dispatch counts the copies' inputs and the counts, combine the outputs; for `ep-static`
the padded blocks, (n − 1)·C rows, since that is what crosses.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ..workloads.mlp.models import MoEMLP, route_top_k

PHASES = ("route", "dispatch", "experts", "combine")
EP_IMPLS = ("grouped", "sorted")  # `naive` loops over every expert with masks: a one-device form only
COUNT_BYTES = 8  # int64 counts
HOSTSYNC, STATIC = "ep-hostsync", "ep-static"
DISPATCH_FORMS = (HOSTSYNC, STATIC)


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
    `dispatch`: `ep-hostsync` (the reference) or `ep-static`; `capacity_factor`: `ep-static`'s
    C as a factor of an even load (None: the worst case, exact); a ValueError for anything else.
    """

    dropped_copies: Tensor  # a buffer: token copies dropped over capacity so far (ep-static with a factor)

    def __init__(self, full: MoEMLP, rank: int, world_size: int, dispatch: str = HOSTSYNC,
                 capacity_factor: float | None = None) -> None:
        super().__init__()
        if dispatch not in DISPATCH_FORMS:
            raise ValueError(f"dispatch {dispatch!r} is not one of {', '.join(DISPATCH_FORMS)}")
        if capacity_factor is not None and (dispatch != STATIC or not capacity_factor > 0):
            raise ValueError(f"capacity_factor {capacity_factor!r}: only for {STATIC}, and > 0")
        self.dispatch, self.capacity_factor = dispatch, capacity_factor
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
        self.register_buffer("dropped_copies", torch.zeros((), dtype=torch.int64, device=weight.device),
                             persistent=False)

    def capacity(self, tokens: int) -> int:
        """C: token copies each rank may send each peer in one `ep-static` step of `tokens` rows."""
        worst = tokens * self.top_k
        if self.capacity_factor is None:
            return worst
        return max(1, min(worst, math.ceil(self.capacity_factor * worst / self.world_size)))

    def _static_uses_grouped_mm(self, x: Tensor) -> bool:
        unavailable = getattr(self.experts, "grouped_mm_unavailable", None)
        return callable(unavailable) and unavailable(x.device, x.dtype) is None

    @property
    def experts_form(self) -> str:
        """How the local experts run, for the task's record."""
        if self.dispatch == STATIC:
            cap = "worst case (exact)" if self.capacity_factor is None else f"factor {self.capacity_factor:g}"
            return (f"{STATIC}: padded blocks, capacity {cap}; torch._grouped_mm with device offsets where it runs, "
                    "else every local expert on every row, masked")
        if self.uses_experts_forward:
            kernel = self.experts.kernel or "the fallback order's first for the rows received"
            return f"MoEMLP.experts_forward, kernel {kernel}"
        if self.impl == "grouped":
            return "per-expert GEMM loop (MoEMLP.experts_forward not available in this installation)"
        return "per-expert GEMM loop (sorted)"

    def route(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(gates [b, k], expert ids [b, k]) of this rank's rows, as `MoEMLP.route` computes them."""
        return route_top_k(self.router, x, self.top_k, self.forced_experts)

    def _sorted_copies(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """This rank's copies (a row per chosen expert) sorted by expert, hence grouped by the rank
        that owns it: (expert id, source row, gate) per copy and the copies per expert [N × local],
        counted on the device (bincount would sync on CUDA)."""
        gates, idx = self.route(x)
        flat_idx, order = torch.sort(idx.flatten(), stable=True)
        send_counts = torch.zeros(self.world_size * self.local_experts, dtype=torch.int64, device=x.device)
        send_counts.index_add_(0, flat_idx, torch.ones_like(flat_idx))
        return flat_idx, order // self.top_k, gates.flatten()[order], send_counts

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
        if self.dispatch == STATIC:
            return self._forward_static(x, marks)
        n, local = self.world_size, self.local_experts
        experts = n * local
        elem = x.element_size()
        if marks is not None:
            marks.start()
        # 1. route: copies sorted by expert, hence grouped by the rank that owns the expert
        flat_idx, token, gate, send_counts = self._sorted_copies(x)
        xs = x[token]
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

    def _static_experts(self, h: Tensor, eid: Tensor, counts: Tensor, grouped: bool) -> Tensor:
        """The local experts on rows `h` sorted by expert id `eid` (padding rows last, id clamped);
        `counts` [local] on the device. Rows past the counts come out undefined (the caller masks them)."""
        if grouped:
            offs = torch.cumsum(counts, 0, dtype=torch.int32)
            layers = self.experts._grouped_mm_layers()
            for i, (w, b) in enumerate(layers):
                h = torch._grouped_mm(h, w, offs=offs) + b[eid]
                if i < len(layers) - 1:
                    h = F.relu(h)
            return h[:, :self.experts.shape.output_dim]
        out = h.new_zeros(h.shape[0], self.experts.shape.output_dim)
        last = len(self.experts.weight) - 1
        for e in range(self.local_experts):
            y = h
            for layer, (w, b) in enumerate(zip(self.experts.weight, self.experts.bias)):
                y = F.linear(y, w[e], b[e])
                if layer < last:
                    y = F.relu(y)
            out = torch.where((eid == e).unsqueeze(1), y, out)
        return out

    def _forward_static(self, x: Tensor, marks: StepMarks | None) -> Tensor:
        """The `ep-static` step: fixed-capacity blocks, counts on the device, no host sync."""
        n, local, dev = self.world_size, self.local_experts, x.device
        cap = self.capacity(x.shape[0])
        elem = x.element_size()
        if marks is not None:
            marks.start()
        # 1. route: copies sorted by expert; each copy's slot in its destination's block
        flat_idx, token, gate, send_counts = self._sorted_copies(x)
        per_rank = send_counts.view(n, local)
        rank_counts = per_rank.sum(1)
        dest = flat_idx // local
        pos = torch.arange(flat_idx.shape[0], device=dev) - (torch.cumsum(rank_counts, 0) - rank_counts)[dest]
        kept = pos < cap
        overflow_row = n * cap  # dropped copies land here and are never sent
        slot = torch.where(kept, dest * cap + pos, torch.full_like(pos, overflow_row))
        # the copies placed per (destination, expert): the first C of each destination's run
        before = torch.cumsum(per_rank, 1) - per_rank
        placed = (cap - before).clamp(min=0).minimum(per_rank)
        self.dropped_copies += (send_counts.sum() - placed.sum())
        send = x.new_zeros(overflow_row + 1, x.shape[1]).index_copy_(0, slot, x[token])
        if marks is not None:
            marks.mark("route")
        # 2. dispatch: counts, then n equal blocks of C rows
        recv_counts = torch.empty_like(placed)
        dist.all_to_all_single(recv_counts, placed)  # [n sources, local experts]
        received = x.new_empty(n * cap, x.shape[1])
        dist.all_to_all_single(received, send[:overflow_row])
        ends = torch.cumsum(recv_counts, 1)
        row_in_block = torch.arange(cap, device=dev).expand(n, cap).contiguous()
        eid_unsorted = torch.searchsorted(ends, row_in_block, right=True).flatten()  # local = padding
        eid_sorted, perm = torch.sort(eid_unsorted, stable=True)
        h_sorted = received[perm]
        if marks is not None:
            sent = (n - 1) * cap * x.shape[1] * elem + (n - 1) * local * COUNT_BYTES
            marks.mark("dispatch", sent)
        # 3. experts: padding rows (id `local`) last, masked to zero afterwards
        counts = recv_counts.sum(0)
        y_sorted = self._static_experts(h_sorted, eid_sorted.clamp(max=local - 1), counts,
                                        self._static_uses_grouped_mm(x))
        y_sorted = torch.where((eid_sorted < local).unsqueeze(1), y_sorted, 0.0)
        if marks is not None:
            marks.mark("experts")
        # 4. combine: the same blocks back; each copy reads its slot (dropped ones a zero row)
        y = torch.empty_like(y_sorted).index_copy_(0, perm, y_sorted)
        back = y.new_zeros(overflow_row + 1, y.shape[1])
        dist.all_to_all_single(back[:overflow_row], y)
        out = x.new_zeros(x.shape[0], y.shape[1]).index_add_(0, token, back[slot] * gate.unsqueeze(1))
        if marks is not None:
            marks.mark("combine", (n - 1) * cap * y.shape[1] * elem)
        return out
