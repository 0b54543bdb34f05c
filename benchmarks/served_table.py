"""The table of docs/results/served-h100.md from `moecluster report --format csv` output of a served run.

    python benchmarks/served_table.py benchmarks/results/runs/served-h100/report

One row per load level and dense comparison of the report's `serve.csv`: the MoE's output tokens/J and
its twin's, their ratio [95 % CI], responses/s of both, and the median time to first token and per
output token of both (each side's own row of the export; the ratio columns are on the MoE's row).
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

from _tables import main, markdown, ratio_text

HEADER = ("| load | dense twin | MoE out tok/J | twin out tok/J | MoE / twin tok/J | MoE / twin responses/s"
          " | MoE resp/s | twin resp/s | TTFT p50 MoE / twin | TPOT p50 MoE / twin |")


def _load(row: dict[str, str]) -> tuple[int, float, str]:
    """Sort key and text of a row's load level: concurrency, or a Poisson request rate where set."""
    rate = row.get("request_rate") or ""
    if rate:
        return 1, float(rate), f"{float(rate):g} req/s"
    return 0, float(row["concurrency"]), f"{int(float(row['concurrency']))} in flight"


def _ms(value: str) -> str:
    return f"{float(value) * 1e3:.1f}" if value else "—"


def table(report: Path) -> str:
    rows = list(csv.DictReader((report / "serve.csv").open()))
    by_side = {(r["moe_task"], r["dense_task"], r["kind"]): r for r in rows}
    out = []
    for moe in sorted((r for r in rows if r["kind"] == "moe"), key=lambda r: (_load(r)[:2], r["match"])):
        dense = by_side[(moe["moe_task"], moe["dense_task"], "dense")]
        out.append([_load(moe)[2], moe["match"], f"{float(moe['output_tokens_per_j']):.3g}",
                    f"{float(dense['output_tokens_per_j']):.3g}", ratio_text(moe, "ratio_output_tokens_per_j"),
                    ratio_text(moe, "ratio_responses_per_s"), f"{float(moe['responses_per_s']):.3g}",
                    f"{float(dense['responses_per_s']):.3g}",
                    f"{_ms(moe.get('ttft_s_p50', ''))} / {_ms(dense.get('ttft_s_p50', ''))} ms",
                    f"{_ms(moe.get('tpot_s_p50', ''))} / {_ms(dense.get('tpot_s_p50', ''))} ms"])
    return markdown(HEADER, "|---|---|---:|---:|---|---|---:|---:|---:|---:|", out)


if __name__ == "__main__":
    main(table, sys.argv[1:])
