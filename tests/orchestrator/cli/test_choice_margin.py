"""How clearly each form choice was won, end to end: a tiny CPU sweep with two replicates through `submit`,
its margins in the store's records, in the report's "how each ran" table and in the CSV export."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from moecluster.orchestrator.store import RunStore
from test_submit import cli

SWEEP = """\
name: margins
models: [{preset: small}]
impl: grouped
batch_size: 64
duration_s: 0.2
warmup_s: 0
repeats: 1
replicates: 2
device: cpu
meter: fake
"""


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_every_choice_carries_its_margin_to_the_store_the_report_and_the_export(tmp_path: Path) -> None:
    sweep, runs = tmp_path / "m.yaml", tmp_path / "runs"
    sweep.write_text(SWEEP)
    proc = cli("submit", str(sweep), "--runs-dir", str(runs), "--run-id", "m", "--no-agents", "--num-cpus", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with RunStore(runs / "m", read_only=True) as store:
        results = store.results()
    assert len(results) == 4 and all(r.status == "ok" for r in results)
    for r in results:  # every replicate chose afresh, and says how clearly
        assert r.choice is not None and r.choice.chosen
        assert r.form["choice"].startswith("by measurement at prepare") or r.form["choice"].startswith("cached")
    raced = [r.choice for r in results if r.choice is not None and r.choice.runner_up is not None]
    assert raced and all(c.margin is not None for c in raced)
    out = cli("report", "m", "--runs-dir", str(runs), "--format", "csv", "--out", str(tmp_path / "csv"),
              env={"COLUMNS": "300"})
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "margin: its lead over the runner-up > the noise measured while choosing" in text
    assert any(word in text for word in ("within noise", " > ", "screened"))
    with (tmp_path / "csv" / "tasks.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for row in rows:
        assert row["choice"].startswith("r1: ") and "; r2: " in row["choice"]
        assert row["forms_differ"] in ("True", "False") and row["choice_within_noise"] in ("True", "False")
    assert any(row["choice_margin"] for row in rows)
