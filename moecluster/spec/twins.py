"""Sizing a dense twin: the width, a multiple of a hardware-friendly alignment, whose parameter
count is closest to a target (an MoE's total or active parameters).

Every workload sizes its twins with this one function: the seed's MLP twins vary their hidden
width (`mlp.shapes.match_dense`), the transformer twins their FFN width (`llm.twins`). Each
passes how its parameters grow with the width (`params_at`) and the real-valued width that
would hit the target exactly; the function tries the aligned widths around it.
"""
from __future__ import annotations

from collections.abc import Callable

MATCH_TOLERANCE = 1e-3  # a matched dense model is within 0.1 % of its target


def fit_width(params_at: Callable[[int], int], exact: float, target: int, align: int,
              tolerance: float = MATCH_TOLERANCE) -> int | None:
    """The positive width, a multiple of `align`, whose `params_at(width)` is closest to `target`
    within `tolerance` (relative), or None where no such width is that close.

    `exact` is where the target lies (the root of `params_at(w) = target` over the reals); the
    multiples of `align` just below and above it are the candidates.
    """
    lo = max(align, (int(exact) // align) * align)
    candidates = sorted({lo - align, lo, lo + align} - {0})

    def err(w: int) -> int:
        return abs(params_at(w) - target)

    fits = [w for w in candidates if w > 0 and err(w) <= tolerance * target]
    return min(fits, key=err) if fits else None
