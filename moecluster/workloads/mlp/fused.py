"""The fused MoE path: permutation and every expert layer as Triton kernels, no host sync.

Per forward: the routing (`route_top_k`, shared with every other path) gives each token's k
experts and gates; `fused_kernels.align` groups the token copies by expert, padded to the
tiles' BLOCK_M; one kernel per layer runs every expert's GEMM with bias and ReLU in its
epilogue, the first reading the input rows through the permutation (no gathered copy), the last
multiplying by the gate and writing each copy to its own row; the combine is a sum over the k
copies of a token. Nothing reads a device value on the host, so a forward can be captured in a
CUDA graph once its kernels are compiled.

Tiles are chosen by measurement at prepare time (`tune`, called from the forms machinery,
outside every measurement window) and cached per process (`fused_tiles.TileCache`).

Precision: float32 operands multiply exactly ("ieee", the default: no TF32, as everywhere in
moecluster); "tf32" and "tf32x3" are explicit options, labelled in the record, never chosen
by measurement (they compute another function: see `precision_note`).
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from types import ModuleType

import torch
from torch import Tensor

from moecluster.workloads.forms import Timer
from moecluster.workloads.timing import time_call_s
from moecluster.workloads.mlp.fused_tiles import Family, FusedTiles, Load, Tile, Trial, max_blocks, search

PRECISIONS: dict[str, str] = {
    "ieee": "fp32 products exact (no TF32)",
    "tf32": "TF32 tensor cores (inputs rounded to 10-bit mantissas): another function, labelled",
    "tf32x3": "three TF32 products per fp32 product (about fp32 accuracy): labelled",
}
DEFAULT_PRECISION = "ieee"
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
INTERPRETER = "TRITON_INTERPRET"
MIN_CAPABILITY = (8, 0)  # tensor-core tl.dot (mma) from Ampere on

Layers = Sequence[tuple[Tensor, Tensor]]


def kernels() -> ModuleType:
    """The Triton kernels (imports Triton; ImportError where it is not installed)."""
    return importlib.import_module(f"{__package__}.fused_kernels")


def unavailable(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why the fused path cannot run on `device` in `dtype`, or None where it can."""
    if dtype not in DTYPES:
        return f"the fused Triton kernels take {', '.join(str(d) for d in DTYPES)}, not {dtype}"
    if device.type == "cuda":
        capability = torch.cuda.get_device_capability(device)
        if capability < MIN_CAPABILITY:
            return f"the fused Triton kernels need compute capability >= 8.0, {device} has {capability}"
    elif not (device.type == "cpu" and os.environ.get(INTERPRETER) == "1"):
        return (f"Triton compiles for CUDA GPUs, not {device.type} (on a CPU only its interpreter runs the"
                f" kernels, with {INTERPRETER}=1: a correctness tool)")
    try:
        kernels()
    except ImportError as exc:
        return f"triton is not installed ({exc})"
    except (RuntimeError, OSError) as exc:  # installed but broken (a driver or toolchain it cannot find)
        return f"triton cannot be imported: {type(exc).__name__}: {str(exc).strip()[:200]}"
    return None


def tma_available(device: torch.device) -> bool:
    """Whether TMA tiles are worth trying: Hopper or later (or the interpreter), and a Triton with host
    tensor descriptors."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (9, 0):
        return False
    return kernels().tma_supported() is None


def precision_for(dtype: torch.dtype, precision: str) -> str:
    """tl.dot's input precision for this dtype: the asked one for float32, irrelevant (ieee) otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"fused precision {precision!r} unknown ({', '.join(PRECISIONS)})")
    return precision if dtype == torch.float32 else DEFAULT_PRECISION


def precision_note(dtype: torch.dtype, precision: str) -> str | None:
    """The record's label for float32's precision; None for 16-bit dtypes (always tensor cores)."""
    return PRECISIONS[precision_for(dtype, precision)] if dtype == torch.float32 else None


def family(layers: Layers, device: torch.device, dtype: torch.dtype, precision: str) -> Family:
    dims = tuple((int(w.shape[2]), int(w.shape[1])) for w, _ in layers)
    return Family(device=str(device), dtype=str(dtype).removeprefix("torch."),
                  precision=precision_for(dtype, precision), layer_dims=dims)


def check_layers(layers: Layers, x: Tensor) -> None:
    """Weights `[E, out, in]` with unit inner stride, chained widths, the input's dtype and device."""
    width = x.shape[1]
    for i, (w, b) in enumerate(layers):
        if w.dim() != 3 or w.shape[2] != width or b.shape != w.shape[:2]:
            raise ValueError(f"fused layer {i}: weight {tuple(w.shape)} / bias {tuple(b.shape)}"
                             f" do not take {width} inputs")
        if w.dtype != x.dtype or w.device != x.device:
            raise ValueError(f"fused layer {i}: weight is {w.dtype} on {w.device}, input {x.dtype} on {x.device}")
        width = w.shape[1]


