"""How close a task came to its hardware limit: its roofline time beside the time it took.

The roofline time of the work done in some windows is max(FLOPs / peak FLOP/s, bytes / peak bytes/s), with the
peaks measured on the device (`peaks.measure_peaks`); the fraction is that time over the windows' seconds, so
1.0 is "at the roofline". The peaks are the best the device did on its own benchmarks, not a law: a task can beat
them (a working set that stays in cache beats a DRAM stream; a GEMM shape the peak cases missed), and then the
record says so in `Roofline.note`, naming the task's rate beside the peak it beat, instead of silently showing a
fraction above 1.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from moecluster.spec.records import Roofline, Window
from moecluster.measure.meters.peaks import Peaks, format_rate


def roofline(flops_per_item: float, bytes_per_batch: float, items_per_batch: int, windows: Sequence[Window],
             peaks: Peaks) -> Roofline:
    """The roofline of the work done in `windows` (all inferences over all their seconds) against `peaks`.

    `flops_per_item`: FLOPs of one inference; `bytes_per_batch`: bytes one batch must move (weights read once per
    batch plus its activations); `items_per_batch`: inferences per batch. A fraction above 1 sets `note`.
    """
    if items_per_batch < 1:
        raise ValueError(f"items_per_batch must be >= 1, not {items_per_batch}")
    if peaks.flops_per_s <= 0 or peaks.bytes_per_s <= 0:
        raise ValueError(f"peaks must be positive ({peaks.flops_per_s} FLOP/s, {peaks.bytes_per_s} B/s)")
    items = sum(w.inferences for w in windows)
    seconds = sum(w.duration_s for w in windows)
    flops = items * flops_per_item
    moved_bytes = items / items_per_batch * bytes_per_batch
    t_compute = flops / peaks.flops_per_s
    t_memory = moved_bytes / peaks.bytes_per_s
    time_s = max(t_compute, t_memory)
    fraction = time_s / seconds if seconds > 0 else 0.0
    bound: Literal["compute", "memory"] = "compute" if t_compute >= t_memory else "memory"
    note = None
    if fraction > 1.0:
        if bound == "compute":
            rates = (f"the task did {format_rate(flops / seconds, 'FLOP/s')} against a measured GEMM peak of "
                     f"{format_rate(peaks.flops_per_s, 'FLOP/s')}; this model's GEMMs beat the best peak case")
        else:
            rates = (f"the task moved {format_rate(moved_bytes / seconds, 'B/s')} of its counted bytes against a "
                     f"measured stream peak of {format_rate(peaks.bytes_per_s, 'B/s')}; its working set may stay "
                     "in cache, which a stream larger than the cache cannot")
        note = f"above the roofline ({fraction:.3f}, {bound}-bound): {rates} (peaks: {peaks.source})"
    return Roofline(flops_per_item=flops_per_item, bytes_per_batch=bytes_per_batch, peak_flops=peaks.flops_per_s,
                    peak_bytes_per_s=peaks.bytes_per_s, peak_source=peaks.source, time_s=time_s, fraction=fraction,
                    bound=bound, note=note, items_per_batch=items_per_batch)
