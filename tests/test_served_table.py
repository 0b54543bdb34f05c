"""docs/results/served-h100.md's table is what benchmarks/served_table.py makes of the committed served-h100
report: a cell edited by hand, or a report regenerated without the page, fails here."""
from __future__ import annotations

from table_pages import ROOT, generated_rows, rows_missing_from


def test_the_served_table_is_generated_from_the_committed_report() -> None:
    rows = generated_rows("served_table.py", ROOT / "benchmarks" / "results" / "runs" / "served-h100" / "report")
    assert len(rows) == 1 + 2  # the header and the MoE against each twin at concurrency 8
    stale = rows_missing_from("served-h100.md", rows)
    assert not stale, f"docs/results/served-h100.md differs from benchmarks/served_table.py: {stale[:3]}"
