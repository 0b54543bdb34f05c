"""`moecluster report` end to end through the real CLI, on a stored run with known values, as a user meets it:
one call writes every format and the page at 80 columns; others try the flag's forms and bad input."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import moecluster_synthetic as syn
from moecluster.report.aggregate.bootstrap import METHOD

_SCRIPT = Path(sys.executable).with_name("moecluster")  # the installed console script
CLI = ([str(_SCRIPT)] if _SCRIPT.exists()
       else [sys.executable, "-c", "from moecluster.cli import main; main()"])
Run = tuple[Path, subprocess.CompletedProcess[str]]
ENVIRONMENT = {"collected_at": "2025-01-02T03:04:05+0000", "git": {"revision": "4ba9c36" + "0" * 33, "dirty": True},
               "head": {"host": "head-1", "python": "3.11.7", "platform": "Linux",
                        "versions": {"torch": "2.4.0", "cuda": "12.4", "moecluster": "0.1.0", "ray": "2.40.0",
                                     "driver": "550.54"},
                        "gpus": [{"index": 0, "uuid": "GPU-a", "name": "NVIDIA H100 80GB HBM3"},
                                 {"index": 1, "uuid": "GPU-b", "name": "NVIDIA H100 80GB HBM3"}]},
               "cluster": {"ray": "2.40.0", "nodes": [{"node_id": "n1"}, {"node_id": "n2"}]}}
UNAVAILABLE = "unavailable: device cpu: no GPU energy counter"


def first_column(stdout: str) -> list[str]:
    """The first cell of every table row as printed, its wrapped lines joined (a line whose second cell is
    empty continues the row above)."""
    rows: list[str] = []
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) < 2:
            continue
        if not cells[1] and rows:
            rows[-1] = f"{rows[-1]} {cells[0]}".strip()
        else:
            rows.append(cells[0])
    return rows


def _run(*args: str, columns: int | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One CLI call at 80 columns writing every format (named after one --format) and the HTML page."""
    root = tmp_path_factory.mktemp("runs")
    run_dir = syn.write_run(root, "demo", syn.annotated(syn.demo_results()))
    (run_dir / "environment.json").write_text(json.dumps(ENVIRONMENT))
    proc = _run("report", "demo", "--runs-dir", str(root), "--format", "csv", "json", "parquet",
                "--out", str(root / "out"), "--html", str(root / "html"), columns=80)
    assert proc.returncode == 0, proc.stderr
    return root, proc


def test_tables_are_printed_side_by_side(run: Run) -> None:
    _, proc = run
    out = proc.stdout
    for title in ("MoE beside its dense twin", "Tasks: throughput and energy", "Tasks: how each ran",
                  "Seed 000's normalisations", "Break-even", "Measured vs roofline", "Expert parallelism",
                  "Failed tasks"):
        assert title in out, title
    # seed 001's break-even, marked for its 5.8x gap, and its interval
    assert re.search(r"│ 112 M[¹²³⁴]* +│ 1\d\dM – 1\d\dM +│", out)
    assert ("bootstrap of each size's ratio from its own interval (t over replicates, or one process's windows)"
            " (2,000 resamples, RNG seed 0)") in re.sub(r"\s+", " ", out)
    assert "interpolated between 63.4M and 368M, 5.8× apart" in re.sub(r"\s+", " ", out)
    assert "cluster-wide: not measured: no Prometheus URL given" in out
    assert "wrote" in proc.stderr and "index.html" in proc.stderr


def test_every_line_fits_80_columns_and_nothing_is_cut(run: Run) -> None:
    _, proc = run
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    # the reason energy is missing is said whole, once per table, never twice in a row nor cut
    assert proc.stdout.count("unavailable: device cpu") == proc.stdout.count(UNAVAILABLE) >= 1
    assert not any(line.count("device cpu") > 1 for line in lines)
    # dense and MoE rows keep the part that tells them apart
    names = set(first_column(proc.stdout))
    for name in ("small dense/active", "small moe/sorted (vs dense/active)", "xxl dense/total (twin of sorted)",
                 "xxl moe/sorted", "large moe/sorted"):
        assert name in names, name


def test_figures_use_one_thousands_separator_style(run: Run) -> None:
    _, proc = run
    cells = [line for line in proc.stdout.splitlines() if line.startswith("│")]
    assert cells
    bare = [m for line in cells for m in re.findall(r"(?<![\w.,\[])\d{4,}(?![\w,])", line)]
    assert bare == []  # "7083" beside "16,693" no more
    assert any(re.search(r"\b\d{1,3},\d{3}\b", line) for line in cells)


def test_environment_is_read_as_key_value_pairs(run: Run) -> None:
    _, proc = run
    text = re.sub(r"\s+", " ", proc.stdout)
    assert ("environment: host head-1 · python 3.11.7 · torch 2.4.0 · CUDA 12.4 · driver 550.54 · moecluster 0.1.0"
            " · Ray 2.40.0 · git 4ba9c3600000 (uncommitted changes) · GPUs 2× NVIDIA H100 80GB HBM3 · cluster nodes 2"
            in text)
    assert "{" not in text.split("environment:")[1].split("MoE beside")[0]


def test_new_record_fields_and_warnings_are_shown(run: Run) -> None:
    _, proc = run
    text = re.sub(r"\s+", " ", proc.stdout)
    assert "warning: 2 of 29 tasks measured over fewer than 3 windows" in text
    assert "fewer than 3 windows (2): a t interval with 1 degree of freedom, very wide" in text
    assert "sorted · bmm · captured" in text and "fused · addmm · eager" in text
    assert "graph eager: the router syncs with the host" in text
    assert "inf/s −1.2 %, inf/J +0.4 %" in text
    assert "40.0 W, settled in 12 s" in text and "idle: settled within 1 % over 5 s" in text
    assert "energy resolution ±0.5 J is 2 % of the window's 25 J" in text
    assert "† the 95 % CI of the ratio contains 1" in text


