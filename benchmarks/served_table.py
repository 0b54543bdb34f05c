"""The table of docs/results/served-h100.md from `moecluster report --format csv` output of a served run.

    python benchmarks/served_table.py benchmarks/results/runs/served-h100/report

One row per load level and twin of the report's `serve.csv`: output tokens/J of the MoE and of its twin with
their 95 % intervals, the MoE/twin ratio [95 % CI] († where it contains 1), output tokens/s of both sides,
median time to first token and time per output token of both, and what the intervals cover.
"""
from __future__ import annotations

import csv
import sys
from collections.abc import Mapping
from pathlib import Path

from _tables import main, markdown, ratio_text

HEADER = ("| load | twin | MoE tok/J | twin tok/J | MoE / twin tok/J | MoE tok/s | twin tok/s"
          " | TTFT p50 MoE / twin | TPOT p50 MoE / twin | intervals cover |")


def value(row: Mapping[str, str], name: str) -> str:
    """`name` with its 95 % interval, three significant figures."""
    return f"{float(row[name]):.3g} [{float(row[name + '_lo']):.3g}, {float(row[name + '_hi']):.3g}]"


def ms(row: Mapping[str, str], name: str) -> str:
    return f"{float(row[name]) * 1e3:.0f} ms" if row.get(name) else "—"


def load(row: Mapping[str, str]) -> str:
    """The load level as the sweep gave it: concurrency N, or an open-loop rate in requests/s."""
    if row["load_axis"] == "concurrency":
        return f"concurrency {int(row['concurrency'])}"
    return f"{float(row['request_rate']):g} req/s"


def table(report: Path) -> str:
    rows = list(csv.DictReader((report / "serve.csv").open()))
    sides = {row["task"]: row for row in rows}
    out = []
    for row in sorted((r for r in rows if r["task"] == r["moe_task"]), key=lambda r: (r["pair"], r["match"])):
        twin = sides[row["dense_task"]]
        out.append([load(row), row["match"], value(row, "output_tokens_per_j"), value(twin, "output_tokens_per_j"),
                    ratio_text(row, "ratio_output_tokens_per_j"), f"{float(row['output_tokens_per_s']):.0f}",
                    f"{float(twin['output_tokens_per_s']):.0f}", f"{ms(row, 'ttft_s_p50')} / {ms(twin, 'ttft_s_p50')}",
                    f"{ms(row, 'tpot_s_p50')} / {ms(twin, 'tpot_s_p50')}", row["ci_covers"]])
    return markdown(HEADER, "|---|---|---:|---:|---|---:|---:|---:|---:|---|", out)


if __name__ == "__main__":
    main(table, sys.argv[1:])
