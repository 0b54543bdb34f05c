"""The MoE of `MoEMLP`, expert parallel over the N ranks of a gang.

Same layers, same weights, same function as the one-device model it is built from: rank r holds
experts [r·E/N, (r+1)·E/N) and a copy of the router; the global batch of B rows is split into N
shards of B/N rows, one per rank. One step, on every rank at once: route (the router's top-k, or
the forced experts of a skewed load, on this rank's shard), then `exchange.Exchange`'s dispatch,
experts and combine, the experts being a local `MoEMLP` holding the slice:

- `ep-hostsync` (the reference): `MoEMLP.experts_forward` with the kernel the one-device model
  chose by measurement (each expert sees the same rows on average, B·k/E), or one GEMM per expert
  for `sorted`; its host sync (the split sizes) is why it cannot be captured in a CUDA graph;
- `ep-static`: fixed-capacity blocks, counts on the device, no host sync; the local experts run
  with `torch._grouped_mm` and device offsets where it runs, else every expert on every row, masked.

Capacity (`ep-static`): by default the worst case, C = tokens per rank × top_k: exact, nothing is
ever dropped. A `capacity_factor` f gives C = ceil(f · tokens·k / n) capped at the worst case;
copies beyond C for a peer are dropped, contribute nothing to their token (as in Switch-style
capacity), and are counted on the device in `dropped_copies` (read it after the steps, outside
any graph) — never silently.
"""
from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from moecluster.workloads.mlp.models import MoEMLP, route_top_k
from moecluster.workloads.exchange import (
    COUNT_BYTES, DISPATCH_FORMS, HOSTSYNC, PHASES, STATIC, Exchange, StepMarks, experts_per_rank, shard_rows
)

__all__ = ["COUNT_BYTES", "DISPATCH_FORMS", "EP_IMPLS", "HOSTSYNC", "PHASES", "STATIC", "ExpertParallelMoE",
           "StepMarks", "expert_loop", "experts_per_rank", "shard_rows"]

EP_IMPLS = ("grouped", "sorted")  # `naive` loops over every expert with masks: a one-device form only


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
        self.exchange = Exchange(rank, world_size, self.local_experts, shape.top_k)
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
        return self.exchange.capacity(tokens, self.capacity_factor)

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
        if marks is not None:
            marks.start()
        gates, idx = self.route(x)
        if self.dispatch == STATIC:
            grouped = self._static_uses_grouped_mm(x)

            def experts(h: Tensor, eid: Tensor, counts: Tensor) -> Tensor:
                return self._static_experts(h, eid, counts, grouped)

            return self.exchange.static(x, gates, idx, experts, self.capacity(x.shape[0]), self.dropped_copies, marks)
        return self.exchange.hostsync(x, gates, idx, self._experts, marks)

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
