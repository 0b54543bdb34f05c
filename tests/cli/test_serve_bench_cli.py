"""`moecluster bench --workload serve` through the real CLI on CPU, without Ray: a tiny MoE that the command
starts (`--command`, real `transformers serve` with continuous batching) under an open-loop Poisson load,
printed as the report prints a served model; a pair on a server already running (`--url`, `--dense-url`),
closed loop, with ratios;
and bad serve options refused naming the culprit (one line, exit 2, from the real CLI)."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from moecluster.workloads.serve.server import Server
from moecluster.workloads.serve.tiny import TinyModel
from moecluster.cli import cli
from moecluster.head.errors import InputError

MOECLUSTER = str(Path(sys.executable).parent / "moecluster")
TRANSFORMERS = str(Path(sys.executable).parent / "transformers")
SERVE = f"{TRANSFORMERS} serve {{model}} --port {{port}} --device cpu --continuous-batching"


def bench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MOECLUSTER, "bench", "--workload", "serve", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "240", "HF_HUB_OFFLINE": "1"})


@pytest.fixture
def dense_server(tiny_served_models: tuple[TinyModel, TinyModel], tmp_path: Path) -> Iterator[Server]:
    pytest.importorskip("fastapi")
    os.environ["HF_HUB_OFFLINE"] = "1"
    server = Server.start(SERVE, model=str(tiny_served_models[1].path), gpus="", log=tmp_path / "dense.log",
                          startup_timeout_s=300)
    yield server
    server.stop()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bench_starts_a_server_and_measures_it_under_a_poisson_load_as_the_report_shows_it(
        tiny_served_models: tuple[TinyModel, TinyModel]) -> None:
    pytest.importorskip("fastapi")
    moe, _ = tiny_served_models
    out = bench("--command", SERVE, "--model", str(moe.path), "--params-total", str(moe.params_total),
                "--params-active", str(moe.params_active), "--request-rate", "3", "--seed", "4", "--max-tokens",
                "12", "--duration", "2", "--warmup", "0.5", "--repeats", "2", "--meter", "fake", "--device", "cpu",
                "--startup-timeout", "240", timeout=560)
    assert out.returncode == 0, out.stderr[-4000:]
    text = " ".join(out.stdout.split())  # the tables may wrap: compare words
    for expected in ("Served model under load", "bench-tiny-moe-r3: request rate 3/s (Poisson, seed 4)",
                     "moe tiny-moe", "arriving / s · queued at close", "output tokens / J", "TTFT p50",
                     "Ws / response / active param", "token counts from usage"):
        assert expected in text, expected
    assert "overloaded" not in text  # 3 requests/s of 12 tokens are well within a CPU's reach


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bench_serves_a_pair_by_url_with_ratios_and_says_the_gpus_are_metered_as_they_are(
        tiny_served_models: tuple[TinyModel, TinyModel], dense_server: Server) -> None:
    moe, dense = tiny_served_models
    # both sides on the running server: what is compared here is the machinery, not two models
    out = bench("--url", dense_server.base_url, "--model", str(dense.path), "--dense-url", dense_server.base_url,
                "--dense-model", str(dense.path), "--concurrency", "2", "--max-tokens", "8", "--duration", "1.5",
                "--warmup", "0.3", "--repeats", "2", "--meter", "fake", "--device", "cpu", timeout=560)
    assert out.returncode == 0, out.stderr[-4000:]
    text = " ".join(out.stdout.split())
    for expected in ("Served models: MoE against dense under load", "bench-tiny-dense-c2: concurrency 2",
                     "ratio MoE / dense", "TTFT p50", "external server at " + dense_server.base_url):
        assert expected in text, expected
    assert "arriving / s" not in text  # a closed loop has no arrival rate
    dense_server.check_alive()  # an external server is left running


@pytest.mark.parametrize("args, culprit", [
    (["--url", "http://127.0.0.1:1", "--model", "m", "--concurrency", "2", "--request-rate", "1"],
     "give --concurrency (requests kept in flight) or --request-rate (requests/s arriving), not both"),
    (["--url", "http://127.0.0.1:1", "--model", "m", "--request-rate", "nan"], "'nan' is not a finite number"),
    (["--url", "http://127.0.0.1:1", "--model", "m", "--request-rate", "-2"], "--request-rate"),
    (["--url", "http://127.0.0.1:1", "--model", "m", "--max-in-flight", "4"],
     "--max-in-flight is an option of an open-loop load"),
    (["--url", "http://127.0.0.1:1"], "--model: required"),
    (["--model", "m"], "give exactly one of --url (a running server) or --command"),
    (["--command", "vllm serve {model}", "--model", "m"], "--command: has no {port}"),
    (["--url", "http://127.0.0.1:1", "--model", "m", "--gen-tokens", "4"], "--gen-tokens is not an option of"
     " --workload serve"),
    (["--url", "http://127.0.0.1:1", "--model", "m", "--dense-model", "d"], "--dense-model needs --dense-url"),
])
def test_bad_serve_bench_options_are_refused_naming_the_culprit(args: list[str], culprit: str) -> None:
    done = CliRunner().invoke(cli, ["bench", "--workload", "serve", *args])
    said = str(done.exception) if isinstance(done.exception, InputError) else done.output  # a click error: exit 2
    assert done.exit_code in (1, 2) and culprit in said, (done.output, done.exception)
    assert isinstance(done.exception, InputError) or done.exit_code == 2


def test_serve_options_are_refused_by_the_other_workloads_in_one_line_exit_2() -> None:
    out = subprocess.run([MOECLUSTER, "bench", "--workload", "llm", "--request-rate", "2"], capture_output=True,
                         text=True, timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1
    assert "--request-rate is an option of --workload serve (not llm)" in lines[0]
