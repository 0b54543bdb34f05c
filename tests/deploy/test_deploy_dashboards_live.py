"""The dashboards' PromQL and `report --prometheus` against a real Prometheus, during and after a real sweep.

A standalone node agent (two fake GPUs at a constant 300 W, the fake meter's busy power) serves
this host's node; `moecluster submit` runs a real dense/MoE pair (`meter: fake`, CPU) on a local Ray,
reuses that agent (`--agent-port`) and writes the file_sd targets Prometheus reads; the runner's
observer publishes the running task to the agent; the head's results exporter serves the run
stores (the new run, and the committed two-H200 expert-parallel run for the EP panels). Prometheus
(Debian's, deploy/prometheus/prometheus.yml with 1 s intervals) scrapes both.

While the pair runs, every query of the Cluster and Sweep dashboards must return data (with every
variable at All and at a concrete value); after it, every query of the Results dashboard; every
metric a panel names must be in the /metrics of the agent or the results exporter; and the report's
cluster-wide energy (the task's GPU and the idle one) must match the agent's power model and the
tasks' own meters.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pytest
import yaml

from dashboard_queries import PanelQuery, expand, metrics_named, panel_queries, regex_value, variable_queries
from deploy_helpers import AgentProcess, Prometheus, free_port, moecluster_cmd

ROOT = Path(__file__).resolve().parents[2]
PROM_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
EP_RUN = ROOT / "benchmarks" / "results" / "runs" / "ep-h200x2"
POWER_W = 300.0  # the agent's fake GPU at load 1 = the fake meter's busy power
RUN_ID = "live"
SWEEP = """\
name: live
replicates: 1  # one process per pair: this test counts pairs and tasks
models: [{preset: small}]
impl: grouped
dtype: float32
batch_size: 128
match: total
duration_s: 4
warmup_s: 0.3
repeats: 2
device: cpu
meter: fake
"""
GRAFANA = {"rate_interval": "4s", "range_": "30s", "interval": "1s"}  # 1 s scrapes: $__rate_interval = 4 scrapes
LIVE_DASHBOARDS = ("moecluster-cluster", "moecluster-sweep")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]


@dataclass
class Live:
    prom: Prometheus
    runs: Path
    dashboards: dict[str, dict[str, Any]]
    live_results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # query text -> result
    live_missing: list[str] = field(default_factory=list)
    variable_values: dict[str, list[str]] = field(default_factory=dict)
    agent_metrics: str = ""
    results_metrics: str = ""
    live_span_s: tuple[float, float] = (0.0, 0.0)  # first task label seen, sweep ended
    agent_address: str = ""
    targets_mtime_ns: int = 0
    submit: subprocess.CompletedProcess[str] | None = None


def ray_node_ip() -> str:
    import ray.util

    return str(ray.util.get_node_ip_address())


def _config(tmp: Path, targets: Path, results_port: int) -> Path:
    config = yaml.safe_load(PROM_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = []
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"moecluster-agent", "moecluster-results"}
    jobs["moecluster-agent"]["file_sd_configs"] = [{"files": [str(targets)]}]  # what submit writes
    jobs["moecluster-results"]["static_configs"] = [{"targets": [f"127.0.0.1:{results_port}"]}]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _values(dashboard: str, concrete: dict[str, str] | None) -> dict[str, str]:
    names = {"cluster": ("node", "gpu"), "sweep": ("run", "pair"), "results": ("run",)}[dashboard.split("-")[-1]]
    return {n: (regex_value(concrete[n]) if concrete else ".*") for n in names}


def _expanded(q: PanelQuery, concrete: dict[str, str] | None) -> str:
    return expand(q.expr, _values(q.dashboard, concrete), **GRAFANA)


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def _label_values(prom: Prometheus, selector: str, label: str) -> list[str]:
    return prom.api(f"label/{label}/values", **{"match[]": selector, "start": f"{time.time() - 600:.0f}",
                                                  "end": f"{time.time():.0f}"})


@pytest.fixture(scope="module")
def live(prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    from moecluster.report.dashboards.export import build_all

    tmp = tmp_path_factory.mktemp("live")
    runs, state = tmp / "runs", tmp / "tasks"
    runs.mkdir()
    shutil.copytree(EP_RUN, runs / EP_RUN.name)  # measured EP results for the Results dashboard
    (tmp / "sweep.yaml").write_text(SWEEP)
    node = socket.gethostname()
    agent_port = free_port()
    # two fake GPUs at 300 W: GPU 0 is the one the runner's fake meter names (same node, index 0); GPU 1
    # runs nothing, so the cluster-wide energy must count an idle GPU too
    agent = AgentProcess("--device", "fake", "--fake-gpus", "2", "--fake-load", "1", "--node", node, "--host",
                         "0.0.0.0", "--port", str(agent_port), "--interval", "0.1", "--state-dir", str(state))
    results = AgentProcess("--runs-dir", str(runs), "--port", "0", "--max-runs", "0",
                           command=("dashboards", "serve-results"))
    prom: Prometheus | None = None
    submit: subprocess.Popen[str] | None = None
    try:
        agent.wait_ready()
        results.wait_ready()
        # The standalone agent listed from the start, at the address submit will find it on (the node's
        # address), so Prometheus covers the whole run; submit rewrites the file when it reuses the agent.
        targets = runs / "prometheus_targets.json"
        address = f"{ray_node_ip()}:{agent_port}"
        targets.write_text(json.dumps([{"targets": [address], "labels": {"node": node}}]))
        written = targets.stat().st_mtime_ns
        prom = Prometheus(_config(tmp, targets, int(results.address.split(":")[-1])), tmp / "data")
        prom.wait_ready()
        prom.wait_for('up{job="moecluster-agent"} == 1', timeout_s=30)
        setup = Live(prom=prom, runs=runs, dashboards=build_all(), agent_address=address, targets_mtime_ns=written)
        env = {**os.environ, "MOECLUSTER_STATE_DIR": str(state)}
        submit = subprocess.Popen(
            [*moecluster_cmd(), "submit", str(tmp / "sweep.yaml"), "--runs-dir", str(runs), "--run-id", RUN_ID,
             "--num-cpus", "2", "--agent-port", str(agent_port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        prom.wait_for('moecluster_task_info{run="live"}', timeout_s=180)
        t_first = time.time()
        setup.agent_metrics = _metrics(agent.url or "")  # a task runs now: its series are there
        _run_live_queries(setup, submit)
        out, err = submit.communicate(timeout=300)
        setup.submit = subprocess.CompletedProcess(submit.args, submit.returncode, out, err)
        setup.live_span_s = (t_first - 2.0, time.time())
        time.sleep(2.5)  # the results exporter's next scrape holds the finished run
        setup.results_metrics = _metrics(results.url or "")
        yield setup
    finally:
        if submit is not None and submit.poll() is None:
            submit.kill()
            submit.communicate(timeout=30)
        if prom is not None:
            prom.stop()
        results.stop()
        agent.stop()


def _run_live_queries(setup: Live, submit: subprocess.Popen[str]) -> None:
    """Poll every Cluster and Sweep query (All and concrete variables) until each returned data,
    while the pair runs."""
    concrete = {"node": socket.gethostname(), "gpu": "0", "run": RUN_ID}
    pairs = _label_values(setup.prom, 'moecluster_task_info{run="live"}', "pair")
    assert pairs, "no pair label on the running task"
    concrete["pair"] = pairs[0]
    pending = {_expanded(q, c): q for uid in LIVE_DASHBOARDS for q in panel_queries(setup.dashboards[uid])
               for c in (None, concrete)}
    while pending and submit.poll() is None:
        for expr in list(pending):
            result = setup.prom.query(expr)
            if result:
                setup.live_results[expr] = result
                del pending[expr]
        time.sleep(0.5)
    setup.live_missing = [f"{q} -> {expr}" for expr, q in pending.items()]
    for uid in LIVE_DASHBOARDS:
        for v in variable_queries(setup.dashboards[uid]):
            selector = expand(v.selector, {"node": ".*", "run": ".*"}, **GRAFANA)
            setup.variable_values[f"{uid}/{v.name}"] = _label_values(setup.prom, selector, v.label)


def test_the_sweep_ran_and_reused_the_standalone_agent(live: Live) -> None:
    assert live.submit is not None and live.submit.returncode == 0, live.submit and live.submit.stderr[-3000:]
    assert "2 ok, 0 failed" in live.submit.stderr
    path = live.runs / "prometheus_targets.json"
    assert path.stat().st_mtime_ns != live.targets_mtime_ns  # submit wrote it (reusing the agent)
    targets = json.loads(path.read_text())
    assert targets == [{"targets": [live.agent_address], "labels": {"node": socket.gethostname()}}]
    assert json.loads((live.runs / RUN_ID / "prometheus_targets.json").read_text()) == targets


def test_every_cluster_and_sweep_query_returned_data_while_the_pair_ran(live: Live) -> None:
    assert not live.live_missing, "queries without data while a task ran:\n" + "\n".join(live.live_missing)
    assert len(live.live_results) >= 2 * 25


def test_every_variable_lists_values(live: Live) -> None:
    assert live.variable_values["moecluster-cluster/node"] == [socket.gethostname()]
    assert live.variable_values["moecluster-cluster/gpu"] == ["0", "1"]
    assert live.variable_values["moecluster-sweep/run"] == [RUN_ID]
    assert len(live.variable_values["moecluster-sweep/pair"]) == 1
    for v in variable_queries(live.dashboards["moecluster-results"]):
        values = _label_values(live.prom, v.selector, v.label)
        assert {RUN_ID, EP_RUN.name} <= set(values), v


def test_live_task_power_and_efficiency_follow_the_power_model(live: Live) -> None:
    """Over the sweep, each task's power from its energy counter reaches the GPU's 300 W once its
    rate window lies inside the task's windows, and never exceeds it (a neighbour's energy counted
    too would show as up to twice that)."""
    by_title = {q.panel: q for q in panel_queries(live.dashboards["moecluster-sweep"])}
    start, end = live.live_span_s
    got: dict[str, dict[str, dict[float, float]]] = {}
    for title in ("Power per task", "Inferences per joule", "Inferences per second"):
        expr = expand(by_title[title].expr, {"run": ".*", "pair": ".*"}, rate_interval="2s", range_="30s",
                      interval="1s")
        series = live.prom.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step="1")["result"]
        assert {s["metric"]["kind"] for s in series} == {"dense", "moe"}, (title, series)
        got[title] = {s["metric"]["task"]: {t: float(v) for t, v in s["values"]} for s in series}
    for task, power in got["Power per task"].items():
        # 5 %: Prometheus stamps a sample at the scrape's start, the agent reads the counter a little later
        assert max(power.values()) == pytest.approx(POWER_W, rel=0.05), (task, power)
        assert all(w <= POWER_W * 1.05 for w in power.values()), (task, power)  # nothing counted twice
        per_j, per_s = got["Inferences per joule"][task], got["Inferences per second"][task]
        common = set(power) & set(per_j) & set(per_s)
        assert len(common) >= 3, (task, power, per_j)
        for t in common:  # the panels compose: inferences/J x W = inferences/s
            assert per_j[t] * power[t] == pytest.approx(per_s[t], rel=1e-6)
        assert max(per_s.values()) > 0


def test_every_metric_a_panel_names_is_exported(live: Live) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def names(text: str) -> set[str]:
        return {s.name for f in text_string_to_metric_families(text) for s in f.samples}

    agent, results = names(live.agent_metrics), names(live.results_metrics)
    assert "moecluster_task_energy_joules_total" in agent and "moecluster_task_info" in agent
    for uid, dashboard in live.dashboards.items():
        queries = panel_queries(dashboard)
        named = {m for q in queries for m in metrics_named(q.expr)}
        named |= {m for v in variable_queries(dashboard) for m in metrics_named(v.selector)}
        assert named, uid
        missing = sorted(m for m in named if m not in agent | results)
        assert not missing, f"{uid}: metrics no exporter serves: {missing}"
        if uid == "moecluster-cluster":
            assert named <= agent  # the node agents' series alone


def test_every_results_query_returns_data_after_the_run(live: Live) -> None:
    missing = []
    for q in panel_queries(live.dashboards["moecluster-results"]):
        for concrete in (None, {"run": RUN_ID}, {"run": EP_RUN.name}):
            if concrete and concrete["run"] == RUN_ID and "_ep_" in q.expr:
                continue  # one GPU, no expert parallelism in the live run
            expr = _expanded(q, concrete)
            deadline = time.monotonic() + 15
            while not live.prom.query(expr) and time.monotonic() < deadline:
                time.sleep(0.5)
            if not live.prom.query(expr):
                missing.append(f"{q} -> {expr}")
    assert not missing, "Results queries without data:\n" + "\n".join(missing)


def test_results_series_are_the_reports_figures(live: Live, tmp_path: Path) -> None:
    """The Results dashboard's numbers are `moecluster report`'s, for the measured EP run."""
    proc = subprocess.run([*moecluster_cmd(), "report", EP_RUN.name, "--runs-dir", str(live.runs), "--format",
                           "csv", "--out", str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    tasks = pd.read_csv(tmp_path / "tasks.csv").set_index("task_id")
    for metric, column in (("moecluster_result_inferences_per_joule", "inferences_per_j"),
                           ("moecluster_result_inferences_per_joule_ci95_low", "inferences_per_j_lo"),
                           ("moecluster_result_power_watts", "power_w")):
        got = {s["metric"]["task"]: float(s["value"][1]) for s in live.prom.query(f'{metric}{{run="{EP_RUN.name}"}}')}
        assert got and set(got) == set(tasks.index), metric
        for task, value in got.items():
            assert value == pytest.approx(tasks.loc[task, column], rel=1e-9), (metric, task)


def test_report_cluster_energy_from_the_real_prometheus(live: Live, tmp_path: Path) -> None:
    """`report --prometheus`: both GPUs over the run span at 300 W (the idle one included), and the tasks'
    own meters agree with Prometheus over their windows."""
    proc = subprocess.run([*moecluster_cmd(), "report", RUN_ID, "--runs-dir", str(live.runs), "--prometheus",
                           live.prom.base, "--format", "csv", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "Cluster-wide energy over the run" in proc.stdout and "within ±2%" in proc.stdout, proc.stdout
    cluster = pd.read_csv(tmp_path / "cluster.csv").iloc[0]
    assert cluster.gpus == 2 and cluster.task_gpus == 1 and bool(cluster.check_ok), cluster.to_dict()
    assert abs(cluster.check_rel_diff) < 0.005
    for column, gpus in (("energy_j", 2), ("task_gpus_energy_j", 1), ("idle_gpus_energy_j", 1)):
        assert cluster[column] == pytest.approx(gpus * POWER_W * cluster.duration_s, rel=0.005), column
    assert cluster.cluster_inferences_per_j < cluster.tasks_inferences_per_j


def test_submit_leaves_no_python_traceback(live: Live) -> None:
    assert live.submit is not None and "Traceback" not in live.submit.stderr, live.submit.stderr[-3000:]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
