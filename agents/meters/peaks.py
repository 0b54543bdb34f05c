"""The device's own ceilings, measured: a large GEMM in the task's dtype and a large copy.

Rooflines use these measured peaks rather than datasheet numbers, so a fraction of 1.0
means "as fast as this very device ran a large aligned GEMM / a large copy today".
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Peaks:
    flops_per_s: float
    bytes_per_s: float
    source: str


def _time(fn, device: torch.device, reps: int) -> float:  # type: ignore[no-untyped-def]
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / reps
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def measure_peaks(device: torch.device, dtype: torch.dtype) -> Peaks:
    """GEMM FLOP/s (n×n×n, n = 8192 on GPU, 1024 on CPU) and copy bandwidth (read + write)."""
    gpu = device.type == "cuda"
    n = 8192 if gpu else 1024
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    t_gemm = _time(lambda: torch.mm(a, b), device, 10 if gpu else 3)
    del a, b
    numel = (2**30 if gpu else 2**26) // 4
    src = torch.empty(numel, device=device, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    t_copy = _time(lambda: dst.copy_(src), device, 10 if gpu else 3)
    del src, dst
    return Peaks(flops_per_s=2 * n**3 / t_gemm, bytes_per_s=2 * numel * 4 / t_copy,
                 source=f"measured: {n}^3 {str(dtype).removeprefix('torch.')} GEMM, {numel * 4 >> 20} MiB copy")


@dataclass
class PeakCache:
    """Measured peaks per (device, dtype), kept for the life of one worker process."""

    _peaks: dict[tuple[str, torch.dtype], Peaks] = field(default_factory=dict)

    def get(self, device: torch.device, dtype: torch.dtype) -> Peaks:
        key = (str(device), dtype)
        if key not in self._peaks:
            self._peaks[key] = measure_peaks(device, dtype)
        return self._peaks[key]
