"""Measured peaks on the CPU: positive, the best of their cases, named in the source, within the plan's limits."""
from dataclasses import replace
from typing import Any

import pytest
import torch

from moecluster.measure.meters.peaks import (
    CPU_PLAN,
    GPU_PLAN,
    GemmCase,
    PeakCache,
    PeakPlan,
    StreamCase,
    default_plan,
    format_rate,
    measure_peaks,
)

CPU = torch.device("cpu")
LAYOUTS = ("nn", "nt", "tn", "linear")


# small shapes and few calls, so a test measures in a fraction of a second
TINY = PeakPlan(gemms=tuple(GemmCase(48, 32, 64, layout) for layout in LAYOUTS) + (GemmCase(96, 96, 96),),
                streams=(StreamCase(1), StreamCase(2), StreamCase(2, "read")),
                samples=2, sample_s=0.001, min_calls=2, max_call_s=10.0, warmup_s=0.0, memory_budget_bytes=2**30)


def tiny_plan(**overrides: Any) -> PeakPlan:
    return replace(TINY, **overrides)


def test_cpu_peaks_are_positive_and_name_the_winning_cases() -> None:
    plan = tiny_plan()
    peaks = measure_peaks(CPU, torch.float32, plan)
    assert peaks.flops_per_s > 0 and peaks.bytes_per_s > 0
    assert peaks.source.startswith("measured: best of 5 float32 GEMMs: ")
    assert "best of 3 streams: " in peaks.source
    assert any(f": {c.label()} at {format_rate(peaks.flops_per_s, 'FLOP/s')}" in peaks.source for c in plan.gemms)
    assert any(f": {c.label()} at {format_rate(peaks.bytes_per_s, 'B/s')}" in peaks.source for c in plan.streams)
    assert "skipped" not in peaks.source


def test_a_case_over_the_time_limit_is_dropped_with_the_costlier_ones_of_its_layout() -> None:
    plan = tiny_plan(max_call_s=1e-12)  # no real call is this fast: only the cheapest of each kind runs
    peaks = measure_peaks(CPU, torch.float32, plan)
    assert peaks.flops_per_s > 0 and peaks.bytes_per_s > 0
    assert "best of 1 float32 GEMMs" in peaks.source and "best of 1 streams" in peaks.source
    assert "96x96x96 nn (time)" in peaks.source  # costlier nn case dropped once an nn case was too slow
    assert "2 MiB read (time)" in peaks.source


def test_a_case_over_the_memory_budget_is_dropped_but_the_cheapest_always_runs() -> None:
    peaks = measure_peaks(CPU, torch.bfloat16, tiny_plan(memory_budget_bytes=1))
    assert peaks.flops_per_s > 0 and peaks.bytes_per_s > 0
    assert "best of 1 bfloat16 GEMMs" in peaks.source
    assert "96x96x96 nn (memory)" in peaks.source and "2 MiB copy (memory)" in peaks.source


def test_peak_cache_measures_once_per_device_and_dtype() -> None:
    cache = PeakCache(plan=tiny_plan(gemms=(GemmCase(32, 32, 32),), streams=(StreamCase(1),)))
    first = cache.get(CPU, torch.float32)
    assert cache.get(CPU, torch.float32) is first
    assert cache.get(CPU, torch.bfloat16) is not first


def test_case_accounting() -> None:
    assert GemmCase(2, 3, 4).flops == 48.0
    assert GemmCase(2, 3, 4, "linear").bytes_held(2) == (8 + 12 + 6 + 3) * 2
    assert StreamCase(1).bytes_moved == 2 * 2**20 and StreamCase(1, "read").bytes_moved == 2**20
    assert format_rate(712.4e12, "FLOP/s") == "712.4 TFLOP/s" and format_rate(3.0, "B/s") == "3 B/s"


def test_default_plans_stay_inside_their_memory_budget_and_validate() -> None:
    assert default_plan(CPU) is CPU_PLAN and default_plan(torch.device("cuda", 0)) is GPU_PLAN
    assert GPU_PLAN.memory_budget_bytes <= 4 * 2**30
    assert {c.layout for c in GPU_PLAN.gemms} == set(LAYOUTS)
    assert max(s.bytes_held() for s in GPU_PLAN.streams) <= GPU_PLAN.memory_budget_bytes
    with pytest.raises(ValueError, match="at least one GEMM"):
        PeakPlan(gemms=(), streams=(StreamCase(1),))
    with pytest.raises(ValueError, match="samples"):
        tiny_plan(samples=0)
