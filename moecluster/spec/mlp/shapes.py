"""Shapes and parameter accounting of the seed's MLP dense and MoE models (pure Python).

The seed (neuralwatt/moe_energy_evaluation) builds every expert and the dense baseline as
`Linear(in, h) ReLU [Linear(h, h) ReLU]*(L-1) Linear(h, out)`, and routes with a
`Linear(in, E)` with bias, top-k on its logits. This module is the one place that counts
their parameters, FLOPs and bytes; everything else (CLI, sweep, roofline) calls it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from moecluster.spec.records import ParamCounts
from moecluster.spec.twins import MATCH_TOLERANCE, fit_width

INPUT_DIM = 784
OUTPUT_DIM = 10
ALIGNMENTS = (128, 64, 32, 16, 8, 4, 2, 1)  # tensor-core friendly first

MatchMode = Literal["total", "active", "seed"]
IMPLS = ("naive", "sorted", "grouped")  # MoE implementations (workloads.mlp.models)
# the implementations that sync with the host every batch (the seed's code), so no CUDA graph can hold them
HOST_SYNC = {
    "naive": "naive syncs with the host (mask.any() per expert)",
    "sorted": "sorted syncs with the host (.tolist() of the per-expert counts)",
}
DTYPE_NAMES = ("float32", "bfloat16", "float16")


class ShapeError(ValueError):
    """An impossible model shape; the message names the offending field."""


def mlp_params(input_dim: int, output_dim: int, hidden_dim: int, num_layers: int) -> int:
    """Weights and biases of `num_layers` hidden layers of width `hidden_dim` plus the output layer."""
    return (
        input_dim * hidden_dim + hidden_dim
        + (num_layers - 1) * (hidden_dim * hidden_dim + hidden_dim)
        + hidden_dim * output_dim + output_dim
    )


def mlp_layer_dims(input_dim: int, output_dim: int, hidden_dim: int, num_layers: int) -> list[tuple[int, int]]:
    """(in, out) of every Linear layer, in order."""
    dims = [(input_dim, hidden_dim)] + [(hidden_dim, hidden_dim)] * (num_layers - 1)
    return dims + [(hidden_dim, output_dim)]


def _positive(**fields: int) -> None:
    for name, value in fields.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ShapeError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class DenseShape:
    hidden_dim: int
    num_layers: int
    input_dim: int = INPUT_DIM
    output_dim: int = OUTPUT_DIM

    def __post_init__(self) -> None:
        _positive(hidden_dim=self.hidden_dim, num_layers=self.num_layers,
                  input_dim=self.input_dim, output_dim=self.output_dim)

    def layer_dims(self) -> list[tuple[int, int]]:
        return mlp_layer_dims(self.input_dim, self.output_dim, self.hidden_dim, self.num_layers)

    def params(self) -> ParamCounts:
        total = mlp_params(self.input_dim, self.output_dim, self.hidden_dim, self.num_layers)
        return ParamCounts(total=total, active_per_token=total)

    def flops_per_item(self) -> float:
        """Multiply-adds of every layer, times two (bias and ReLU are noise)."""
        return 2.0 * sum(i * o for i, o in self.layer_dims())

    def bytes_per_batch(self, batch_size: int, dtype_bytes: int) -> float:
        """Fewest bytes a batch must move: every weight once, the input and output once."""
        return dtype_bytes * (self.params().total + batch_size * (self.input_dim + self.output_dim))

    def alignment(self) -> int:
        return next(a for a in ALIGNMENTS if self.hidden_dim % a == 0)

    def as_model(self) -> dict[str, int]:
        return {"input_dim": self.input_dim, "output_dim": self.output_dim,
                "hidden_dim": self.hidden_dim, "num_layers": self.num_layers}


@dataclass(frozen=True)
class MoEShape:
    num_experts: int
    expert_hidden_dim: int
    expert_num_layers: int
    top_k: int
    input_dim: int = INPUT_DIM
    output_dim: int = OUTPUT_DIM

    def __post_init__(self) -> None:
        _positive(num_experts=self.num_experts, expert_hidden_dim=self.expert_hidden_dim,
                  expert_num_layers=self.expert_num_layers, top_k=self.top_k,
                  input_dim=self.input_dim, output_dim=self.output_dim)
        if self.top_k > self.num_experts:
            raise ShapeError(f"top_k ({self.top_k}) is larger than num_experts ({self.num_experts})")

    @property
    def expert(self) -> DenseShape:
        return DenseShape(self.expert_hidden_dim, self.expert_num_layers, self.input_dim, self.output_dim)

    def router_params(self) -> int:
        return self.input_dim * self.num_experts + self.num_experts

    def params(self) -> ParamCounts:
        one = self.expert.params().total
        router = self.router_params()
        return ParamCounts(total=router + self.num_experts * one,
                           active_per_token=router + self.top_k * one,
                           router=router, experts=self.num_experts * one)

    def flops_per_item(self) -> float:
        return 2.0 * self.input_dim * self.num_experts + self.top_k * self.expert.flops_per_item()

    def bytes_per_batch(self, batch_size: int, dtype_bytes: int, experts_hit: int | None = None) -> float:
        """Router and the weights of every expert that received a token, read once; input and output.

        Without the realised count, assume min(E, batch * k) experts are hit.
        """
        hit = min(self.num_experts, batch_size * self.top_k) if experts_hit is None else experts_hit
        weights = self.router_params() + hit * self.expert.params().total
        return dtype_bytes * (weights + batch_size * (self.input_dim + self.output_dim))

    def as_model(self) -> dict[str, int]:
        return {"input_dim": self.input_dim, "output_dim": self.output_dim,
                "num_experts": self.num_experts, "expert_hidden_dim": self.expert_hidden_dim,
                "expert_num_layers": self.expert_num_layers, "top_k": self.top_k}


PRESETS: dict[str, MoEShape] = {
    "small": MoEShape(num_experts=8, expert_hidden_dim=256, expert_num_layers=3, top_k=2),
    "medium": MoEShape(num_experts=16, expert_hidden_dim=1024, expert_num_layers=4, top_k=4),
    "large": MoEShape(num_experts=20, expert_hidden_dim=2048, expert_num_layers=5, top_k=5),
    "xxl": MoEShape(num_experts=32, expert_hidden_dim=4096, expert_num_layers=6, top_k=8),
}


def preset(name: str) -> MoEShape:
    try:
        return PRESETS[name]
    except KeyError:
        raise ShapeError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})") from None


def seed_width(target: int, num_layers: int, input_dim: int = INPUT_DIM, output_dim: int = OUTPUT_DIM) -> int:
    """The seed's own dense width: the positive root of the parameter quadratic, rounded up."""
    a = num_layers - 1
    b = input_dim + 1 + (num_layers - 1) + output_dim
    c = output_dim - target
    if a == 0:
        return max(1, math.ceil(-c / b))
    return max(1, math.ceil((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)))


