"""What the tests of the result pages share: the rows a table script makes of committed reports, and the
rows a page under docs/results/ lacks (a cell edited by hand, or a report regenerated without its page)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def generated_rows(script: str, *reports: Path) -> list[str]:
    """The Markdown table rows (header included) that `benchmarks/<script>` prints for `reports`."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *map(str, reports)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line.startswith("| ")]


def rows_missing_from(page: str, rows: list[str]) -> list[str]:
    """The `rows` that docs/results/<page> does not hold, in order."""
    text = (ROOT / "docs" / "results" / page).read_text()
    return [row for row in rows if row not in text]