def test_csv_pairs_hold_the_known_ratios(run: Run) -> None:
    root, _ = run
    pairs = pd.read_csv(root / "out" / "pairs.csv")
    row = pairs[(pairs.impl == "sorted") & (pairs.preset == "large") & (pairs.match == "total")].iloc[0]
    assert row.ratio_inferences_per_j == pytest.approx(95.35 / 57.37)
    assert row.ratio_inferences_per_s == pytest.approx(15_762.55 / 17_151.69, rel=1e-4)
    assert row.ratio_inferences_per_j_lo < row.ratio_inferences_per_j < row.ratio_inferences_per_j_hi
    assert row.moe_inferences_per_j == pytest.approx(95.35, rel=1e-3)  # the geometric mean of the windows
    unavailable = pairs[pairs.match == "active"].iloc[0]
    assert math.isnan(unavailable.ratio_inferences_per_j)  # an empty cell, never 0
    assert unavailable.energy_note == UNAVAILABLE
    assert "fewer than 3 windows (2)" in unavailable.warnings
    assert "xxl-grouped-oom" in set(pairs.pair_id)


def test_csv_tasks_carry_form_drift_idle_and_warnings(run: Run) -> None:
    root, _ = run
    tasks = pd.read_csv(root / "out" / "tasks.csv").set_index("task_id")
    no_energy = tasks[tasks.energy_note.notna()]
    assert len(no_energy) == 2 and no_energy.energy_j.isna().all() and no_energy.inferences_per_j.isna().all()
    assert (tasks.energy_j.dropna() > 0).all()
    moe = tasks.loc["large-sorted-total-float32-b128-moe"]
    assert (moe.form_layout, moe.form_kernel, moe.form_graph) == ("sorted", "bmm", "captured")
    assert "candidates=bmm graph 1.1 ms" in moe.form
    assert moe.drift_inferences_per_s == pytest.approx(-0.012) and moe.idle_settle_s == pytest.approx(12.0)
    assert tasks.loc["small-sorted-active-float32-b128-moe", "few_windows"]
    assert tasks.loc["xxl-sorted-total-float32-b128-moe", "warnings"].startswith("energy resolution")
    windows = pd.read_csv(root / "out" / "windows.csv")
    assert len(windows) == sum(tasks.windows) and {"position", "energy_resolution_j"} <= set(windows.columns)


def test_csv_break_even_names_its_interval(run: Run) -> None:
    root, _ = run
    be = pd.read_csv(root / "out" / "breakeven.csv")
    be = be[be.metric == "inferences_per_j"].set_index("impl")
    assert be.loc["sorted", "break_even_params"] == pytest.approx(111.6e6, rel=1e-3)
    assert be.loc["sorted", "break_even_params_lo"] < 111.6e6 < be.loc["sorted", "break_even_params_hi"]
    assert be.loc["sorted", "ci_method"] == METHOD
    assert be.loc["sorted", "gap_factor"] == pytest.approx(368_287_260 / 63_418_800)
    assert be.loc["sorted", "ci_resamples"] == 2000 and be.loc["sorted", "resamples_without_upward_crossing"] == 0
    assert math.isnan(be.loc["grouped", "break_even_params"])
    assert be.loc["grouped", "verdict"].startswith("no crossover")


def test_json_and_parquet_match_the_csv(run: Run) -> None:
    root, _ = run
    doc = json.loads((root / "out" / "report.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert doc["meta"]["run_id"] == "demo" and doc["meta"]["environment"].startswith("host head-1 · ")
    assert set(doc["tables"]) >= {"tasks", "windows", "pairs", "breakeven", "normalisations", "roofline", "ep",
                                  "cluster"}
    csv = pd.read_csv(root / "out" / "pairs.csv")
    assert len(doc["tables"]["pairs"]) == len(csv)
    parquet = pd.read_parquet(root / "out" / "pairs.parquet")
    assert list(parquet.columns) == list(csv.columns) and len(parquet) == len(csv)
    assert parquet.ratio_inferences_per_j.sum() == pytest.approx(csv.ratio_inferences_per_j.sum())


def test_format_takes_commas_and_an_unknown_one_is_one_line_and_exit_2(run: Run, tmp_path: Path) -> None:
    root, _ = run
    ok = _run("report", "--format", "csv,json", "parquet", "demo", "--runs-dir", str(root), "--out",
              str(tmp_path / "out"), "--quiet")
    assert ok.returncode == 0, ok.stderr
    assert {p.suffix for p in (tmp_path / "out").iterdir()} == {".csv", ".json", ".parquet"}
    bad = _run("report", "demo", "--runs-dir", str(root), "--format", "csv", "xml", "--quiet")
    assert bad.returncode == 2 and bad.stdout == ""  # "xml" is not a format name, so it is an extra argument
    (line,) = bad.stderr.strip().splitlines()
    assert line.startswith("moecluster: error: ")
    worse = _run("report", "demo", "--runs-dir", str(root), "--format", "csv,xml", "--quiet")
    assert worse.returncode == 2
    assert worse.stderr.strip().splitlines() == [
        "moecluster: error: Invalid value for '--format': 'xml' is not a format (choose from csv, parquet, json)"]


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
