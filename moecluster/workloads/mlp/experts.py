"""The grouped MoE's kernels: every expert's layers over token copies already sorted by expert.

Three kernels compute the same function from stacked weights `w[l]: [E, out, in]`,
`b[l]: [E, out]` (ReLU between layers, none after the last):

- `grouped_mm`: one ragged grouped GEMM per layer (`torch._grouped_mm`), no host sync; it
  wins while experts see few tokens (reading the weights dominates).
- `padded_bmm`: one batched GEMM per layer over experts padded to the fullest one; its
  capacity is read from the device (one host sync) unless fixed in advance.
- `expert_loop`: one GEMM per expert on its slice; the slice sizes are read from the device
  (one host sync) unless fixed in advance. At large loads cuBLAS's own tiles win.
- `fused_triton`: the fused path of `fused.py` (Triton kernels: permutation, and each layer with
  bias and ReLU in its epilogue, tiles tuned per load); it takes the unsorted copies and gates
  itself (`MoEMLP` calls it before any sort), no host sync. Never first in the fallback order:
  it runs only where it measured fastest.

Which one runs is measured per task (`workloads.forms`); `fallback_order` is the
order the H100's measurements suggest, used to break ties and before anything is measured.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

GROUPED_MM = "grouped_mm"
PADDED_BMM = "padded_bmm"
EXPERT_LOOP = "expert_loop"
FUSED = "fused_triton"
GROUPED_KERNELS = (GROUPED_MM, PADDED_BMM, EXPERT_LOOP, FUSED)

# tokens per expert from which another kernel beat the ragged grouped GEMM
# (measured on the H100 at xxl, bf16: benchmarks/results/moe_kernels_h100.json)
PADDED_BMM_FROM_ROWS = 384
EXPERT_LOOP_FROM_ROWS = 1024

Layers = Sequence[tuple[Tensor, Tensor]]


def fallback_order(rows_per_expert: float, fast_grouped_mm: bool) -> tuple[str, ...]:
    """All grouped kernels, the likeliest fastest first, by the H100's thresholds.

    `fast_grouped_mm`: the ragged GEMM has a fast path here (bf16 on Hopper, or any dtype
    where nothing else was measured); without one it goes before only the fused kernel, which
    is always last: it needs its tiles tuned, so it runs only where a measurement chose it.
    """
    if rows_per_expert >= EXPERT_LOOP_FROM_ROWS:
        return (EXPERT_LOOP, PADDED_BMM, GROUPED_MM, FUSED)
    if fast_grouped_mm and rows_per_expert < PADDED_BMM_FROM_ROWS:
        return (GROUPED_MM, PADDED_BMM, EXPERT_LOOP, FUSED)
    if fast_grouped_mm:
        return (PADDED_BMM, GROUPED_MM, EXPERT_LOOP, FUSED)
    return (PADDED_BMM, EXPERT_LOOP, GROUPED_MM, FUSED)


def expert_ids(counts: Tensor, rows: int) -> Tensor:
    """The expert of each sorted row, [rows], without a host sync (the size is given)."""
    experts = torch.arange(counts.shape[0], device=counts.device)
    return torch.repeat_interleave(experts, counts, output_size=rows)


def check_counts(h: Tensor, host_counts: Sequence[int] | None) -> None:
    """Counts fixed in advance must cover exactly the rows given (a shape check, no sync)."""
    if host_counts is not None and sum(host_counts) != h.shape[0]:
        raise ValueError(f"fixed per-expert counts sum to {sum(host_counts)}, but {h.shape[0]} rows were given")


def grouped_mm(layers: Layers, h: Tensor, counts: Tensor, out_dim: int) -> Tensor:
    """Ragged grouped GEMMs. `layers` hold `[E, in, out]` weights whose row strides are
    multiples of 16 bytes (the last layer zero-padded); the padding is cut off at the end."""
    offs = torch.cumsum(counts, 0, dtype=torch.int32)
    eid = expert_ids(counts, h.shape[0])
    last = len(layers) - 1
    for i, (w, b) in enumerate(layers):
        h = torch._grouped_mm(h, w, offs=offs) + b[eid]
        if i < last:
            h = F.relu(h)
    return h[:, :out_dim]


def padded_bmm(layers: Layers, h: Tensor, counts: Tensor, host_counts: Sequence[int] | None = None) -> Tensor:
    """Batched GEMMs over experts padded to the fullest one. `layers` hold `[E, out, in]`
    weights; `host_counts` (fixed in advance) spare the host sync that reads the capacity."""
    check_counts(h, host_counts)
    num_experts = counts.shape[0]
    capacity = max(host_counts) if host_counts is not None else int(counts.max())
    rows = h.shape[0]
    eid = expert_ids(counts, rows)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(rows, device=h.device) - starts[eid]
    buf = h.new_zeros(num_experts, capacity, h.shape[1])
    buf[eid, slot] = h
    last = len(layers) - 1
    for i, (w, b) in enumerate(layers):
        buf = torch.baddbmm(b.unsqueeze(1), buf, w.transpose(-2, -1))
        if i < last:
            buf = F.relu(buf)
    return buf[eid, slot]


def expert_loop(layers: Layers, h: Tensor, counts: Tensor, host_counts: Sequence[int] | None = None) -> Tensor:
    """One GEMM per expert on its slice. `layers` hold `[E, out, in]` weights; `host_counts`
    (fixed in advance) spare the host sync that reads the slice sizes."""
    check_counts(h, host_counts)
    sizes = list(host_counts) if host_counts is not None else [int(c) for c in counts.tolist()]
    last = len(layers) - 1
    outs = []
    for e, chunk in enumerate(torch.split(h, sizes)):
        if chunk.shape[0] == 0:
            continue
        for i, (w, b) in enumerate(layers):
            chunk = F.linear(chunk, w[e], b[e])
            if i < last:
                chunk = F.relu(chunk)
        outs.append(chunk)
    return torch.cat(outs) if outs else h.new_zeros(0, layers[-1][0].shape[1])
