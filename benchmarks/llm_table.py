"""The table of docs/results/llm-h100.md from `moecluster report --format csv` output of an LLM run.

    python benchmarks/llm_table.py benchmarks/results/llm_h100/report

One row per phase, batch and prompt of the report's `llm.csv`: the MoE's tokens/J and both twins',
the MoE/twin ratios [95 % CI] with seed 004's analytic ratio in parentheses, the MoE/total-twin
ratio above idle beside the total-energy one (`pairs.csv`; ‡ where the two views put different
sides ahead, the report's `energy_views_disagree`), and the MoE's fraction of its roofline.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

from _tables import main, markdown, ratio_text

HEADER = ("| phase | batch | prompt | MoE tok/J | total twin | active twin | MoE / total (est.) | MoE / active (est.)"
          " | MoE / total, above idle | MoE of roofline |")


def table(report: Path) -> str:
    series = list(csv.DictReader((report / "llm.csv").open()))
    pairs = {(p["moe_task"], p["match"]): p for p in csv.DictReader((report / "pairs.csv").open())}
    series.sort(key=lambda r: (r["phase"], int(r["batch_size"]), int(r["prompt_len"])))
    rows = []
    for r in series:
        total = pairs[(r["moe_task"], "total")]
        flag = " ‡" if total.get("energy_views_disagree") else ""
        rows.append([r["phase"], f"{int(r['batch_size']):,}", f"{int(r['prompt_len']):,}",
                     *(f"{float(r[k]):.3g}" for k in ("moe_tokens_per_j", "dense_total_tokens_per_j",
                                                     "dense_active_tokens_per_j")),
                     ratio_text(r, "ratio_total", estimate="estimate_ratio_total"),
                     ratio_text(r, "ratio_active", estimate="estimate_ratio_active"),
                     ratio_text(total, "ratio_inferences_per_j_above_idle") + flag,
                     f"{float(r['moe_roofline_fraction']):.0%}".replace("%", " %")])
    return markdown(HEADER, "|---|---:|---:|---:|---:|---:|---|---|---|---:|", rows)

if __name__ == "__main__":
    main(table, sys.argv[1:])
