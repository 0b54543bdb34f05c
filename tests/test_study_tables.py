"""docs/results/seed-study.md's result tables are what benchmarks/study_tables.py makes of the committed
reports: a table edited by hand, or a report regenerated without the page, fails here."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "benchmarks" / "results" / "runs"
SETTINGS = ("fp32-b128", "fp32-b8192", "bf16-b128", "bf16-b8192")


def test_the_seed_study_tables_are_generated_from_the_committed_reports() -> None:
    reports = [str(RUNS / f"seed-study-h100-{s}" / "report") for s in SETTINGS]
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "study_tables.py"), *reports],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) >= 4 * 12  # a header and a row per preset and implementation, per setting
    page = (ROOT / "docs" / "results" / "seed-study.md").read_text()
    stale = [row for row in rows if row not in page]
    assert not stale, f"docs/results/seed-study.md differs from benchmarks/study_tables.py: {stale[:3]}"
