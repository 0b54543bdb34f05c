"""Is the energy trustworthy? Counter vs 10 ms power sampling, and what the meter costs.

1. Over a >= 10 s window of heavy work, energy from NVML's hardware counter and the
   trapezoid integral of instantaneous power sampled every 10 ms must agree within 2 %.
2. Throughput with the meter on (counter + 100 ms and 10 ms samplers) vs off, windows
   alternating (off, on, off, on) in the same run; the cost must stay under 1 %.

    python benchmarks/energy_check.py --out benchmarks/results/energy_check_h100.json
"""
from __future__ import annotations

import argparse
import time

import torch

from _common import environment, print_table, write_json
from moecluster.devices import open_devices
from moecluster.measure.meters.energy import Alignment, EnergyMeter

from moecluster.spec.records import TaskSpec
from moecluster.measure.runner import _run_for, _sync, resolve_device, select_gpus
from moecluster.workloads.workload import get_workload, torch_dtype
from moecluster.spec.mlp.shapes import match_dense, preset

# counter and sampler over the very same span: no edge alignment (the runner aligns; this compares)
UNALIGNED = Alignment(enabled=False)

CONFIGS = [  # (label, preset, kind, impl, dtype, batch): one compute-heavy, one launch-bound
    ("xxl dense bf16 b8192", "xxl", "dense", "dense", "bfloat16", 8192),
    ("small sorted fp32 b128", "small", "moe", "sorted", "float32", 128),
]


def spec_for(p: str, kind: str, impl: str, dtype: str, batch: int) -> TaskSpec:
    shape = preset(p)
    model = match_dense(shape).as_model() if kind == "dense" else shape.as_model()
    return TaskSpec(task_id=f"{p}-{impl}", pair_id=p, kind=kind, impl=impl,  # type: ignore[arg-type]
                    model=model, dtype=dtype, batch_size=batch, device="cuda")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window-s", type=float, default=12.0)
    ap.add_argument("--overhead-window-s", type=float, default=5.0)
    ap.add_argument("--alternations", type=int, default=4)
    ap.add_argument("--out", default="benchmarks/results/energy_check.json")
    args = ap.parse_args()
    device = resolve_device("cuda")
    devices = open_devices("nvml")
    gpus = select_gpus(devices, device, None)
    sync = _sync(device)
    agreement, overhead = [], []
    for label, p, kind, impl, dtype, batch in CONFIGS:
        spec = spec_for(p, kind, impl, dtype, batch)
        prepared = get_workload("mlp").prepare(spec, device, torch_dtype(dtype))
        with torch.inference_mode():
            _run_for(prepared, 3.0, sync, 3)
            fine = EnergyMeter(devices, gpus, sample_interval_s=0.01, alignment=UNALIGNED)
            steps, r = fine.measure(lambda prepared=prepared: _run_for(prepared, args.window_s, sync))
            agreement.append({"config": label, "window_s": r.duration_s, "counter_j": r.energy_j,
                              "sampled_10ms_j": r.sampled_energy_j, "samples": r.samples,
                              "diff_pct": 100 * (r.sampled_energy_j - r.energy_j) / r.energy_j,
                              "avg_w": r.avg_power_w, "max_w": r.max_power_w})
            rates: dict[str, list[float]] = {"off": [], "on_100ms": [], "on_10ms": []}
            for _ in range(args.alternations):
                for mode in rates:
                    if mode == "off":
                        t0 = time.perf_counter()
                        n = _run_for(prepared, args.overhead_window_s, sync)
                        dt = time.perf_counter() - t0
                    else:
                        m = EnergyMeter(devices, gpus, sample_interval_s=0.1 if mode == "on_100ms" else 0.01,
                                        alignment=UNALIGNED)
                        n, rd = m.measure(lambda prepared=prepared: _run_for(prepared, args.overhead_window_s, sync))
                        dt = rd.duration_s
                    rates[mode].append(int(n) * batch / dt)  # type: ignore[call-overload]
            off = sum(rates["off"]) / len(rates["off"])
            for mode in ("on_100ms", "on_10ms"):
                on = sum(rates[mode]) / len(rates[mode])
                overhead.append({"config": label, "meter": mode, "off_inf_s": off, "on_inf_s": on,
                                 "cost_pct": 100 * (off - on) / off,
                                 "spread_off_pct": 100 * (max(rates["off"]) - min(rates["off"])) / off,
                                 "off_runs": rates["off"], "on_runs": rates[mode]})
        del prepared
        torch.cuda.empty_cache()
    print("counter vs 10 ms sampled power:")
    print_table(agreement, ["config", "window_s", "counter_j", "sampled_10ms_j", "diff_pct", "samples", "avg_w",
                            "max_w"])
    print("meter cost (same run, alternating windows):")
    print_table(overhead, ["config", "meter", "off_inf_s", "on_inf_s", "cost_pct", "spread_off_pct"])
    write_json(args.out, {"environment": environment(), "agreement": agreement, "overhead": overhead})
    devices.close()


if __name__ == "__main__":
    main()
