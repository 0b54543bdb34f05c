"""docs/results/expert-parallelism.md's table is what benchmarks/ep_table.py makes of the committed ep-h200x2
report: a cell edited by hand, or a report regenerated without the page, fails here."""
from __future__ import annotations

from table_pages import ROOT, generated_rows, rows_missing_from


def test_the_ep_table_is_generated_from_the_committed_report() -> None:
    rows = generated_rows("ep_table.py", ROOT / "benchmarks" / "results" / "runs" / "ep-h200x2" / "report")
    assert len(rows) == 1 + 12  # the header and one row per MoE task
    stale = rows_missing_from("expert-parallelism.md", rows)
    assert not stale, f"docs/results/expert-parallelism.md differs from benchmarks/ep_table.py: {stale[:3]}"
