"""Markdown tables for docs/results/seed-study.md from `moecluster report --format csv` output of seed-study runs.

    python benchmarks/study_tables.py benchmarks/results/runs/seed-study-h100-fp32-b128/report [...]

One table per report directory: per preset, MoE/dense inferences per joule of every MoE
implementation against the dense twins matched by total and by active parameters (95 % CI, † where
it contains 1), each task's inferences/s, and the earlier single-window study's ratio against the
total-matched twin (`benchmarks/results/seed_study_*_h100.json`, measured before issue 13's fixes)
where it exists.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

PRESETS = ("small", "medium", "large", "xxl")
IMPLS = ("naive", "sorted", "grouped")
OLD = {("float32", 128): "seed_study_fp32_h100.json", ("bfloat16", 128): "seed_study_bf16_b128_h100.json",
       ("bfloat16", 8192): "seed_study_bf16_b8192_h100.json"}


def _ratio(row: dict[str, str]) -> str:
    mean, lo, hi = (float(row[k]) for k in ("ratio_inferences_per_j", "ratio_inferences_per_j_lo",
                                            "ratio_inferences_per_j_hi"))
    dagger = " †" if lo <= 1 <= hi else ""
    return f"{mean:.2f} [{lo:.2f}, {hi:.2f}]{dagger}"


def _old_ratios(results: Path, dtype: str, batch: int) -> dict[tuple[str, str], float]:
    name = OLD.get((dtype, batch))
    if name is None or not (results / name).exists():
        return {}
    rows = [r for r in json.loads((results / name).read_text())["rows"] if r.get("batch") == batch]
    out = {}
    for preset in PRESETS:
        mine = {r["model"]: r for r in rows if r["preset"] == preset and r.get("inf_j")}
        dense = mine.get("dense/total")
        for impl in IMPLS:
            moe = mine.get(f"moe/{impl}")
            if dense and moe:
                out[(preset, impl)] = moe["inf_j"] / dense["inf_j"]
    return out


def table(report: Path, results: Path) -> str:
    pairs = list(csv.DictReader((report / "pairs.csv").open()))
    tasks = {r["task_id"]: r for r in csv.DictReader((report / "tasks.csv").open())}
    dtype, batch = pairs[0]["dtype"], int(pairs[0]["batch_size"])
    old = _old_ratios(results, dtype, batch)
    lines = [f"**{dtype}, batch {batch:,}** — MoE/dense inferences per joule [95 % CI], and inferences/s:", "",
             "| preset | impl | vs dense/total | vs dense/active | MoE inf/s | dense/total inf/s"
             " | earlier study, vs total |",
             "|---|---|---|---|---:|---:|---:|"]
    for preset in PRESETS:
        for impl in IMPLS:
            mine = [p for p in pairs if p["pair_id"].startswith(f"{preset}-") and p["impl"] == impl]
            by_match = {p["match"]: p for p in mine}
            if "total" not in by_match:
                continue
            tot = by_match["total"]
            act = by_match.get("active")
            moe_s = float(tasks[tot["moe_task"]]["inferences_per_s"])
            dense_s = float(tasks[tot["dense_task"]]["inferences_per_s"])
            before = old.get((preset, impl))
            lines.append(f"| {preset} | {impl} | {_ratio(tot)} | {_ratio(act) if act else '—'} | {moe_s:,.0f} |"
                         f" {dense_s:,.0f} | {f'{before:.2f}' if before is not None else '—'} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    results = Path(__file__).parent / "results"
    for folder in argv:
        print(table(Path(folder), results))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
