"""docs/results/llm-h100.md's table is what benchmarks/llm_table.py makes of the committed llm-h100 report: a
cell edited by hand, or a report regenerated without the page, fails here."""
from __future__ import annotations

from table_pages import ROOT, generated_rows, rows_missing_from


def test_the_llm_table_is_generated_from_the_committed_report() -> None:
    rows = generated_rows("llm_table.py", ROOT / "benchmarks" / "results" / "llm_h100" / "report")
    assert len(rows) == 1 + 8  # the header and one row per phase, batch and prompt
    stale = rows_missing_from("llm-h100.md", rows)
    assert not stale, f"docs/results/llm-h100.md differs from benchmarks/llm_table.py: {stale[:3]}"
