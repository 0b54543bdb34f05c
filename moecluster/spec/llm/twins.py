"""The dense twins of an LLM MoE, matched by total or by active parameters.

A twin keeps everything of the MoE but its FFN: the same vocabulary, width, depth and attention
(of the MoE's dense sibling family: Mixtral -> Mistral, Qwen2-MoE -> Qwen2, Qwen3-MoE -> Qwen3),
and one SwiGLU FFN per layer whose width is sized, through the same `twins.fit_width` as the MLP
twins, so that its parameters (`LlmShape.params`, the one accounting) match the target within
0.1 %, preferring widths that are multiples of 256, then 128, then smaller powers of two. A shape
whose twin cannot come within 0.1 % at any width (tiny models) gets the nearest width, within 1 %, and where
even that fails the twin is refused, naming the target.
"""
from __future__ import annotations

from dataclasses import replace

from moecluster.spec.mlp.shapes import ShapeError
from moecluster.spec.twins import MATCH_TOLERANCE, fit_width
from moecluster.spec.llm.shapes import LlmShape

ALIGNMENTS = (256, 128, 64, 32, 16, 8, 4, 2, 1)  # tensor-core friendly first
LOOSE_TOLERANCE = 1e-2  # where no width comes within MATCH_TOLERANCE
MATCH_MODES = ("total", "active")


def twin_shape(moe: LlmShape, width: int) -> LlmShape:
    """The MoE's dense sibling with an FFN of `width`."""
    return replace(moe, architecture=moe.family.twin, intermediate_size=width, num_experts=0, top_k=0,
                   shared_intermediate_size=0)


def match_dense(moe: LlmShape, mode: str = "total", tolerance: float = MATCH_TOLERANCE) -> LlmShape:
    """The dense twin of `moe` matched by its `total` or `active` parameters (see the module's doc)."""
    if not moe.is_moe:
        raise ShapeError(f"{moe.architecture} is dense: only an MoE has dense twins")
    if mode not in MATCH_MODES:
        raise ShapeError(f"unknown match mode {mode!r} for an llm twin ({', '.join(MATCH_MODES)}; 'seed' is the MLP"
                         " seed's own width)")
    p = moe.params()
    target = p.total if mode == "total" else p.active_per_token
    one = twin_shape(moe, 1)
    per_width = 3 * moe.hidden_size * moe.num_layers
    base = one.params().total - per_width

    def params_at(width: int) -> int:
        return base + per_width * width

    exact = (target - base) / per_width
    if exact < 1:
        raise ShapeError(f"no dense twin matches {target:,} {mode} parameters: attention and embeddings alone"
                         f" hold {base:,}")
    for align in ALIGNMENTS:
        width = fit_width(params_at, exact, target, align, tolerance)
        if width is not None:
            return twin_shape(moe, width)
    width = fit_width(params_at, exact, target, 1, LOOSE_TOLERANCE)  # the nearest width
    if width is not None:
        return twin_shape(moe, width)
    raise ShapeError(f"no dense twin FFN width matches {target:,} {mode} parameters within {LOOSE_TOLERANCE:.0%}")


def width_alignment(width: int) -> int:
    """The largest of `ALIGNMENTS` that divides `width` (for the dry-run tables)."""
    return next(a for a in ALIGNMENTS if width % a == 0)
