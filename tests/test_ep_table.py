"""docs/results/expert-parallelism.md's table is what benchmarks/ep_table.py makes of the committed ep-h200x2
report: a cell edited by hand, or a report regenerated without the page, fails here."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_ep_table_is_generated_from_the_committed_report() -> None:
    report = ROOT / "benchmarks" / "results" / "runs" / "ep-h200x2" / "report"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ep_table.py"), str(report)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 12  # the header and one row per MoE task
    page = (ROOT / "docs" / "results" / "expert-parallelism.md").read_text()
    stale = [row for row in rows if row not in page]
    assert not stale, f"docs/results/expert-parallelism.md differs from benchmarks/ep_table.py: {stale[:3]}"
