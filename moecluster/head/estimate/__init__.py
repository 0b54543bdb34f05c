"""The analytic estimator: seed 003's parameter calculator and seed 004's dense equivalent,
plus a roofline, the critical batch size and expert-parallel traffic, for known models, explicit
shapes and the seed's MLP presets. `estimate()` gathers every figure for one model."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from moecluster.head.estimate.formulas import (
    all_to_all_bytes_per_token, critical_batch, dense_equivalent, dtype_bytes, moe_critical_batch, roofline
)
from moecluster.head.estimate.gpus import GPUS, GpuSpec, gpu, lookup
from moecluster.head.estimate.models import KNOWN, MLP_PRESETS, ModelShape, from_llm, from_mlp, known, mlp_preset

__all__ = ["Estimation", "GPUS", "GpuSpec", "KNOWN", "MLP_PRESETS", "ModelShape", "estimate", "from_llm", "from_mlp",
           "gpu", "known", "lookup", "mlp_preset"]


@dataclass(frozen=True)
class Estimation:
    model: ModelShape
    gpu: str
    dtype: str
    batch_size: int
    expert_parallel: int
    dense_equivalent_params: float
    flops_per_token: float
    bytes_per_token: float
    roofline_s_per_token: float
    roofline_bound: str
    roofline_j_per_token: float
    critical_batch: float
    moe_critical_batch: float
    all_to_all_bytes_per_token: float | None

    def to_dict(self) -> dict[str, Any]:
        m = self.model
        d = asdict(self)
        d["model"] = {**asdict(m), "total_params": m.total_params, "active_params": m.active_params,
                      "active_ratio": m.active_ratio}
        return d


def estimate(m: ModelShape, gpu_spec: GpuSpec, dtype: str = "bfloat16", batch_size: int = 1,
             expert_parallel: int = 1) -> Estimation:
    """Every analytic figure of `m` on `gpu_spec` (one GPU's roofline; EP only adds traffic)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    rl = roofline(m, gpu_spec, dtype, batch_size)
    return Estimation(
        model=m, gpu=gpu_spec.key, dtype=dtype, batch_size=batch_size, expert_parallel=expert_parallel,
        dense_equivalent_params=dense_equivalent(m.total_params, m.num_experts, m.top_k),
        flops_per_token=rl.flops_per_token, bytes_per_token=rl.bytes_per_token,
        roofline_s_per_token=rl.time_s, roofline_bound=rl.bound, roofline_j_per_token=rl.energy_j(gpu_spec.tdp_w),
        critical_batch=critical_batch(gpu_spec, dtype),
        moe_critical_batch=(moe_critical_batch(m, gpu_spec, dtype) if m.kind == "moe"
                            else critical_batch(gpu_spec, dtype)),
        all_to_all_bytes_per_token=all_to_all_bytes_per_token(m, expert_parallel, dtype_bytes(dtype)))
