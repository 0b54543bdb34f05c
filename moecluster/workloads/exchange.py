"""Token copies to the ranks that own their experts and back: expert parallelism's dispatch and combine.

One exchange serves every MoE that runs expert parallel (the MLP's `ep_moe`, the transformer's
`ep_llm`): it knows only the gang (rank r owns experts [r·L, (r+1)·L), L = E/N) and top-k; the
experts themselves are a function the caller passes. A step, on every rank at once, from this
rank's rows `x` [T, D] and their routing (gates and expert ids [T, k]):

- route: the token copies (one per chosen expert) sorted by expert, hence grouped by the rank
  that owns it; per-expert counts on the device;
- dispatch, `hostsync` (the reference): the counts go to the experts' owners, each rank reads its
  split sizes on the host (the step's one host sync; uneven splits need them there), the copies
  travel with `all_to_all_single` (uneven splits, zero-size ones allowed) and the receiver
  regroups them (rank-major) by local expert;
- dispatch, `static` (no host sync, no data-dependent shape): every rank sends every peer a block
  of C rows, so the all-to-all has equal splits; copies beyond C for a peer are dropped and
  counted on the device (`dropped`); the receiver sorts its n·C rows by local expert, padding last;
- experts: the caller's function on the sorted rows;
- combine: the outputs go back the way they came and are weighted by their gates and summed into
  their tokens, in float32 (a deterministic order of the k copies, as transformers' own sum).

Bytes sent count what leaves the rank (copies kept for its own experts are not sent): dispatch
the copies' inputs and the counts, combine the outputs; for `static` the padded blocks.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.distributed as dist
from torch import Tensor

COUNT_BYTES = 8  # int64 counts
PHASES = ("route", "dispatch", "experts", "combine")  # an expert-parallel MoE's step
HOSTSYNC, STATIC = "ep-hostsync", "ep-static"  # the dispatch forms (`Exchange.hostsync`, `Exchange.static`)
DISPATCH_FORMS = (HOSTSYNC, STATIC)

# (rows sorted by local expert, rows per local expert on the host, the same on the device) -> outputs
HostExperts = Callable[[Tensor, list[int], Tensor], Tensor]
# (rows sorted by local expert, padding last; each row's expert id, padding clamped; rows per expert on the device)
# -> outputs (rows past the counts may be anything: the exchange zeroes them)
StaticExperts = Callable[[Tensor, Tensor, Tensor], Tensor]


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


@dataclass(frozen=True)
class ExpertParallelPart:
    """An MoE workload's model, expert parallel on one rank, as the gang runs it.

    `step()`: one step of this rank's share of the global batch (a collective); `phased(marks)`:
    the same step reporting its `phases` to `marks` (a timed pass, apart from energy windows);
    `alltoall_bytes`: what each rank sends in one dispatch and one combine call on average (send
    buffers, own chunk included), the sizes the raw all-to-all is measured at; `bytes_per_batch`:
    what a global batch must move from memory over the gang (the roofline's bytes); `form`: how it runs.
    """

    step: Callable[[], object]
    phased: Callable[[StepMarks], object]
    phases: tuple[str, ...]
    alltoall_bytes: tuple[float, float]
    bytes_per_batch: float
    form: dict[str, str]
    local_experts: int
    rows: int  # this rank's share of the global batch (rows, or sequences)


def _combine(back: Tensor, token: Tensor, gate: Tensor, tokens: int, dtype: torch.dtype) -> Tensor:
    """Each copy's output weighted by its gate and summed into its token, in float32."""
    out = torch.zeros(tokens, back.shape[1], dtype=torch.float32, device=back.device)
    return out.index_add_(0, token, back.float() * gate.float().unsqueeze(1)).to(dtype)


@dataclass(frozen=True)
class Exchange:
    """Dispatch and combine for rank `rank` of a gang of `world_size`, `local_experts` experts each."""

    rank: int
    world_size: int
    local_experts: int
    top_k: int

    def capacity(self, tokens: int, factor: float | None) -> int:
        """C for `static`: copies each rank may send each peer in a step of `tokens` rows; the worst case
        (tokens × k, exact) for `factor` None, else ceil(factor · tokens·k / N) (1: an even load fits)."""
        worst = tokens * self.top_k
        if factor is None:
            return worst
        return max(1, min(worst, math.ceil(factor * worst / self.world_size)))

    def sorted_copies(self, gates: Tensor, idx: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(expert id, source row, gate) per copy, sorted by expert, and the copies per expert [N × L],
        counted on the device (bincount would sync on CUDA)."""
        flat_idx, order = torch.sort(idx.flatten(), stable=True)
        counts = torch.zeros(self.world_size * self.local_experts, dtype=torch.int64, device=idx.device)
        counts.index_add_(0, flat_idx, torch.ones_like(flat_idx))
        return flat_idx, order // self.top_k, gates.flatten()[order], counts

    def hostsync(self, x: Tensor, gates: Tensor, idx: Tensor, experts: HostExperts,
                 marks: StepMarks | None = None) -> Tensor:
        """This rank's outputs for its rows `x` routed to `idx` with `gates` (a collective, one host sync)."""
        n, local = self.world_size, self.local_experts
        elem = x.element_size()
        flat_idx, token, gate, send_counts = self.sorted_copies(gates, idx)
        xs = x[token]
        if marks is not None:
            marks.mark("route")
        recv_counts = torch.empty_like(send_counts)
        dist.all_to_all_single(recv_counts, send_counts)  # rank r receives the counts of its own experts
        both = torch.cat([send_counts, recv_counts]).tolist()  # the one host sync of a step
        send_e, recv_e = both[:n * local], both[n * local:]
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
        y_sorted = experts(h_sorted, local_host, recv_counts.view(n, local).sum(0).to(torch.int32))
        if marks is not None:
            marks.mark("experts")
        y = torch.empty_like(y_sorted)
        y[perm] = y_sorted
        back = y.new_empty(xs.shape[0], y.shape[1])
        dist.all_to_all_single(back, y, send_splits, recv_splits)
        out = _combine(back, token, gate, x.shape[0], x.dtype)
        if marks is not None:
            marks.mark("combine", (sum(recv_splits) - recv_splits[self.rank]) * y.shape[1] * elem)
        return out

    def static(self, x: Tensor, gates: Tensor, idx: Tensor, experts: StaticExperts, capacity: int,
               dropped: Tensor, marks: StepMarks | None = None) -> Tensor:
        """This rank's outputs with fixed blocks of `capacity` rows per peer (a collective, no host sync);
        copies over capacity are added to `dropped` (a device scalar)."""
        n, local, dev, cap = self.world_size, self.local_experts, x.device, capacity
        elem = x.element_size()
        flat_idx, token, gate, send_counts = self.sorted_copies(gates, idx)
        per_rank = send_counts.view(n, local)
        rank_counts = per_rank.sum(1)
        dest = flat_idx // local
        pos = torch.arange(flat_idx.shape[0], device=dev) - (torch.cumsum(rank_counts, 0) - rank_counts)[dest]
        overflow_row = n * cap  # dropped copies land here and are never sent
        slot = torch.where(pos < cap, dest * cap + pos, torch.full_like(pos, overflow_row))
        # the copies placed per (destination, expert): the first C of each destination's run
        before = torch.cumsum(per_rank, 1) - per_rank
        placed = (cap - before).clamp(min=0).minimum(per_rank)
        dropped.add_(send_counts.sum() - placed.sum())
        send = x.new_zeros(overflow_row + 1, x.shape[1]).index_copy_(0, slot, x[token])
        if marks is not None:
            marks.mark("route")
        recv_counts = torch.empty_like(placed)
        dist.all_to_all_single(recv_counts, placed)  # [n sources, local experts]
        received = x.new_empty(n * cap, x.shape[1])
        dist.all_to_all_single(received, send[:overflow_row])
        ends = torch.cumsum(recv_counts, 1)
        row_in_block = torch.arange(cap, device=dev).expand(n, cap).contiguous()
        eid_unsorted = torch.searchsorted(ends, row_in_block, right=True).flatten()  # `local`: padding
        eid_sorted, perm = torch.sort(eid_unsorted, stable=True)
        h_sorted = received[perm]
        if marks is not None:
            marks.mark("dispatch", (n - 1) * cap * x.shape[1] * elem + (n - 1) * local * COUNT_BYTES)
        y_sorted = experts(h_sorted, eid_sorted.clamp(max=local - 1), recv_counts.sum(0))
        y_sorted = torch.where((eid_sorted < local).unsqueeze(1), y_sorted, 0.0)
        if marks is not None:
            marks.mark("experts")
        y = torch.empty_like(y_sorted).index_copy_(0, perm, y_sorted)
        back = y.new_zeros(overflow_row + 1, y.shape[1])
        dist.all_to_all_single(back[:overflow_row], y)
        out = _combine(back[slot], token, gate, x.shape[0], x.dtype)
        if marks is not None:
            marks.mark("combine", (n - 1) * cap * y.shape[1] * elem)
        return out
