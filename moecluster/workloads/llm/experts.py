"""moecluster's expert kernels for transformers' MoE blocks, as a switch (`use_experts`).

transformers (v5) keeps an MoE layer's experts as one module with stacked weights,
`gate_up_proj: [E, 2I, H]` and `down_proj: [E, H, I]`, called as `experts(hidden [T, H],
top_k_index [T, k], top_k_weights [T, k]) -> [T, H]`; its router, shared expert and
everything else stay the library's. The switch replaces only that call, by the same function of
the same weights, with one of:

- `grouped_mm`: token copies sorted by expert, per-expert counts and offsets computed on the
  device (no host sync, so a CUDA graph can hold it), one ragged grouped GEMM for gate/up and one
  for down (`torch._grouped_mm`, as the MLP workload's `grouped`); an expert no token chose is
  not read at all;
- `gather`: for tiny batches (at most one token copy per expert), the chosen experts' weights
  gathered per token copy and applied with batched GEMVs; also graph-capturable, but it copies
  the weights it reads, so it only pays where launches, not bytes, dominate.

Which one runs is measured per task (`llm.forms`); the library's own dispatch (transformers'
`experts_implementation`) is what `impl: library` keeps.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GROUPED_MM = "grouped_mm"
GATHER = "gather"
KERNELS = (GROUPED_MM, GATHER)


def _combine(y_sorted: Tensor, order: Tensor, weights: Tensor, tokens: int, dtype: torch.dtype) -> Tensor:
    """Sum each token's k expert outputs weighted by its gates, in float32 (a deterministic sum, as
    transformers' grouped path does, instead of an atomic scatter-add)."""
    y = torch.empty_like(y_sorted)
    y[order] = y_sorted
    weighted = y.float() * weights.reshape(-1, 1).float()
    return weighted.view(tokens, -1, y.shape[-1]).sum(dim=1).to(dtype)


def _grouped_mm(a: Tensor, b: Tensor, offs: Tensor) -> Tensor:
    """`F.grouped_mm` where torch has the public name, else `torch._grouped_mm`."""
    fn = getattr(F, "grouped_mm", None) or torch._grouped_mm
    return fn(a, b, offs=offs)


def _swiglu(experts: Any, gate_up: Tensor) -> Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return experts.act_fn(gate) * up


def grouped_mm_experts(experts: Any, hidden_states: Tensor, top_k_index: Tensor, top_k_weights: Tensor) -> Tensor:
    """Every token copy through its expert with two ragged grouped GEMMs; no host sync."""
    tokens, k = top_k_index.shape
    flat = top_k_index.reshape(-1)
    _, order = torch.sort(flat, stable=True)
    counts = torch.zeros(experts.gate_up_proj.shape[0], dtype=torch.int32, device=flat.device)
    counts.index_add_(0, flat, torch.ones_like(flat, dtype=torch.int32))
    offs = torch.cumsum(counts, 0, dtype=torch.int32)
    h = hidden_states[order // k]
    gate_up = _grouped_mm(h, experts.gate_up_proj.transpose(-2, -1), offs)
    y = _grouped_mm(_swiglu(experts, gate_up), experts.down_proj.transpose(-2, -1), offs)
    return _combine(y, order, top_k_weights, tokens, hidden_states.dtype)


def gather_experts(experts: Any, hidden_states: Tensor, top_k_index: Tensor, top_k_weights: Tensor) -> Tensor:
    """Every token copy through its expert's gathered weights (batched GEMVs); no host sync."""
    tokens, k = top_k_index.shape
    flat = top_k_index.reshape(-1)
    h = hidden_states.repeat_interleave(k, dim=0).unsqueeze(-1)
    gate_up = torch.bmm(experts.gate_up_proj[flat], h).squeeze(-1)
    y = torch.bmm(experts.down_proj[flat], _swiglu(experts, gate_up).unsqueeze(-1)).squeeze(-1)
    order = torch.arange(flat.shape[0], device=flat.device)
    return _combine(y, order, top_k_weights, tokens, hidden_states.dtype)


FUNCTIONS: dict[str, Callable[..., Tensor]] = {GROUPED_MM: grouped_mm_experts, GATHER: gather_experts}


def experts_modules(model: nn.Module) -> list[nn.Module]:
    """The experts module of every MoE layer (`layer.mlp.experts`), in layer order."""
    m: Any = model
    return [layer.mlp.experts for layer in m.model.layers if hasattr(layer.mlp, "experts")]


def layout_problem(experts: nn.Module) -> str | None:
    """Why moecluster's kernels cannot read this experts module (None where they can)."""
    gate_up, down = getattr(experts, "gate_up_proj", None), getattr(experts, "down_proj", None)
    if not isinstance(gate_up, Tensor) or not isinstance(down, Tensor):
        return f"{type(experts).__name__} has no stacked gate_up_proj/down_proj (transformers < 5?)"
    if getattr(experts, "is_transposed", False) or getattr(experts, "has_bias", False):
        return f"{type(experts).__name__} stores transposed or biased expert weights"
    e, two_i, h = gate_up.shape
    if down.shape != (e, h, two_i // 2):
        return (f"{type(experts).__name__}: down_proj {tuple(down.shape)} does not match gate_up_proj"
                f" {tuple(gate_up.shape)}")
    return None


def use_experts(model: nn.Module, kernel: str | None) -> None:
    """Run every MoE layer's experts with moecluster's `kernel` (`grouped_mm`, `gather`), or with the
    library's own dispatch again (`None`). Raises ValueError where the layout is not the stacked one."""
    if kernel is not None and kernel not in FUNCTIONS:
        raise ValueError(f"unknown expert kernel {kernel!r} ({', '.join(KERNELS)})")
    for experts in experts_modules(model):
        if kernel is None:
            vars(experts).pop("forward", None)  # the class's forward again: transformers' dispatch
            continue
        problem = layout_problem(experts)
        if problem:
            raise ValueError(f"moecluster's expert kernels cannot run this model: {problem}")
        vars(experts)["forward"] = partial(FUNCTIONS[kernel], experts)  # on this instance, over the class's forward


def library_experts(model: nn.Module) -> str:
    """What the library's own dispatch runs: transformers' `experts_implementation`."""
    config: Any = getattr(model, "config", None)
    impl = getattr(config, "_experts_implementation", None) if config is not None else None
    return f"transformers experts_implementation={impl or 'eager'}"


def grouped_mm_problem(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why `torch._grouped_mm` cannot run here (tried once on a small case), or None."""
    if not hasattr(torch, "_grouped_mm"):
        return f"torch {torch.__version__} has no _grouped_mm"
    try:
        a = torch.ones(16, 16, device=device, dtype=dtype)
        b = torch.ones(2, 32, 16, device=device, dtype=dtype).transpose(-2, -1)
        _grouped_mm(a, b, torch.tensor([8, 16], device=device, dtype=torch.int32))
    except (RuntimeError, NotImplementedError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"_grouped_mm unavailable for {dtype} on {device.type}: {first[:160]}"
    return None
