"""Markdown tables for docs/results/seed-study.md from `moecluster report --format csv` output of seed-study runs.

    python benchmarks/study_tables.py benchmarks/results/runs/seed-study-h100-fp32-b128/report [...]

Two tables per report directory. First, per preset, MoE/dense inferences per joule of every MoE
implementation against the dense twins matched by total and by active parameters (95 % CI, † where
it contains 1), the same against the total twin above idle (‡ where that view and the total-energy
headline put different sides ahead: the report's `energy_views_disagree`), each task's
inferences/s, and the earlier single-window study's ratio against the total-matched twin
(`benchmarks/results/seed_study_*_h100.json`, measured before issue 13's fixes) where it exists.
Then the break-even against the total-matched twin per implementation, in total energy and above
idle (‡ where they disagree), with the measured sizes a break-even is interpolated between where
they are more than 2× apart.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from _tables import main, ratio_text

PRESETS = ("small", "medium", "large", "xxl")
IMPLS = ("naive", "sorted", "grouped")
OLD = {("float32", 128): "seed_study_fp32_h100.json", ("bfloat16", 128): "seed_study_bf16_b128_h100.json",
       ("bfloat16", 8192): "seed_study_bf16_b8192_h100.json"}


def _ratio(row: dict[str, str], name: str = "ratio_inferences_per_j") -> str:
    return ratio_text(row, name)


def _above(row: dict[str, str]) -> str:
    """The above-idle ratio, ‡ where it puts the other side ahead than the total-energy one."""
    return _ratio(row, "ratio_inferences_per_j_above_idle") + (" ‡" if row.get("energy_views_disagree") else "")


def _params(v: str) -> str:
    p = float(v)
    return f"{p / 1e9:.3g}B" if p >= 1e9 else f"{p / 1e6:.3g}M"


def _break_even(row: dict[str, str] | None) -> str:
    """"12.2M (95 % CI 10.3M – 14.3M)", as the report writes it; the outcome without a break-even."""
    if row is None:
        return "—"
    if not row["break_even_params"]:
        return row["verdict"].split(" (")[0]
    ci = row["ci"] if row["ci"].startswith(("undetermined", "no CI")) else f"95 % CI {row['ci']}"
    return f"{_params(row['break_even_params'])} ({ci})"


def _gap(rows: list[dict[str, str] | None]) -> str:
    gaps = {(r["bracket_lo_params"], r["bracket_hi_params"], r["gap_factor"]) for r in rows
            if r is not None and r.get("gap_note")}
    return "; ".join(f"{_params(lo)} – {_params(hi)} ({float(f):.1f}×)"
                     for lo, hi, f in sorted(gaps, key=lambda g: float(g[0]))) or "—"


def break_even_table(report: Path) -> str:
    """The break-even against the total-matched twin per implementation: total energy, above idle, and the
    measured sizes it is interpolated between where they are more than 2× apart."""
    rows = [r for r in csv.DictReader((report / "breakeven.csv").open()) if r["match"] == "total"]
    lines = ["Break-even against the total-matched twin (where MoE inferences/J overtakes it):", "",
             "| impl | total energy | above idle | interpolated across |", "|---|---|---|---|"]
    for impl in IMPLS:
        tot = next((r for r in rows if r["impl"] == impl and r["metric"] == "inferences_per_j"), None)
        above = next((r for r in rows if r["impl"] == impl and r["metric"] == "inferences_per_j_above_idle"), None)
        flag = " ‡" if (tot or above or {}).get("energy_views_disagree") else ""
        lines.append(f"| {impl} | {_break_even(tot)} | {_break_even(above)}{flag} | {_gap([tot, above])} |")
    return "\n".join(lines)


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
             "| preset | impl | vs dense/total | vs dense/active | vs dense/total, above idle | MoE inf/s"
             " | dense/total inf/s | earlier study, vs total |",
             "|---|---|---|---|---|---:|---:|---:|"]
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
            lines.append(f"| {preset} | {impl} | {_ratio(tot)} | {_ratio(act) if act else '—'} | {_above(tot)} |"
                         f" {moe_s:,.0f} | {dense_s:,.0f} | {f'{before:.2f}' if before is not None else '—'} |")
    return "\n".join(lines) + "\n\n" + break_even_table(report)


if __name__ == "__main__":
    main(lambda report: table(report, Path(__file__).parent / "results"), sys.argv[1:])
