"""Sizes between two measured ones, where a break-even was interpolated across a wide gap.

The seed study's presets are 6–24× apart in total parameters, so a break-even between two of them
is a straight line in log-size across an order of magnitude with nothing measured on it. This
plans what to measure instead: geometric midpoints that split the gap into steps of at most
`MAX_GAP`, each as an explicit MLP MoE shape (the sweep's `models:` entry, so the existing
preset/shape machinery builds it and its twins). A midpoint's experts, depth and top-k are
interpolated geometrically between the two bracketing shapes and rounded; its expert width is then
solved for the target total (`MoEShape.params`) and rounded to a multiple of `WIDTH_STEP` (GEMM
friendly), so its total lands near, not on, the target; the shape records what it is.

`refined_models` reads the break-evens of a report (`BreakEven.bracket`), `refined_sweep` adds the
planned models to a run's resolved sweep: a new run, submitted as any other (`moecluster refine`).
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from moecluster.spec.mlp.shapes import MoEShape
from moecluster.report.aggregate.breakeven import MAX_GAP, BreakEven
from moecluster.workloads.registry import workload

WIDTH_STEP = 64  # a planned expert width is a multiple of this (tensor-core and twin-width friendly)


@dataclass(frozen=True)
class PlannedModel:
    """A size to measure between two measured ones: its name in the sweep and its shape."""

    name: str
    shape: MoEShape
    between: tuple[str, str]  # the bracketing models' names

    @property
    def total_params(self) -> int:
        return self.shape.params().total

    def entry(self) -> dict[str, Any]:
        """The sweep's `models:` entry for it."""
        return {"name": self.name, **self.shape.as_model()}


def _geo(a: int, b: int, t: float) -> float:
    return float(a ** (1 - t) * b ** t)


def _width_for(total: float, experts: int, layers: int, top_k: int, lo: MoEShape) -> int:
    """The expert width (a multiple of `WIDTH_STEP`) whose shape has about `total` parameters."""
    probe = MoEShape(experts, WIDTH_STEP, layers, top_k, lo.input_dim, lo.output_dim)
    router = probe.router_params()
    # total = router + E (in h + h + (L - 1)(h² + h) + h out + out): a quadratic in h
    a = experts * (layers - 1)
    b = experts * (lo.input_dim + 1 + (layers - 1) + lo.output_dim)
    c = router + experts * lo.output_dim - total
    h = -c / b if a == 0 else (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    return max(WIDTH_STEP, round(h / WIDTH_STEP) * WIDTH_STEP)


def fill_shapes(lo: MoEShape, hi: MoEShape, max_gap: float = MAX_GAP) -> list[MoEShape]:
    """Shapes at the geometric midpoints that split lo – hi (total parameters) into steps of at most
    `max_gap`, in ascending size; none where the two are no further apart than that."""
    t_lo, t_hi = lo.params().total, hi.params().total
    if t_hi <= t_lo * max_gap:
        return []
    steps = math.ceil(math.log(t_hi / t_lo) / math.log(max_gap))
    out: list[MoEShape] = []
    for i in range(1, steps):
        t = i / steps
        experts = max(1, round(_geo(lo.num_experts, hi.num_experts, t)))
        layers = max(1, round(_geo(lo.expert_num_layers, hi.expert_num_layers, t)))
        top_k = min(experts, max(1, round(_geo(lo.top_k, hi.top_k, t))))
        width = _width_for(t_lo * (t_hi / t_lo) ** t, experts, layers, top_k, lo)
        shape = MoEShape(experts, width, layers, top_k, lo.input_dim, lo.output_dim)
        if t_lo < shape.params().total < t_hi and shape not in out:
            out.append(shape)
    return sorted(out, key=lambda s: s.params().total)


def _name(text: str) -> str:
    """`text` as a sweep model name (`schema.NAME_PATTERN`)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "size"


def refined_models(break_evens: Iterable[BreakEven], max_gap: float = MAX_GAP) -> list[PlannedModel]:
    """The models to measure between the bracketing sizes of every break-even interpolated across more than
    `max_gap` (MLP series only; each gap once)."""
    planned: dict[tuple[int, int], list[PlannedModel]] = {}
    for b in break_evens:
        pair = b.bracket
        if pair is None or not workload(b.key.workload).refines_break_even or (b.gap_factor or 0.0) <= max_gap:
            continue
        lo, hi = pair
        key = (lo.total_params, hi.total_params)
        if key in planned or not lo.shape or not hi.shape:
            continue
        shapes = fill_shapes(MoEShape(**dict(lo.shape)), MoEShape(**dict(hi.shape)), max_gap)
        planned[key] = [PlannedModel(_name(f"{lo.name}-{hi.name}-{i}"), s, (lo.name, hi.name))
                        for i, s in enumerate(shapes, 1)]
    return [m for key in sorted(planned) for m in planned[key]]


def refined_sweep(resolved: Mapping[str, Any], planned: Iterable[PlannedModel]) -> dict[str, Any]:
    """`resolved` (a run's `sweep.yaml`) with the planned models added to its own, named `<name>-refined`."""
    doc = dict(resolved)
    doc["name"] = _name(f"{doc.get('name', 'sweep')}-refined")
    doc["models"] = [*doc.get("models", []), *(m.entry() for m in planned)]
    return doc
