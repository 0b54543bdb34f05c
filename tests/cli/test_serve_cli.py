"""Workload serve through the real CLI on CPU: `transformers serve` (real, continuous batching) serving a
tiny MoE and its dense twin, measured by `submit` with the fake meter, reported by `report`; in the same
run a pair whose MoE server crashes under load and whose dense server never becomes healthy (both failed
tasks naming the cause and the server log's last lines); and bad serve sweeps refused in one line."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from moecluster.workloads.serve.tiny import TinyModel
from moecluster.head.store import RunStore

pytest.importorskip("transformers")
pytest.importorskip("fastapi")

MOECLUSTER = str(Path(sys.executable).parent / "moecluster")
TRANSFORMERS = str(Path(sys.executable).parent / "transformers")
CRASHING = Path(__file__).with_name("crashing_server.py")


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MOECLUSTER, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"})


def served(model: TinyModel, command: str, **extra: object) -> str:
    fields = {"name": model.name, "model": str(model.path), "params_total": model.params_total,
              "params_active": model.params_active, "command": command, **extra}
    return json.dumps(fields)


def transformers_serve(prefix: str = "", batching: str = "--continuous-batching") -> str:
    return f"{prefix}{TRANSFORMERS} serve {{model}} --port {{port}} --device cpu {batching}"


def sweep_text(moe: TinyModel, dense: TinyModel) -> str:
    # without continuous batching, which sets up for ~25 s more on a loaded 2-core machine: this one only crashes
    crash = transformers_serve(f"{shlex.quote(sys.executable)} {shlex.quote(str(CRASHING))} 30 -- ", "")
    never = f"{shlex.quote(sys.executable)} -c 'import time; time.sleep(600)' {{port}}"
    return f"""\
name: served-e2e
workload: serve
device: cpu
meter: fake
duration_s: 3
warmup_s: 0.5
repeats: 1
replicates: 1
serve:
  max_tokens: 16
  concurrency: 2
  startup_timeout_s: 240
  pairs:
    - name: tiny
      moe: {served(moe, transformers_serve())}
      dense:
        - {served(dense, transformers_serve(), match="total", params_active=None)}
    - name: broken
      moe: {served(moe, crash)}
      dense:
        - {served(dense, never, match="total", params_active=None, startup_timeout_s=4)}
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_served_pair_through_submit_and_report_with_a_crash_and_a_server_never_healthy(
        tmp_path: Path, tiny_served_models: tuple[TinyModel, TinyModel]) -> None:
    moe, dense = tiny_served_models
    sweep = tmp_path / "served.yaml"
    sweep.write_text(sweep_text(moe, dense))
    runs = tmp_path / "runs"
    proc = cli("submit", str(sweep), "--runs-dir", str(runs), "--run-id", "served", "--no-agents", "--num-cpus", "2",
               timeout=560)
    assert "2 ok, 2 failed" in proc.stderr, proc.stderr[-4000:]
    assert proc.returncode == 1  # failed tasks: exit 1, as for every workload
    logs = sorted(p.name for p in (runs / "served" / "servers").iterdir())
    assert logs == ["broken-c2-dense-total.log", "broken-c2-moe.log", "tiny-c2-dense-total.log", "tiny-c2-moe.log"]

    with RunStore(runs / "served", read_only=True) as store:
        results = {r.spec.task_id: r for r in store.results()}
    for task in ("tiny-c2-moe", "tiny-c2-dense-total"):
        r = results[task]
        assert r.status == "ok" and r.serve is not None and r.serve.server == "started", r.error
        assert r.serve.token_counts == "usage" and "--continuous-batching" in r.serve.command
        (w,), (sw,) = r.windows, r.serve.windows
        assert w.aligned and w.energy_j and w.inferences == sw.output_tokens > 0
        assert sw.responses > 0 and sw.input_tokens > 0 and sw.ttft_s.p50 and sw.tpot_s.p50 and sw.itl_s.p99
        assert 1.5 < (sw.in_flight or 0) <= 2.0 + 1e-6  # two requests kept in flight throughout the window
        assert sw.running_batch is None  # transformers serve exports no /metrics: none is shown, not a guess
        assert r.params is not None and r.params.total in (moe.params_total, dense.params_total)
    crashed, never = results["broken-c2-moe"], results["broken-c2-dense-total"]
    assert crashed.status == "failed" and not crashed.windows and crashed.error
    assert "server exited with code 1" in crashed.error
    assert "killing the server after 30 chat completions" in crashed.error  # the log's last lines
    assert never.status == "failed" and never.error and "server not healthy within 4 s" in never.error

    out = cli("report", "served", "--runs-dir", str(runs))
    assert out.returncode == 0, out.stderr[-3000:]
    for text in ("Served models: MoE against dense under load", "tiny-c2: concurrency 2 · MoE tiny-moe vs dense"
                 " tiny-dense (total)", "ratio MoE / dense", "TTFT p50", "Ws / response / active param",
                 "token counts from usage", "Failed tasks", "broken-c2-moe"):
        assert text in out.stdout, text


BAD = """\
name: bad
workload: serve
serve:
  pairs:
    - name: p
      moe: {name: m, model: m, params_total: 10, params_active: 5, command: "vllm serve {model} --port {prot}"}
      dense: [{name: d, model: d, params_total: 10, url: "http://127.0.0.1:1"}]
"""


def test_a_bad_serve_sweep_is_one_line_exit_2_and_no_run_directory(tmp_path: Path) -> None:
    sweep = tmp_path / "bad.yaml"
    sweep.write_text(BAD)
    runs = tmp_path / "runs"
    out = cli("submit", str(sweep), "--runs-dir", str(runs), "--no-agents")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
    assert "bad.yaml:6: serve.pairs[0].moe.command: names unknown placeholder {prot}" in lines[0]
    assert not runs.exists()


def test_the_analytic_estimate_refuses_a_serve_sweep_naming_why() -> None:
    out = cli("estimate", "--sweep", str(Path(__file__).resolve().parents[2] / "examples" / "served-tiny.yaml"))
    assert out.returncode == 2 and "workload serve: the analytic estimate needs each model's shape" in out.stderr
