"""docs/results/seed-study.md's result tables are what benchmarks/study_tables.py makes of the committed
reports: a table edited by hand, or a report regenerated without the page, fails here."""
from __future__ import annotations

from table_pages import ROOT, generated_rows, rows_missing_from

RUNS = ROOT / "benchmarks" / "results" / "runs"
SETTINGS = ("fp32-b128", "fp32-b8192", "bf16-b128", "bf16-b8192")


def test_the_seed_study_tables_are_generated_from_the_committed_reports() -> None:
    rows = generated_rows("study_tables.py", *(RUNS / f"seed-study-h100-{s}" / "report" for s in SETTINGS))
    assert len(rows) >= 4 * 12  # a header and a row per preset and implementation, per setting
    stale = rows_missing_from("seed-study.md", rows)
    assert not stale, f"docs/results/seed-study.md differs from benchmarks/study_tables.py: {stale[:3]}"