def _fit(moe: MoEShape, target: int, layers: int, align: int, tolerance: float) -> int | None:
    """The width, a multiple of `align`, closest to `target` parameters within `tolerance`."""
    return fit_width(lambda w: mlp_params(moe.input_dim, moe.output_dim, w, layers),
                     seed_width(target, layers, moe.input_dim, moe.output_dim), target, align, tolerance)


def match_dense(moe: MoEShape, mode: MatchMode = "total", tolerance: float = MATCH_TOLERANCE) -> DenseShape:
    """The dense twin of `moe`.

    `seed` reproduces the seed's width exactly (as many layers as one expert; often an odd
    width, e.g. 23,539 for xxl). `total` and `active` match total or active-per-token
    parameters within `tolerance` and prefer, in this order: the expert's depth with a
    width that is a multiple of 8 or more (largest first); the nearest other depth with a
    multiple of 8 or more; the expert's depth with any width. A multiple of 8 is the least a
    16-bit GEMM needs for its fast kernels: on the H100, bf16 widths of 4,468 and 4,700
    (multiples of 4) ran at ~30 % of peak against 85-91 % for 8- and 16-aligned ones. Tiny
    models (`small` by active parameters) can only be matched at another depth: the twin says so.
    """
    layers = moe.expert_num_layers
    p = moe.params()
    if mode == "seed":
        return DenseShape(seed_width(p.total, layers, moe.input_dim, moe.output_dim), layers,
                          moe.input_dim, moe.output_dim)
    if mode not in ("total", "active"):
        raise ShapeError(f"unknown match mode {mode!r} (total, active, seed)")
    target = p.total if mode == "total" else p.active_per_token
    other_depths = sorted((d for d in range(1, 2 * layers + 3) if d != layers), key=lambda d: (abs(d - layers), d))
    passes = [(layers, [a for a in ALIGNMENTS if a >= 8])]
    passes += [(d, [a for a in ALIGNMENTS if a >= 8]) for d in other_depths]
    passes += [(layers, [a for a in ALIGNMENTS if a < 8])]
    passes += [(d, [a for a in ALIGNMENTS if a < 8]) for d in other_depths]
    for depth, aligns in passes:
        for align in aligns:
            width = _fit(moe, target, depth, align, tolerance)
            if width is not None:
                return DenseShape(width, depth, moe.input_dim, moe.output_dim)
    raise ShapeError(f"no dense MLP matches {target} parameters within {tolerance:.1%}")
