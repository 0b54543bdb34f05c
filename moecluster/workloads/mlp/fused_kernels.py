"""The Triton kernels of the fused MoE path (`fused.py`): the permutation and one kernel per layer.

Imported only where the fused path runs (Triton is optional: `fused.triton_unavailable` says
why it cannot run). Triton is imported by name so that the package type-checks without it.

- `align`: the permutation, in the style of fused MoE kernels (vLLM's `moe_align_block_size`):
  token copies grouped by expert, each expert's group padded to a multiple of BLOCK_M with a
  sentinel id, and the expert of every block of BLOCK_M rows. Two launches after a memset, no
  host sync: the grid covers the most blocks any routing can need, blocks past the used ones
  are marked -1 and exit at once. Within an expert the order of copies depends on atomics,
  which changes nothing: every row is computed alone (a GEMM row never mixes with another).
- `layer`: one expert layer for every block at once: `C[rows] = act(A[rows] @ W[e]^T + b[e])`.
  The first layer reads the input rows through the permutation (`copy // top_k`); hidden layers
  read and write the padded order; the last one multiplies by the copy's gate and writes the
  copy's own row (`token * top_k + j`), so the combine is a sum over k afterwards.
Accumulation is in float32; `precision` is tl.dot's input precision for float32 operands
("ieee": exact fp32 products, the default; "tf32"/"tf32x3" only when asked for).
"""
from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import Tensor

from moecluster.workloads.mlp.fused_tiles import max_blocks

triton: Any = importlib.import_module("triton")
tl: Any = importlib.import_module("triton.language")


