"""The device's own ceilings, measured: the best of several GEMMs in the task's dtype and of several memory streams.

Rooflines use these measured peaks rather than datasheet numbers, so a fraction of 1.0 means "as fast as this
very device ran its best GEMM / its best large stream today". One shape is not enough: a single 8192³ GEMM ran
below the dense layers it was meant to bound, so the peak is the best of square and rectangular shapes in every
layout a model uses (NN, NT, TN, and `addmm` with a bias as `nn.Linear` runs it), each timed as the best of
several samples' median call, after a warm-up that brings clocks up. Streams are larger than any last-level
cache (the memory roof is the DRAM roof; a working set that stays in cache can beat it, and the roofline then
says so). Measure before the model is built: the process is synchronised and the allocator's cache emptied
first, so the peaks do not depend on what ran before.
"""
from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Literal

import torch

Layout = Literal["nn", "nt", "tn", "linear"]
StreamKind = Literal["copy", "read"]

_MIB = 2**20
_STREAM_DTYPE = torch.float32


@dataclass(frozen=True)
class Peaks:
    """Measured ceilings of one (device, dtype); `source` names the cases that won."""

    flops_per_s: float
    bytes_per_s: float
    source: str


@dataclass(frozen=True)
class GemmCase:
    """One GEMM, C[m, n] = A[m, k] @ B[k, n], with its operands stored as `layout` says.

    `nn`: both row-major; `nt`: B stored as [n, k] and used transposed (an `nn.Linear` weight); `tn`: A stored
    as [k, m]; `linear`: `nt` plus a bias in the same call (`torch.addmm`, what `nn.Linear` runs).
    """

    m: int
    n: int
    k: int
    layout: Layout = "nn"

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.n * self.k

    def bytes_held(self, element_bytes: int) -> int:
        """Memory the operands, the output and the bias occupy."""
        bias = self.n if self.layout == "linear" else 0
        return (self.m * self.k + self.k * self.n + self.m * self.n + bias) * element_bytes

    def label(self) -> str:
        return f"{self.m}x{self.n}x{self.k} {self.layout}"


@dataclass(frozen=True)
class StreamCase:
    """One memory stream over `size_mib` of float32: `copy` reads and writes it, `read` only sums it."""

    size_mib: int
    kind: StreamKind = "copy"

    @property
    def bytes_moved(self) -> float:
        return float(self.size_mib * _MIB * (2 if self.kind == "copy" else 1))

    def bytes_held(self) -> int:
        return self.size_mib * _MIB * (2 if self.kind == "copy" else 1)

    def label(self) -> str:
        return f"{self.size_mib} MiB {self.kind}"


@dataclass(frozen=True)
class PeakPlan:
    """What to time and for how long.

    `warmup_s` of the cheapest GEMM comes first. Then each case, cheapest first: two calls (a case whose two
    calls both exceed `max_call_s` is dropped, with every costlier one of its layout or stream kind), the
    second one the estimate of its time, then `samples` samples of max(`min_calls`, `sample_s` / estimate)
    calls; the case's time is the smallest sample median. A case holding more than `memory_budget_bytes` (or
    80 % of the GPU's free memory) is dropped. The cheapest case of each kind always runs.
    """

    gemms: tuple[GemmCase, ...]
    streams: tuple[StreamCase, ...]
    samples: int = 5
    sample_s: float = 0.02
    min_calls: int = 1
    max_call_s: float = 0.1
    warmup_s: float = 0.5
    memory_budget_bytes: int = 5 * 2**29

    def __post_init__(self) -> None:
        if not self.gemms or not self.streams:
            raise ValueError("a peak plan needs at least one GEMM and one stream")
        if self.samples < 1 or self.min_calls < 1 or self.sample_s <= 0 or self.max_call_s <= 0:
            raise ValueError("samples and min_calls must be >= 1, sample_s and max_call_s > 0")


def _gemms(shapes: tuple[tuple[int, int, int], ...], layouts: tuple[Layout, ...]) -> tuple[GemmCase, ...]:
    return tuple(GemmCase(m, n, k, layout) for m, n, k in shapes for layout in layouts)


# GPU: square shapes up to 16384 and the wide shape of a large dense layer at batch 8192, in NN and in
# nn.Linear's layout, and 8192³ in every layout. Sized for a few seconds per (device, dtype) on an H100 and at
# most 2.5 GiB held at once: fp32 without TF32 drops the costliest shapes by the time limit.
GPU_PLAN = PeakPlan(
    gemms=_gemms(((4096, 4096, 4096), (16384, 16384, 16384)), ("nn", "linear"))
    + _gemms(((8192, 8192, 8192), (8192, 16384, 16384)), ("nn", "nt", "tn", "linear")),
    streams=(StreamCase(256), StreamCase(1024), StreamCase(1024, "read")),
    samples=5, sample_s=0.02, min_calls=1, max_call_s=0.05, warmup_s=0.5, memory_budget_bytes=5 * 2**29,
)

