"""How long one call takes on a device, for choosing between forms of a model.

On a GPU the clock is a pair of CUDA events around a run of calls (the GPU's own time, with
no per-call host sync inside a run, as in a measurement window); on a CPU it is
`time.perf_counter`. Each sample is a run long enough to dwarf the clock's resolution, and
the median of a few samples resists a stray slow one. Used at prepare time only, never
inside a measurement window.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch

GPU_SAMPLES = 5
CPU_SAMPLES = 3  # a CPU run is slow and its choice matters little: fewer samples
WARMUP_CALLS = 2
MIN_SAMPLE_S = 2e-3  # a sample runs at least this long
MAX_CALLS_PER_SAMPLE = 1000
BUDGET_S = 0.5  # a slow call gets fewer samples: a choice among big calls costs seconds, not minutes


def _run_s(fn: Callable[[], object], calls: int, device: torch.device) -> float:
    """Seconds per call of `calls` back-to-back calls, ended by a sync."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / calls
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def _warm_then_one_s(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call of `fn`, timed after one untimed warm-up call."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return _run_s(fn, 1, device)


def _calls_for(one_s: float, min_sample_s: float) -> int:
    """Calls of `one_s` each that make a sample of at least `min_sample_s` (at most `MAX_CALLS_PER_SAMPLE`)."""
    return min(MAX_CALLS_PER_SAMPLE, max(1, math.ceil(min_sample_s / one_s)))


def samples_for(device: torch.device) -> int:
    """How many timed samples a call gets on `device` by default."""
    return GPU_SAMPLES if device.type == "cuda" else CPU_SAMPLES


def time_call_s(fn: Callable[[], object], device: torch.device, samples: int | None = None,
                warmup_calls: int = WARMUP_CALLS, min_sample_s: float = MIN_SAMPLE_S,
                budget_s: float = BUDGET_S) -> float:
    """Median seconds per call of `fn` on `device` over `samples` runs of calls (default: `samples_for`).

    Why a run of calls per sample: a single fast call is shorter than the clock's
    resolution and hides the launch pipeline a window sees; the run's length is calibrated
    from one timed call so that every sample lasts at least `min_sample_s`.
    """
    samples = samples_for(device) if samples is None else samples
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    one_s = _warm_then_one_s(fn, device)
    if one_s >= budget_s:
        return one_s
    for _ in range(warmup_calls - 1):
        fn()
    calls = 1 if one_s <= 0 else _calls_for(one_s, min_sample_s)
    sample_s = calls * one_s
    if sample_s > 0:
        samples = min(samples, max(1, math.floor(budget_s / sample_s)))
    return statistics.median(_run_s(fn, calls, device) for _ in range(samples))


def time_sample_s(fn: Callable[[], object], device: torch.device, min_sample_s: float = MIN_SAMPLE_S) -> float:
    """Seconds per call of one sample of `fn`: one race round's sample (`race.race`).

    A warm-up call first (the race has just switched forms), then one timed call, which is the sample
    where it lasts `min_sample_s`; else a run of calls that does (as `time_call_s` calibrates it). A slow
    call thus costs two calls per round, not three."""
    one_s = _warm_then_one_s(fn, device)
    if one_s >= min_sample_s:
        return one_s
    return _run_s(fn, MAX_CALLS_PER_SAMPLE if one_s <= 0 else _calls_for(one_s, min_sample_s), device)
