"""Replicates end to end through the console script: a tiny CPU sweep with `replicates: 2` whose report says
what its intervals cover and how clearly each replicate's form choice was won (store, report, export), two
runs of it pooled by `report A B`, and a run of another sweep refused."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from moecluster.head.store import RunStore
from test_submit import cli

SWEEP = """\
name: replicated
models: [{preset: small}]
impl: grouped
batch_size: 64
duration_s: 0.3
warmup_s: 0.05
repeats: 2
replicates: 2
device: cpu
meter: fake
"""


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_replicates_report_their_cover_and_runs_pool_or_are_refused(tmp_path: Path) -> None:
    sweep, runs = tmp_path / "r.yaml", tmp_path / "runs"
    sweep.write_text(SWEEP)
    for run in ("a", "b"):
        proc = cli("submit", str(sweep), "--runs-dir", str(runs), "--run-id", run, "--no-agents", "--num-cpus", "2")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "4 ok, 0 failed" in proc.stderr
    one = cli("report", "a", "--runs-dir", str(runs), "--format", "csv", "--out", str(tmp_path / "ra"),
              env={"COLUMNS": "250"})
    assert one.returncode == 0, one.stderr
    text = " ".join(one.stdout.split())
    assert "95 % CI covers: 2 replicates on" in text and "2 windows each" in text
    assert "small moe/grouped r2" in text  # how each replicate ran, a row each
    assert "margin: its lead over the runner-up > the noise measured while choosing" in text
    with RunStore(runs / "a", read_only=True) as store:
        choices = [r.choice for r in store.results()]
    assert len(choices) == 4 and all(c is not None and c.chosen for c in choices)  # every replicate chose afresh
    assert any(c is not None and c.runner_up is not None and c.margin is not None for c in choices)
    with (tmp_path / "ra" / "tasks.csv").open() as f:
        tasks = list(csv.DictReader(f))
    assert len(tasks) == 2 and all(t["choice"].startswith("r1: ") and "; r2: " in t["choice"] for t in tasks)
    assert all(t["forms_differ"] in ("True", "False") for t in tasks) and any(t["choice_margin"] for t in tasks)
    with (tmp_path / "ra" / "pairs.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["pair_id"] == "small-grouped-fp32-b64" and row["replicates"] == "2"
    assert row["ci_covers"].startswith("2 replicates on")
    both = cli("report", "a", "b", "--runs-dir", str(runs), env={"COLUMNS": "250"})
    assert both.returncode == 0, both.stderr
    assert "4 replicates from 2 runs on" in " ".join(both.stdout.split())
    shutil.copytree(runs / "b", runs / "c")
    resolved = (runs / "c" / "sweep.yaml").read_text()
    (runs / "c" / "sweep.yaml").write_text(resolved.replace("duration_s: 0.3", "duration_s: 0.5"))
    refused = cli("report", "a", "c", "--runs-dir", str(runs))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith("moecluster: error: runs a and c differ (sweep key duration_s: 0.3 vs 0.5)")
    anyway = cli("report", "a", "c", "--runs-dir", str(runs), "--pool-anyway", "--quiet")
    assert anyway.returncode == 0 and "pooled although runs a and c differ" in anyway.stderr