# CPU: shared cores are noisy, so several calls per sample and a median over them; shapes small enough that a
# CPU task pays about a second (dtypes without fast CPU kernels, such as float16, drop all but the smallest).
CPU_PLAN = PeakPlan(
    gemms=_gemms(((256, 256, 256),), ("nn",)) + _gemms(((512, 512, 512),), ("nn", "linear"))
    + _gemms(((1024, 1024, 1024),), ("nn", "nt", "linear")),
    streams=(StreamCase(128), StreamCase(256, "read")),
    samples=4, sample_s=0.02, min_calls=3, max_call_s=0.05, warmup_s=0.2, memory_budget_bytes=2**30,
)


def default_plan(device: torch.device) -> PeakPlan:
    """The plan for this kind of device: large shapes on a GPU, small ones (and more calls) on a CPU."""
    return GPU_PLAN if device.type == "cuda" else CPU_PLAN


def format_rate(value: float, unit: str) -> str:
    """`712.4 TFLOP/s`, `3.01 TB/s`: a measured rate with an SI prefix."""
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"


def _quiesce(device: torch.device) -> None:
    """Let earlier work finish and hand cached memory back, so the device is as quiet as it gets."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def _release(device: torch.device) -> None:
    """Hand a finished case's memory back to the device (its tensors are gone once its callable is)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def _free_bytes(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    free_b, _total = torch.cuda.mem_get_info(device)
    return int(free_b)


def _call_times_s(fn: Callable[[], object], calls: int, device: torch.device) -> list[float]:
    """Seconds of each of `calls` back-to-back calls: CUDA events between calls on a GPU, host clock on a CPU."""
    if device.type == "cuda":
        events = [torch.cuda.Event(enable_timing=True) for _ in range(calls + 1)]
        events[0].record()
        for event in events[1:]:
            fn()
            event.record()
        events[-1].synchronize()
        return [events[i].elapsed_time(events[i + 1]) / 1e3 for i in range(calls)]
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _best_median_s(fn: Callable[[], object], device: torch.device, plan: PeakPlan,
                   required: bool) -> float | None:
    """The smallest sample median of `fn`'s call time; None when its first two calls exceed the plan's limit.

    The first call may pay one-off costs (first touch of fresh memory, a library choosing its kernel), so only
    the second decides and estimates.
    """
    first_s = _call_times_s(fn, 1, device)[0]
    estimate_s = _call_times_s(fn, 1, device)[0]
    if min(first_s, estimate_s) > plan.max_call_s and not required:
        return None
    calls = max(plan.min_calls, math.ceil(plan.sample_s / max(estimate_s, 1e-9)))
    return min(statistics.median(_call_times_s(fn, calls, device)) for _ in range(plan.samples))


def _gemm_fn(case: GemmCase, device: torch.device, dtype: torch.dtype,
             gen: torch.Generator) -> Callable[[], object]:
    """One call of `case` on fresh random operands (allocated here, freed when the callable goes)."""
    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=device, dtype=dtype, generator=gen)

    out = torch.empty(case.m, case.n, device=device, dtype=dtype)
    if case.layout == "nn":
        a, b = rand(case.m, case.k), rand(case.k, case.n)
        return lambda: torch.mm(a, b, out=out)
    if case.layout == "tn":
        a_t, b = rand(case.k, case.m), rand(case.k, case.n)
        return lambda: torch.mm(a_t.t(), b, out=out)
    a, w = rand(case.m, case.k), rand(case.n, case.k)
    if case.layout == "nt":
        return lambda: torch.mm(a, w.t(), out=out)
    bias = rand(case.n)
    return lambda: torch.addmm(bias, a, w.t(), out=out)


def _stream_fn(case: StreamCase, device: torch.device) -> Callable[[], object]:
    """One pass of `case` over a fresh float32 buffer."""
    numel = case.size_mib * _MIB // _STREAM_DTYPE.itemsize
    src = torch.empty(numel, device=device, dtype=_STREAM_DTYPE).uniform_()
    if case.kind == "read":
        return lambda: src.sum()
    dst = torch.empty_like(src)
    return lambda: dst.copy_(src)


@dataclass(frozen=True)
class _Case:
    """A GEMM or stream ready to time: `work` (FLOPs or bytes) per call; `cost` orders cases cheapest first,
    and within a `family` (a GEMM layout, a stream kind) a costlier case takes at least as long."""

    label: str
    family: str
    cost: float
    work: float
    held_bytes: int
    build: Callable[[], Callable[[], object]]


