"""The seed experiment (001), re-measured: four presets x {dense fair, dense seed-width, naive,
sorted, grouped} at the seed's batch 128 and a large batch, one dtype per call.

Each model runs through the real runner (warm-up, fixed window, NVML energy counter, idle
power, roofline against peaks measured in the same process). Dense and MoE tasks of one
preset run back to back on the same GPU.

    python benchmarks/seed_study.py --dtype float32 --out benchmarks/results/seed_study_fp32_h100.json
"""
from __future__ import annotations

import argparse

import torch

from _common import environment, print_table, write_json
from moecluster.measure.meters.peaks import PeakCache
from moecluster.spec.records import TaskSpec
from moecluster.measure.runner import run_task
from moecluster.spec.mlp.shapes import match_dense, preset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--presets", default="small,medium,large,xxl")
    ap.add_argument("--batches", default="128,8192")
    ap.add_argument("--impls", default="naive,sorted,grouped")
    ap.add_argument("--duration-s", type=float, default=5.0)
    ap.add_argument("--warmup-s", type=float, default=1.5)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="benchmarks/results/seed_study.json")
    args = ap.parse_args()
    peaks = PeakCache()
    rows, records = [], []
    for p in args.presets.split(","):
        shape = preset(p)
        for batch in (int(b) for b in args.batches.split(",")):
            common = dict(dtype=args.dtype, batch_size=batch, device=args.device, duration_s=args.duration_s,
                          warmup_s=args.warmup_s, preset=p, pair_id=f"{p}-b{batch}")
            specs = [TaskSpec(task_id=f"{p}-b{batch}-dense-{m}", kind="dense", impl="dense", match=m,
                              model=match_dense(shape, m).as_model(), **common) for m in ("total", "seed")]
            specs += [TaskSpec(task_id=f"{p}-b{batch}-{impl}", kind="moe", impl=impl, model=shape.as_model(),
                               **common) for impl in args.impls.split(",")]
            for spec in specs:
                r = run_task(spec, peaks=peaks)
                records.append(r.to_dict())
                row = {"preset": p, "batch": batch, "model": spec.label(), "status": r.status}
                if r.status == "ok":
                    row.update(inf_s=r.inferences_per_s, avg_w=r.avg_power_w, idle_w=r.idle_power_w,
                               inf_j=r.inferences_per_j, roofline=r.roofline.fraction if r.roofline else None,
                               bound=r.roofline.bound if r.roofline else "", width=spec.model.get("hidden_dim", ""))
                else:
                    row["error"] = (r.error or "")[:80]
                rows.append(row)
                print(row, flush=True)
                write_json(args.out, {"environment": environment(), "dtype": args.dtype,  # after every task:
                                      "duration_s": args.duration_s, "rows": rows,
                                      "records": records})  # a cut run keeps its rows
                torch.cuda.empty_cache() if torch.cuda.is_available() else None
    print_table(rows, ["preset", "batch", "model", "width", "inf_s", "avg_w", "idle_w", "inf_j", "roofline", "bound",
                       "status"])
    write_json(args.out, {"environment": environment(), "dtype": args.dtype, "duration_s": args.duration_s,
                          "rows": rows, "records": records})


if __name__ == "__main__":
    main()