def forward(layers: Layers, x: Tensor, flat_ids: Tensor, gates: Tensor | None, top_k: int, tiles: FusedTiles,
            precision: str, out_dtype: torch.dtype) -> Tensor:
    """Every expert's layers on every token copy: `[num_copies, out]` in `out_dtype`, row `c` for copy `c`.

    `x` [B, in]: one row per token; copy `c` is token `c // top_k` sent to expert `flat_ids[c]`;
    `gates` ([num_copies], optional) scale each copy's output (the combine's weights).
    """
    k = kernels()
    num_copies = flat_ids.numel()
    num_experts = layers[0][0].shape[0]
    x = x.contiguous()
    if num_copies == 0:
        return x.new_zeros(0, layers[-1][0].shape[1], dtype=out_dtype)
    sorted_ids, block_expert = k.align(flat_ids, num_experts, tiles.block_m)
    dot_precision = precision_for(x.dtype, precision)
    h = x
    last = len(layers) - 1
    for i, (w, b) in enumerate(layers):
        tile = tiles.for_layer(i, len(layers))
        rows = num_copies if i == last else sorted_ids.numel()
        out = torch.empty(rows, w.shape[1], dtype=out_dtype if i == last else x.dtype, device=x.device)
        k.layer(h, w, b, out, sorted_ids, block_expert, num_copies=num_copies, top_k=top_k, gather=i == 0,
                scatter=i == last, relu=i < last, gate=gates if i == last else None, precision=dot_precision,
                block_m=tiles.block_m, block_n=tile.block_n, block_k=tile.block_k, group_m=tile.group_m,
                num_warps=tile.num_warps, num_stages=tile.num_stages, tma=tile.tma)
        h = out
    return h


def buffer_bytes(num_copies: int, num_experts: int, block_m: int, layers: Layers, element_bytes: int) -> int:
    """Activation memory of a forward: two padded buffers of the widest hidden layer."""
    rows = max_blocks(num_copies, num_experts, block_m) * block_m
    width = max(int(w.shape[1]) for w, _ in layers)
    return 2 * rows * width * element_bytes


def tune(layers: Layers, x: Tensor, flat_ids: Tensor, gates: Tensor, top_k: int, precision: str,
         timer: Timer | None = None) -> tuple[FusedTiles, tuple[Trial, ...]]:
    """Measure the candidate tiles of each layer role on this routing (`fused_tiles.search`).

    Runs at prepare time only; refuses inside a CUDA graph capture (a forward never tunes).
    Each candidate launch runs on the real weights and buffers of this load; its first launch
    compiles it, before the timer's own warm-up, so compile time never counts.
    """
    if x.is_cuda and torch.cuda.is_current_stream_capturing():
        raise RuntimeError("the fused kernel's tiles cannot be tuned inside a CUDA graph capture")
    check_layers(layers, x)
    k = kernels()
    device = x.device
    clock = timer or _layer_timer
    num_copies = flat_ids.numel()
    num_experts = layers[0][0].shape[0]
    dot_precision = precision_for(x.dtype, precision)
    hidden = 1 if len(layers) > 2 else len(layers) - 1
    roles = {"first": 0, "hidden": hidden, "last": len(layers) - 1}
    x = x.contiguous()
    state: dict[tuple[str, int], tuple[Tensor, ...]] = {}

    def buffers(role: str, block_m: int) -> tuple[Tensor, ...]:
        """(sorted ids, expert per block, input, output) of one role at one BLOCK_M, shaped as a forward's
        (a TMA candidate meets the strides it will meet)."""
        if ("align", block_m) not in state:
            state.clear()  # one BLOCK_M's buffers at a time
            state[("align", block_m)] = k.align(flat_ids, num_experts, block_m)
        if (role, block_m) not in state:
            for key in [key for key in state if key[0] != "align"]:
                del state[key]  # one role's activations at a time (the search takes roles in turn)
            sorted_ids, _ = state[("align", block_m)]
            w = layers[roles[role]][0]
            rows = sorted_ids.numel()
            src = x if role == "first" else torch.rand(rows, w.shape[2], device=device).to(x.dtype)
            dst = torch.empty(num_copies, w.shape[1], dtype=torch.float32, device=device) if role == "last" \
                else torch.empty(rows, w.shape[1], dtype=x.dtype, device=device)
            state[(role, block_m)] = (src, dst)
        return (*state[("align", block_m)], *state[(role, block_m)])

    def time_layer(role: str, block_m: int, tile: Tile) -> float:
        sorted_ids, block_expert, src, dst = buffers(role, block_m)
        i = roles[role]
        w, b = layers[i]
        last = i == len(layers) - 1

        def launch() -> None:
            k.layer(src, w, b, dst, sorted_ids, block_expert, num_copies=num_copies, top_k=top_k, gather=i == 0,
                    scatter=last, relu=not last, gate=gates if last else None, precision=dot_precision,
                    block_m=block_m, block_n=tile.block_n, block_k=tile.block_k, group_m=tile.group_m,
                    num_warps=tile.num_warps, num_stages=tile.num_stages, tma=tile.tma)
        launch()  # compiles; a failure raises here and the candidate is recorded as failed
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return clock(launch, device)

    element_bytes = x.element_size()
    load = Load(num_copies=num_copies, num_experts=num_experts)
    try:
        return search(load, [(int(w.shape[2]), int(w.shape[1])) for w, _ in layers], element_bytes, time_layer,
                      tma=tma_available(device))
    finally:
        state.clear()


def _layer_timer(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds per launch: the forms' clock (CUDA events, median), fewer samples and a smaller budget
    (many candidates, and a tile only has to be told from another, not reported)."""
    return time_call_s(fn, device, samples=3, budget_s=0.15)
