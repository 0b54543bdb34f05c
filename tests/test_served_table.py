"""docs/results/served-h100.md's table is what benchmarks/served_table.py makes of the committed served-h100
report: a cell edited by hand, or a report regenerated without the page, fails here."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_served_table_is_generated_from_the_committed_report() -> None:
    report = ROOT / "benchmarks" / "results" / "runs" / "served-h100" / "report"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "served_table.py"), str(report)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 2  # the header and the MoE against each twin at concurrency 8
    page = (ROOT / "docs" / "results" / "served-h100.md").read_text()
    stale = [row for row in rows if row not in page]
    assert not stale, f"docs/results/served-h100.md differs from benchmarks/served_table.py: {stale[:3]}"
