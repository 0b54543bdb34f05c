"""The table of docs/results/expert-parallelism.md from `moecluster report --format csv` output of an EP run.

    python benchmarks/ep_table.py benchmarks/results/runs/ep-h200x2/report

One row per MoE task of the report's `ep.csv` (model and its experts, from the run's `sweep.yaml`; batch;
EP degree): its inferences/s and
inferences/J; against the same model at EP 1 its speedup and inferences/J ratio [95 % CI]; its
MoE/dense inferences/J against the total-matched twin on the same GPUs (`pairs.csv`); the share of
a step in dispatch and combine (seed 004's prediction in parentheses); and the dispatch phase's
bus bandwidth over the raw all-to-all's at the same bytes (= raw time / dispatch time).
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import yaml
from _tables import main, markdown, ratio_text

from moecluster.spec.mlp.shapes import PRESETS

COLUMNS = ("| MoE | batch | EP | inferences/s | inferences/J | speedup vs EP 1 | inf/J vs EP 1 | MoE/dense inf/J, same"
           " GPUs | dispatch+combine share of step (seed 004) | dispatch busbw / raw all-to-all busbw (= raw time /"
           " dispatch time, same bytes) |")


def _pct(value: str) -> str:
    return f"{float(value):.1%}".replace("%", " %") if value else "—"


def experts(run_dir: Path) -> dict[str, int]:
    """Each model's name in the run's resolved sweep and its number of experts (the preset's unless overridden)."""
    out = {}
    for entry in yaml.safe_load((run_dir / "sweep.yaml").read_text())["models"]:
        name = entry.get("name") or entry["preset"]
        out[name] = int(entry.get("num_experts") or PRESETS[entry["preset"]].num_experts)
    return out


def table(report: Path) -> str:
    ep = list(csv.DictReader((report / "ep.csv").open()))
    pairs = {p["moe_task"]: p for p in csv.DictReader((report / "pairs.csv").open()) if p["match"] == "total"}
    counts = experts(report.parent)
    ep.sort(key=lambda r: (counts[r["model"]], int(r["batch_size"]), int(r["expert_parallel"])))
    rows = []
    for r in ep:
        share = r["comm_time_share"]
        comm = f"{_pct(share)} ({_pct(r['predicted_seed004_comm_time_share'])})" if share else "—"
        rows.append([f"{r['model']} (E{counts[r['model']]})", f"{int(r['batch_size']):,}", r["expert_parallel"],
                     f"{float(r['inferences_per_s']):,.0f}", f"{float(r['inferences_per_j']):.1f}",
                     ratio_text(r, "speedup"), ratio_text(r, "energy_ratio"),
                     ratio_text(pairs.get(r["task_id"]) or {}, "ratio_inferences_per_j"), comm,
                     _pct(r["dispatch_bandwidth_fraction"])])
    return markdown(COLUMNS, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|", rows)

if __name__ == "__main__":
    main(table, sys.argv[1:])