@dataclass(frozen=True)
class _Best:
    """The winning case of one kind, with its rate, how many cases ran and which were dropped (and why)."""

    label: str
    rate: float
    tried: int
    dropped: tuple[str, ...]


def _best_of(cases: list[_Case], device: torch.device, plan: PeakPlan) -> _Best:
    """Time the cases cheapest first, within the plan's memory and time limits; the highest rate wins."""
    best_label, best_rate = "", 0.0
    too_slow_from: dict[str, float] = {}  # per family: the cost from which a case took too long
    free_b = _free_bytes(device)
    limit_b = plan.memory_budget_bytes if free_b is None else min(plan.memory_budget_bytes, int(0.8 * free_b))
    dropped: list[str] = []
    tried = 0
    for i, case in enumerate(sorted(cases, key=lambda c: (c.cost, c.label))):
        required = i == 0
        if not required and case.held_bytes > limit_b:
            dropped.append(f"{case.label} (memory)")
            continue
        if not required and case.cost >= too_slow_from.get(case.family, math.inf):
            dropped.append(f"{case.label} (time)")
            continue
        seconds = _best_median_s(case.build(), device, plan, required)
        _release(device)
        if seconds is None:
            too_slow_from[case.family] = case.cost
            dropped.append(f"{case.label} (time)")
            continue
        tried += 1
        if seconds > 0 and case.work / seconds > best_rate:
            best_label, best_rate = case.label, case.work / seconds
    return _Best(best_label, best_rate, tried, tuple(dropped))


def _warm_up(case: GemmCase, device: torch.device, dtype: torch.dtype, gen: torch.Generator, seconds: float) -> None:
    """Keep the device busy for `seconds` (clocks up, thread pools and libraries initialised)."""
    fn = _gemm_fn(case, device, dtype, gen)
    deadline = time.perf_counter() + seconds
    while True:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if time.perf_counter() >= deadline:
            break
    del fn
    _release(device)


def _gemm_case(case: GemmCase, device: torch.device, dtype: torch.dtype, gen: torch.Generator) -> _Case:
    return _Case(case.label(), case.layout, case.flops, case.flops, case.bytes_held(dtype.itemsize),
                 lambda: _gemm_fn(case, device, dtype, gen))


def _stream_case(case: StreamCase, device: torch.device) -> _Case:
    return _Case(case.label(), case.kind, case.bytes_moved, case.bytes_moved, case.bytes_held(),
                 lambda: _stream_fn(case, device))


def _on(device: torch.device) -> AbstractContextManager[object]:
    return torch.cuda.device(device) if device.type == "cuda" else nullcontext()


def measure_peaks(device: torch.device, dtype: torch.dtype, plan: PeakPlan | None = None) -> Peaks:
    """The best GEMM FLOP/s (in `dtype`) and stream bandwidth (bytes read + written per second) of `plan`.

    Call it before the model is built: it synchronises and empties the allocator's cache before and after,
    and holds at most the plan's memory budget (less where the GPU has less free).
    """
    plan = plan or default_plan(device)
    dtype_name = str(dtype).removeprefix("torch.")
    with _on(device):
        _quiesce(device)
        gen = torch.Generator(device=device).manual_seed(0)
        _warm_up(min(plan.gemms, key=lambda c: c.flops), device, dtype, gen, plan.warmup_s)
        gemm = _best_of([_gemm_case(c, device, dtype, gen) for c in plan.gemms], device, plan)
        stream = _best_of([_stream_case(c, device) for c in plan.streams], device, plan)
    dropped = gemm.dropped + stream.dropped
    source = (f"measured: best of {gemm.tried} {dtype_name} GEMMs: {gemm.label} at {format_rate(gemm.rate, 'FLOP/s')}"
              f"; best of {stream.tried} streams: {stream.label} at {format_rate(stream.rate, 'B/s')}"
              + (f"; skipped {', '.join(dropped)}" if dropped else ""))
    return Peaks(flops_per_s=gemm.rate, bytes_per_s=stream.rate, source=source)


@dataclass
class PeakCache:
    """Measured peaks per (device, dtype), kept for the life of one worker process.

    The runner asks for them before it builds a model, so the first task of each (device, dtype) pays the
    measurement and every later one reuses it. `plan` overrides the device's default plan (tests use a tiny one).
    """

    plan: PeakPlan | None = None
    _peaks: dict[tuple[str, torch.dtype], Peaks] = field(default_factory=dict)

    def get(self, device: torch.device, dtype: torch.dtype) -> Peaks:
        """The peaks of (device, dtype), measured on first request."""
        key = (str(device), dtype)
        if key not in self._peaks:
            self._peaks[key] = measure_peaks(device, dtype, self.plan)
        return self._peaks[key]
