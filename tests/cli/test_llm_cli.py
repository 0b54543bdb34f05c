"""LLM workloads through the real CLI on CPU: `bench --workload llm`, a tiny `submit`, its `report`, bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

MOECLUSTER = str(Path(sys.executable).parent / "moecluster")
TINY = ["--workload", "llm", "--preset", "tiny-mixtral", "--device", "cpu", "--batch-size", "2", "--prompt-len", "6",
        "--gen-tokens", "3", "--duration", "0.2", "--warmup", "0"]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MOECLUSTER, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"})


def test_bench_runs_one_llm_pair_and_reports_tokens() -> None:
    out = cli("bench", *TINY, "--match", "active", "--meter", "fake", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    dense, moe = json.loads(out.stdout)
    assert (dense["spec"]["architecture"], moe["spec"]["architecture"]) == ("mistral", "mixtral")
    assert dense["spec"]["match"] == "active" and moe["spec"]["phase"] == "decode"
    for r in (dense, moe):
        assert r["status"] == "ok" and r["energy_source"] == "fake-power-model"
        assert all(w["inferences"] % (2 * 3) == 0 and w["inferences"] > 0 for w in r["windows"])  # whole responses
        assert r["roofline"]["items_per_batch"] == 6 and r["roofline"]["fraction"] > 0
        assert "relative error" in r["form"]["check"]


def test_bench_dry_run_shows_both_twins_and_the_memory() -> None:
    out = cli("bench", "--workload", "llm", "--preset", "mixtral-8x7b-8l", "--dtype", "bfloat16", "--dry-run")
    assert out.returncode == 0, out.stderr
    for text in ("11,872,309,248", "3,416,592,384", "dense/total", "dense/active", "ff114688", "ff28672", "GiB"):
        assert text in out.stdout


@pytest.mark.parametrize("args, culprit", [
    (["--workload", "llm", "--preset", "mixtrl"], "--preset mixtrl: unknown llm preset 'mixtrl' (did you mean"),
    (["--workload", "llm", "--preset", "llama-3.3-70b"], "is dense"),
    (["--workload", "llm", "--load", "zipf"], "--load is an option of --workload mlp"),
    (["--workload", "llm", "--impl", "sorted"], "--impl sorted is an mlp implementation"),
    (["--workload", "llm", "--match", "seed"], "--match seed: llm twins match total or active"),
    (["--workload", "llm", "--path", "reference", "--cuda-graphs", "--device", "cpu"], "--cuda-graphs needs"),
    (["--phase", "decode"], "--phase is an option of --workload llm"),
    (["--impl", "library"], "--impl library is an llm implementation"),
    (["--preset", "smal"], "unknown preset 'smal' (did you mean 'small'?"),
    (["--workload", "llm", "--preset", "mixtral-8x22b", "--device", "cpu"], "but this host has"),
])
def test_bad_llm_bench_input_is_one_line_and_exit_2(args: list[str], culprit: str) -> None:
    out = cli("bench", *args)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(lines) == 1 and culprit in lines[0] and lines[0].startswith("moecluster: error:")


SWEEP = """\
name: tiny-llm
replicates: 1  # one process per pair: this test counts pairs and tasks
workload: llm
models: [{preset: tiny-qwen2-moe}]
impl: grouped
match: [total, active]
phase: [prefill, decode]
batch_size: 2
prompt_len: 6
gen_tokens: 3
device: cpu
meter: fake
duration_s: 0.2
warmup_s: 0
repeats: 1
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tiny_llm_sweep_through_submit_and_report(tmp_path: Path) -> None:
    sweep = tmp_path / "tiny-llm.yaml"
    sweep.write_text(SWEEP)
    runs = tmp_path / "runs"
    proc = cli("submit", str(sweep), "--runs-dir", str(runs), "--run-id", "llm", "--no-agents", "--num-cpus", "2",
               timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "6 ok, 0 failed" in proc.stderr
    report = cli("report", "llm", "--runs-dir", str(runs), "--html", str(tmp_path / "html"), "--format", "csv",
                 "--out", str(tmp_path / "out"))
    assert report.returncode == 0, report.stderr[-3000:]
    for text in ("LLM: tokens/J of the MoE against its dense twins", "tiny-qwen2-moe grouped · decode p6 g3",
                 "tiny-qwen2-moe grouped · prefill", "critical batch", "LLM: seed 000's normalisations",
                 "J / response"):
        assert text in report.stdout
    page = (tmp_path / "html" / "index.html").read_text()
    # one batch size: every LLM series has one point, so the page says why it draws no LLM figure
    assert "no LLM series has energy readings at two or more points" in page
    assert not (tmp_path / "html" / "figure-llm.png").exists()
    rows = (tmp_path / "out" / "llm.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 and "critical_batch_tokens" in rows[0]


def test_estimate_reads_an_llm_sweep_in_tokens_per_forward() -> None:
    sweep = Path(__file__).resolve().parents[2] / "benchmarks" / "sweeps" / "llm-h100.yaml"
    out = cli("estimate", "--sweep", str(sweep), "--gpu", "h100")
    assert out.returncode == 0, out.stderr
    assert "mixtral-8x7b-8l" in out.stdout and "295 / 1,181" in out.stdout and "8192" in out.stdout
