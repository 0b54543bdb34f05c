"""`moecluster report` end to end through the real CLI, on a stored run with known values."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import moecluster_synthetic as syn

_SCRIPT = Path(sys.executable).with_name("moecluster")  # the installed console script
CLI = ([str(_SCRIPT)] if _SCRIPT.exists()
       else [sys.executable, "-c", "from moecluster.orchestrator.cli import main; main()"])


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One CLI call writing every format and the HTML page (the CLI starts slowly: torch)."""
    root = tmp_path_factory.mktemp("runs")
    syn.write_run(root, "demo", syn.demo_results())
    proc = _run("report", "demo", "--runs-dir", str(root), "--format", "csv", "--format", "json",
                "--format", "parquet", "--out", str(root / "out"), "--html", str(root / "html"))
    assert proc.returncode == 0, proc.stderr
    return root, proc


def test_tables_are_printed_side_by_side(run) -> None:  # type: ignore[no-untyped-def]
    _, proc = run
    out = proc.stdout
    for title in ("MoE beside its dense twin", "Tasks (mean [95 % CI]", "Seed 000's normalisations",
                  "Break-even", "Measured vs roofline", "Expert parallelism", "Failed tasks"):
        assert title in out, title
    assert "MoE overtakes dense at 112M parameters" in out
    assert "cluster-wide: not measured: no Prometheus URL given" in out
    assert "unavailable: device cpu: no GPU energy counter" in out
    assert "wrote" in proc.stderr and "index.html" in proc.stderr


def test_csv_pairs_hold_the_known_ratios(run) -> None:  # type: ignore[no-untyped-def]
    root, _ = run
    pairs = pd.read_csv(root / "out" / "pairs.csv")
    row = pairs[(pairs.impl == "sorted") & (pairs.preset == "large") & (pairs.match == "total")].iloc[0]
    assert row.ratio_inferences_per_j == pytest.approx(95.35 / 57.37)
    assert row.ratio_inferences_per_s == pytest.approx(15_762.55 / 17_151.69)
    assert row.ratio_inferences_per_j_lo < row.ratio_inferences_per_j < row.ratio_inferences_per_j_hi
    assert row.moe_inferences_per_j == pytest.approx(95.35) and row.dense_inferences_per_j == pytest.approx(57.37)
    unavailable = pairs[pairs.match == "active"].iloc[0]
    assert math.isnan(unavailable.ratio_inferences_per_j)  # an empty cell, never 0
    assert unavailable.energy_note == "unavailable: device cpu: no GPU energy counter"
    assert "xxl-grouped-oom" in set(pairs.pair_id)


def test_csv_tasks_and_break_even(run) -> None:  # type: ignore[no-untyped-def]
    root, _ = run
    tasks = pd.read_csv(root / "out" / "tasks.csv")
    no_energy = tasks[tasks.energy_note.notna()]
    assert len(no_energy) == 2 and no_energy.energy_j.isna().all() and no_energy.inferences_per_j.isna().all()
    assert (tasks.energy_j.dropna() > 0).all()
    be = pd.read_csv(root / "out" / "breakeven.csv")
    be = be[be.metric == "inferences_per_j"].set_index("impl")
    assert be.loc["sorted", "break_even_params"] == pytest.approx(111.6e6, rel=1e-3)
    assert math.isnan(be.loc["grouped", "break_even_params"])
    assert be.loc["grouped", "verdict"].startswith("no crossover")


def test_json_and_parquet_match_the_csv(run) -> None:  # type: ignore[no-untyped-def]
    root, _ = run
    doc = json.loads((root / "out" / "report.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert doc["meta"]["run_id"] == "demo"
    assert set(doc["tables"]) >= {"tasks", "pairs", "breakeven", "normalisations", "roofline", "ep", "cluster"}
    csv = pd.read_csv(root / "out" / "pairs.csv")
    assert len(doc["tables"]["pairs"]) == len(csv)
    parquet = pd.read_parquet(root / "out" / "pairs.parquet")
    assert list(parquet.columns) == list(csv.columns) and len(parquet) == len(csv)
    assert parquet.ratio_inferences_per_j.sum() == pytest.approx(csv.ratio_inferences_per_j.sum())


def test_unknown_run_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = _run("report", "nope", "--runs-dir", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"moecluster: error: run 'nope' not found (no runs under {tmp_path})"]


def test_cluster_wide_section_from_prometheus(tmp_path: Path) -> None:
    rate, busy_w, idle_w = 1000.0, 300.0, 50.0
    a = syn.task("a", "p", "dense", rate=rate, eff=rate / busy_w, total=10, active=10, spread=(0.0,),
                 eff_spread=(0.0,), match="total", started_at=syn.T0, duration_s=30.0)
    b = syn.task("b", "p", "moe", rate=rate, eff=rate / busy_w, total=10, active=5, spread=(0.0,),
                 eff_spread=(0.0,), gpu_index=1, started_at=syn.T0 + 40.0, duration_s=30.0)
    syn.write_run(tmp_path, "cl", [a, b])
    busy = {0: [(a.started_at + 3, a.finished_at)], 1: [(b.started_at + 3, b.finished_at)], 2: []}
    series = {syn.gpu_labels("node-a", i): syn.counter_samples(s, idle_w, busy_w, syn.T0 - 300, syn.T0 + 300)
              for i, s in busy.items()}
    with syn.FakePrometheus(series) as prom:
        proc = _run("report", "cl", "--runs-dir", str(tmp_path), "--prometheus", prom.url, "--format", "csv",
                    "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert "Cluster-wide energy over the run" in proc.stdout
    assert "within ±2%" in proc.stdout
    cluster = pd.read_csv(tmp_path / "out" / "cluster.csv").iloc[0]
    assert cluster.gpus == 3 and cluster.task_gpus == 2 and bool(cluster.check_ok)
    assert abs(cluster.check_rel_diff) < 0.02
    assert cluster.cluster_inferences_per_j < cluster.tasks_inferences_per_j