@triton.jit
def _count_kernel(ids_ptr, counts_ptr, sorted_ptr, num_copies, num_slots, BLOCK: tl.constexpr):
    """Counts copies per expert (atomics) and fills every slot of the padded order with the sentinel."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(sorted_ptr + offs, tl.zeros((BLOCK,), dtype=tl.int32) + num_copies, mask=offs < num_slots)
    live = offs < num_copies
    expert = tl.load(ids_ptr + offs, mask=live, other=0)
    tl.atomic_add(counts_ptr + expert, tl.full((BLOCK,), 1, tl.int32), mask=live)


@triton.jit
def _place_kernel(ids_ptr, counts_ptr, cursor_ptr, sorted_ptr, block_expert_ptr, num_copies, num_experts,
                  num_blocks, BLOCK: tl.constexpr, BLOCK_M: tl.constexpr, EXPERTS: tl.constexpr,
                  BLOCK_CHUNK: tl.constexpr):
    """Writes each copy's id into its expert's padded group; program 0 also writes the expert of every block."""
    pid = tl.program_id(0)
    ex = tl.arange(0, EXPERTS)
    counts = tl.load(counts_ptr + ex, mask=ex < num_experts, other=0)
    padded = (counts + BLOCK_M - 1) // BLOCK_M * BLOCK_M
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    live = offs < num_copies
    expert = tl.load(ids_ptr + offs, mask=live, other=0).to(tl.int32)
    slot = tl.atomic_add(cursor_ptr + expert, tl.full((BLOCK,), 1, tl.int32), mask=live)
    start = tl.sum(tl.where(ex[None, :] < expert[:, None], padded[None, :], 0), axis=1)
    tl.store(sorted_ptr + start + slot, offs, mask=live)
    if pid == 0:
        ends = tl.cumsum(padded, axis=0)
        for first in range(0, num_blocks, BLOCK_CHUNK):
            blocks = first + tl.arange(0, BLOCK_CHUNK)
            row = blocks * BLOCK_M
            done = (ends[None, :] <= row[:, None]) & (ex[None, :] < num_experts)
            owner = tl.sum(done.to(tl.int32), axis=1)
            owner = tl.where(owner < num_experts, owner, -1)
            tl.store(block_expert_ptr + blocks, owner, mask=blocks < num_blocks)


@triton.jit
def _block_of(pid, N, num_blocks, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """(block of rows, block of columns) of program `pid`: GROUP_M row blocks take each column of
    weight tiles in turn, so a weight tile is read while still in L2 (and once where GROUP_M is 1)."""
    blocks_n = tl.cdiv(N, BLOCK_N)
    in_group = GROUP_M * blocks_n
    first_m = (pid // in_group) * GROUP_M
    group_size = tl.minimum(num_blocks - first_m, GROUP_M)
    return first_m + (pid % in_group) % group_size, (pid % in_group) // group_size


@triton.jit
def _epilogue(acc, b_ptr, expert, stride_be, offs_n, N, ids, live, gate_ptr, RELU: tl.constexpr,
              GATE: tl.constexpr):
    """The expert's bias, then ReLU (hidden layers) or the copy's gate (the last), in float32."""
    bias = tl.load(b_ptr + expert.to(tl.int64) * stride_be + offs_n, mask=offs_n < N, other=0.0)
    acc += bias[None, :].to(tl.float32)
    if RELU:
        acc = tl.maximum(acc, 0.0)
    if GATE:
        gate = tl.load(gate_ptr + ids, mask=live, other=0.0)
        acc *= gate[:, None].to(tl.float32)
    return acc


@triton.jit
def _layer_kernel(a_ptr, w_ptr, b_ptr, c_ptr, ids_ptr, block_expert_ptr, gate_ptr,
                  num_copies, N, K, num_blocks, top_k,
                  stride_am, stride_we, stride_wn, stride_be, stride_cm,
                  GATHER: tl.constexpr, SCATTER: tl.constexpr, RELU: tl.constexpr, GATE: tl.constexpr,
                  EVEN_K: tl.constexpr, EVEN_N: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    """One layer of every expert: rows of block m times W[expert of m]^T, bias, ReLU or gate, stored."""
    pid_m, pid_n = _block_of(tl.program_id(0), N, num_blocks, BLOCK_N, GROUP_M)
    expert = tl.load(block_expert_ptr + pid_m)
    if expert < 0:
        return
    expert = expert.to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    ids = tl.load(ids_ptr + offs_m)
    live = ids < num_copies
    if GATHER:
        a_rows = (ids // top_k).to(tl.int64)
    else:
        a_rows = offs_m.to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + a_rows[:, None] * stride_am + offs_k[None, :]
    w_ptrs = w_ptr + expert * stride_we + offs_n[None, :].to(tl.int64) * stride_wn + offs_k[:, None]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        if EVEN_K:
            if GATHER:
                a = tl.load(a_ptrs, mask=live[:, None], other=0.0)
            else:
                a = tl.load(a_ptrs)
            if EVEN_N:
                w = tl.load(w_ptrs)
            else:
                w = tl.load(w_ptrs, mask=offs_n[None, :] < N, other=0.0)
        else:
            k_left = K - k * BLOCK_K
            a = tl.load(a_ptrs, mask=live[:, None] & (offs_k[None, :] < k_left), other=0.0)
            w = tl.load(w_ptrs, mask=(offs_k[:, None] < k_left) & (offs_n[None, :] < N), other=0.0)
        if UPCAST:  # the interpreter only (see `layer`): float32 copies, the same exact products
            a = a.to(tl.float32)
            w = w.to(tl.float32)
        acc = tl.dot(a, w, acc, input_precision=PRECISION)
        a_ptrs += BLOCK_K
        w_ptrs += BLOCK_K
    acc = _epilogue(acc, b_ptr, expert, stride_be, offs_n, N, ids, live, gate_ptr, RELU, GATE)
    if SCATTER:
        c_rows = ids.to(tl.int64)
        c_mask = live[:, None] & (offs_n[None, :] < N)
    else:
        c_rows = offs_m.to(tl.int64)
        c_mask = offs_n[None, :] < N
    tl.store(c_ptr + c_rows[:, None] * stride_cm + offs_n[None, :], acc.to(c_ptr.dtype.element_ty), mask=c_mask)


@triton.jit
def _layer_tma_kernel(a_ptr, a_desc, w_desc, b_ptr, c_ptr, c_desc, ids_ptr, block_expert_ptr, gate_ptr,
                      num_copies, N, K, num_blocks, top_k, stride_am, stride_be, stride_cm,
                      GATHER: tl.constexpr, SCATTER: tl.constexpr, RELU: tl.constexpr, GATE: tl.constexpr,
                      PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    """`_layer_kernel` with tensor-memory-accelerator copies (Hopper on): weight tiles always, activation
    tiles where they are contiguous in the padded order (not gathered), and the padded output; N % BLOCK_N == 0
    (a weight tile never crosses into the next expert's rows). Out-of-range K columns read as zeros."""
    pid_m, pid_n = _block_of(tl.program_id(0), N, num_blocks, BLOCK_N, GROUP_M)
    expert = tl.load(block_expert_ptr + pid_m)
    if expert < 0:
        return
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    ids = tl.load(ids_ptr + offs_m)
    live = ids < num_copies
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + (ids // top_k).to(tl.int64)[:, None] * stride_am + offs_k[None, :]
    w_row = expert * N + pid_n * BLOCK_N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        if GATHER:
            a = tl.load(a_ptrs, mask=live[:, None] & (offs_k[None, :] < K - k * BLOCK_K), other=0.0)
            a_ptrs += BLOCK_K
        else:
            a = a_desc.load([pid_m * BLOCK_M, k * BLOCK_K])
        w = w_desc.load([w_row, k * BLOCK_K])
        if UPCAST:
            a = a.to(tl.float32)
            w = w.to(tl.float32)
        acc = tl.dot(a, w.T, acc, input_precision=PRECISION)
    acc = _epilogue(acc, b_ptr, expert, stride_be, offs_n, N, ids, live, gate_ptr, RELU, GATE)
    if SCATTER:
        c_mask = live[:, None] & (offs_n[None, :] < N)
        tl.store(c_ptr + ids.to(tl.int64)[:, None] * stride_cm + offs_n[None, :], acc.to(c_ptr.dtype.element_ty),
                 mask=c_mask)
    else:
        c_desc.store([pid_m * BLOCK_M, pid_n * BLOCK_N], acc.to(c_desc.dtype))


def _pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def align(flat_ids: Tensor, num_experts: int, block_m: int) -> tuple[Tensor, Tensor]:
    """(copy ids in padded expert order [blocks * block_m] int32, expert per block [blocks] int32, -1 unused).

    `flat_ids`: the expert of every copy, [num_copies] int32/int64, on the device. No host sync.
    """
    num_copies = flat_ids.numel()
    blocks = max_blocks(num_copies, num_experts, block_m)
    device = flat_ids.device
    sorted_ids = torch.empty(blocks * block_m, dtype=torch.int32, device=device)
    block_expert = torch.empty(blocks, dtype=torch.int32, device=device)
    tallies = torch.zeros(2, num_experts, dtype=torch.int32, device=device)  # counts, cursors
    experts = _pow2(num_experts)
    block = max(64, min(1024, 16384 // experts))
    _count_kernel[(triton.cdiv(blocks * block_m, block),)](flat_ids, tallies[0], sorted_ids, num_copies,
                                                            blocks * block_m, BLOCK=block)
    _place_kernel[(triton.cdiv(num_copies, block),)](flat_ids, tallies[0], tallies[1], sorted_ids, block_expert,
                                                      num_copies, num_experts, blocks, BLOCK=block, BLOCK_M=block_m,
                                                      EXPERTS=experts, BLOCK_CHUNK=max(16, min(256, 8192 // experts)))
    return sorted_ids, block_expert


def tma_supported() -> str | None:
    """Why the TMA variant cannot be built here (this Triton has no host tensor descriptors), or None."""
    try:
        importlib.import_module("triton.tools.tensor_descriptor")
    except ImportError as exc:
        return f"Triton {triton.__version__} has no host tensor descriptors ({exc})"
    return None


def _descriptor(t: Tensor, block: list[int]) -> Any:
    cls = importlib.import_module("triton.tools.tensor_descriptor").TensorDescriptor
    return cls(t, list(t.shape), list(t.stride()), block)


def layer(a: Tensor, w: Tensor, b: Tensor, out: Tensor, sorted_ids: Tensor, block_expert: Tensor, *,
          num_copies: int, top_k: int, gather: bool, scatter: bool, relu: bool, gate: Tensor | None,
          precision: str, block_m: int, block_n: int, block_k: int, group_m: int, num_warps: int,
          num_stages: int, tma: bool = False) -> Any:
    """Launch one layer: `a` [rows, K] (input rows if `gather`, else padded order), `w` [E, N, K], `b` [E, N],
    into `out` ([num_copies, N] if `scatter`, else padded order [blocks * block_m, N]). Returns what Triton's
    launch returns (the compiled kernel on a GPU: registers, spills, shared memory for diagnostics)."""
    n_out, k_in = w.shape[1], w.shape[2]
    if a.stride(1) != 1 or w.stride(2) != 1 or out.stride(1) != 1 or b.stride(1) != 1:
        raise ValueError("the fused layer needs row-major activations and [E, out, in] weights with unit inner stride")
    blocks = block_expert.numel()
    # Triton's interpreter multiplies 16-bit floats in tl.dot as their raw bits (3.9's create_dot):
    # there it multiplies float32 copies, whose products are the same exact ones; compiled code never upcasts
    upcast = a.device.type == "cpu" and a.element_size() < 4
    grid = (blocks * triton.cdiv(n_out, block_n),)
    if tma:
        if n_out % block_n:
            raise ValueError(f"the TMA layer needs N ({n_out}) to be a multiple of BLOCK_N ({block_n})")
        w_desc = _descriptor(w.view(-1, k_in), [block_n, block_k])
        a_desc = None if gather else _descriptor(a, [block_m, block_k])
        c_desc = None if scatter else _descriptor(out, [block_m, block_n])
        return _layer_tma_kernel[grid](a, a_desc, w_desc, b, out, c_desc, sorted_ids, block_expert,
                                       gate if gate is not None else b, num_copies, n_out, k_in, blocks, top_k,
                                       a.stride(0), b.stride(0), out.stride(0),
                                       GATHER=gather, SCATTER=scatter, RELU=relu, GATE=gate is not None,
                                       PRECISION=precision, UPCAST=upcast, BLOCK_M=block_m, BLOCK_N=block_n,
                                       BLOCK_K=block_k, GROUP_M=group_m, num_warps=num_warps, num_stages=num_stages)
    return _layer_kernel[grid](a, w, b, out, sorted_ids, block_expert, gate if gate is not None else b,
                               num_copies, n_out, k_in, blocks, top_k,
                               a.stride(0), w.stride(0), w.stride(1), b.stride(0), out.stride(0),
                               GATHER=gather, SCATTER=scatter, RELU=relu, GATE=gate is not None,
                               EVEN_K=k_in % block_k == 0, EVEN_N=n_out % block_n == 0, PRECISION=precision,
                               UPCAST=upcast, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_M=group_m,
                               num_warps=num_warps, num_stages=num_stages)


def version() -> str:
    """The Triton version, for the record."""
    return str(triton.__version__)
