"""Measured tasks beside their roofline: how far each implementation is from the hardware's limit.

Two ceilings per task:
- the runner's, from peaks measured on the very device (a large GEMM and a large copy in the
  task's dtype; `TaskResult.roofline`), always present for a successful task;
- the datasheet's (`gpus.py`), when the GPU's NVML name is one the estimator knows; for a
  task spread over n GPUs the datasheet peaks are n times one GPU's.

Energy at the roofline is the roofline time (runner's peaks) × a reference power: the
datasheet TDP of the task's GPUs when known, else the highest power measured during the
task's windows (labelled as such). The ratio measured/roofline says how many times the
energy (or time) of the ideal implementation the measured one spent.
"""
from __future__ import annotations

from dataclasses import dataclass

from moecluster.spec.records import TaskResult

from moecluster.head.estimate.gpus import GpuSpec, lookup


@dataclass(frozen=True)
class RooflineComparison:
    task_id: str
    label: str
    gpu_name: str
    gpus: int
    measured_s_per_inference: float
    roofline_s_per_inference: float
    roofline_fraction: float
    bound: str
    peak_source: str
    datasheet: str | None
    datasheet_s_per_inference: float | None
    datasheet_fraction: float | None
    measured_j_per_inference: float | None
    roofline_j_per_inference: float | None
    power_ref_w: float | None
    power_ref_source: str

    @property
    def time_over_roofline(self) -> float:
        return self.measured_s_per_inference / self.roofline_s_per_inference

    @property
    def energy_over_roofline(self) -> float | None:
        if self.measured_j_per_inference is None or not self.roofline_j_per_inference:
            return None
        return self.measured_j_per_inference / self.roofline_j_per_inference


def datasheet_of(result: TaskResult) -> GpuSpec | None:
    """The datasheet of the task's GPUs, None if unknown or if the task mixed GPU kinds."""
    specs = [lookup(n) for n in sorted({g.name for g in result.gpus})]
    return specs[0] if len(specs) == 1 else None


def compare(result: TaskResult) -> RooflineComparison | None:
    """The task's measured time and energy per inference beside its rooflines (None without one)."""
    rl = result.roofline
    items = sum(w.inferences for w in result.windows)
    seconds = sum(w.duration_s for w in result.windows)
    if result.status != "ok" or rl is None or items == 0 or seconds <= 0:
        return None
    n = max(1, len(result.gpus))
    spec = datasheet_of(result)
    ds_s = ds_frac = None
    if spec is not None:
        try:
            peak = spec.peak_flops(result.spec.dtype) * n
        except KeyError:
            peak = None
        if peak:
            per_item_bytes = rl.bytes_per_batch / result.items_per_batch
            ds_s = max(rl.flops_per_item / peak, per_item_bytes / (spec.memory_bytes_per_s * n))
            ds_frac = ds_s / (seconds / items)
    roof_s = rl.time_s / items
    energies = [w.energy_j for w in result.windows]
    measured_j = (sum(e for e in energies if e is not None) / items
                  if result.energy_source is not None and all(e is not None for e in energies) else None)
    power: float | None
    if spec is not None:
        power, source = spec.tdp_w * n, f"datasheet TDP {spec.tdp_w:.0f} W × {n}"
    else:
        peaks = [w.max_power_w for w in result.windows if w.max_power_w is not None]
        power = max(peaks) if peaks else None
        source = "highest measured power" if peaks else "no reference power"
    return RooflineComparison(
        task_id=result.spec.task_id, label=result.spec.label(),
        gpu_name=", ".join(sorted({g.name for g in result.gpus})) or result.spec.device, gpus=n,
        measured_s_per_inference=seconds / items, roofline_s_per_inference=roof_s,
        roofline_fraction=rl.fraction, bound=rl.bound, peak_source=rl.peak_source,
        datasheet=spec.key if spec else None, datasheet_s_per_inference=ds_s, datasheet_fraction=ds_frac,
        measured_j_per_inference=measured_j, roofline_j_per_inference=roof_s * power if power else None,
        power_ref_w=power, power_ref_source=source)
