"""Markdown tables of the seed study (benchmarks/seed_study.py outputs), MoE/dense ratios included.

    python benchmarks/summarize_seed_study.py benchmarks/results/seed_study_*_h100.json
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(paths: list[str]) -> None:
    for path in paths:
        data = json.load(open(path))
        print(f"\n#### {data['dtype']} — `{path}`\n")
        print("| preset | batch | model | inferences/s | avg W | inferences/J | roofline | MoE/dense-fair inf/J |")
        print("|---|---:|---|---:|---:|---:|---:|---:|")
        groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
        for row in data["rows"]:
            groups[(row["preset"], row["batch"])].append(row)
        for (preset, batch), rows in groups.items():
            fair = next((r for r in rows if r["model"] == "dense/total" and r["status"] == "ok"), None)
            for r in rows:
                if r["status"] != "ok":
                    print(f"| {preset} | {batch} | {r['model']} | failed | | | | |")
                    continue
                moe_row = fair and r["inf_j"] and r["model"].startswith("moe")
                ratio = f"{r['inf_j'] / fair['inf_j']:.2f}" if moe_row else ""
                width = f" (w={r['width']})" if r.get("width") else ""
                print(f"| {preset} | {batch} | {r['model']}{width} | {r['inf_s']:,.0f} | {r['avg_w']:.0f} | "
                      f"{r['inf_j']:,.1f} | {r['roofline']:.0%} {r['bound'][:3]} | {ratio} |")


if __name__ == "__main__":
    main(sys.argv[1:])
