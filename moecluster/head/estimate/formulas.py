"""Analytic views of an MoE: parameters (seed 003), roofline, critical batch, EP traffic, dense equivalent (seed 004).

Assumptions, kept simple and stated once:
- FLOPs per token = 2 × active parameters (one multiply-add per weight used; attention over
  the context is left out: short-context decoding, or the MLP workload, which has none).
- Bytes per token = the weights a batch reads once, over the batch: shared weights plus the
  experts the batch hits, `E·(1 − (1 − k/E)^B)` of them per layer when routing is uniform.
  Activations and KV cache are left out (they are small at short context).
- Roofline time = max(FLOPs / peak FLOP/s, bytes / memory bandwidth); the energy at the
  roofline = that time × the board's TDP (a saturated GPU draws about its power limit).
- Critical batch size: where a matmul's FLOPs per weight byte equal the GPU's ridge point.
  A batch of B tokens does 2·B FLOPs per weight, i.e. 2·B / bytes_per_param per byte, so
  `B* = (peak FLOP/s / bandwidth) × bytes_per_param / 2` (≈ 295 for an H100 in BF16: seed
  004's "around 300"). An MoE expert only sees B·k/E of the batch's tokens, so the MoE
  reaches the ridge at `B* × E / k`.
- All-to-all bytes per token at expert-parallel degree d: every MoE layer sends the token to
  its k experts and gets k results back; with experts spread evenly, (d−1)/d of them are on
  another GPU: `k × (dispatch + combine width) × activation bytes × MoE layers × (d−1)/d`.
- Dense-equivalent size for fast short-context decoding (seed 004):
  `total / (E^0.44 / k^0.63)` (about 90B for Mixtral 8x22B).
"""
from __future__ import annotations

from dataclasses import dataclass

from moecluster.head.estimate.gpus import GpuSpec
from moecluster.head.estimate.models import ModelShape

DTYPE_BYTES = {"float32": 4, "tf32": 4, "bfloat16": 2, "float16": 2, "float8": 1}
DENSE_EQ_EXPERTS_EXP = 0.44
DENSE_EQ_ACTIVE_EXP = 0.63


def dtype_bytes(dtype: str) -> int:
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise KeyError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPE_BYTES)})") from None


def dense_equivalent(total_params: float, num_experts: int, top_k: int) -> float:
    """Seed 004's dense-equivalent size for fast short-context decoding."""
    return total_params / (num_experts**DENSE_EQ_EXPERTS_EXP / top_k**DENSE_EQ_ACTIVE_EXP)


def experts_hit(num_experts: int, top_k: int, tokens: int) -> float:
    """Expected distinct experts one layer uses for `tokens` tokens under uniform routing."""
    if num_experts == top_k:
        return float(num_experts)
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** tokens)


def flops_per_token(m: ModelShape) -> float:
    return 2.0 * m.active_params


def bytes_per_token(m: ModelShape, batch_size: int, bytes_per_param: int) -> float:
    hit = experts_hit(m.num_experts, m.top_k, batch_size) if m.kind == "moe" else 1.0
    return bytes_per_param * (m.shared_params + hit * m.expert_params) / batch_size


def critical_batch(gpu: GpuSpec, dtype: str) -> float:
    """Tokens per batch at which a dense matmul in `dtype` turns compute-bound on `gpu`."""
    return gpu.ridge_flops_per_byte(dtype) * dtype_bytes(dtype) / 2.0


def moe_critical_batch(m: ModelShape, gpu: GpuSpec, dtype: str) -> float:
    return critical_batch(gpu, dtype) * m.num_experts / m.top_k


def all_to_all_bytes_per_token(m: ModelShape, degree: int, activation_bytes: int) -> float | None:
    """Bytes one token sends to and receives from experts on other GPUs (0 at degree 1; None
    when the shape lacks the widths or the MoE layer count)."""
    if degree < 1:
        raise ValueError(f"expert-parallel degree must be >= 1, got {degree}")
    if m.kind != "moe" or degree == 1:
        return 0.0
    if not (m.moe_layers and m.dispatch_dim and m.combine_dim):
        return None
    return m.top_k * (m.dispatch_dim + m.combine_dim) * activation_bytes * m.moe_layers * (degree - 1) / degree


@dataclass(frozen=True)
class Roofline:
    """Time and energy per token at the hardware's limit."""

    flops_per_token: float
    bytes_per_token: float
    compute_s: float
    memory_s: float

    @property
    def time_s(self) -> float:
        return max(self.compute_s, self.memory_s)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s >= self.memory_s else "memory"

    def energy_j(self, power_w: float) -> float:
        return self.time_s * power_w


def roofline(m: ModelShape, gpu: GpuSpec, dtype: str, batch_size: int, gpus: int = 1) -> Roofline:
    """Per-token roofline of `m` on `gpus` GPUs of kind `gpu` (work split evenly)."""
    f = flops_per_token(m)
    b = bytes_per_token(m, batch_size, dtype_bytes(dtype))
    return Roofline(f, b, f / (gpu.peak_flops(dtype) * gpus), b / (gpu.memory_bytes_per_s * gpus))


def comm_share(m: ModelShape, gpu: GpuSpec, dtype: str, batch_size: int, degree: int,
               latency_s: float = 0.0) -> float:
    """Share of the time spent in all-to-all at degree `degree`, with the compute at its roofline.

    Bandwidth term: the token's all-to-all bytes over the GPUs' aggregate link bandwidth;
    `latency_s` per all-to-all (two per MoE layer per batch) adds the fixed cost.
    """
    if degree == 1 or m.kind != "moe":
        return 0.0
    a2a = all_to_all_bytes_per_token(m, degree, dtype_bytes(dtype))
    if a2a is None:
        raise ValueError(f"{m.name}: all-to-all traffic needs the dispatch/combine widths and MoE layers")
    t_comm = (a2a / (gpu.link_bytes_per_s * degree)
              + 2 * m.moe_layers * latency_s / batch_size)
    t_compute = roofline(m, gpu, dtype, batch_size, degree).time_s
    return t_comm / (t_comm + t_compute)
