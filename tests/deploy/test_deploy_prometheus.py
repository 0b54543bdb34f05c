"""The agents under a real Prometheus server, configured from deploy/prometheus/.

Two agents on loopback with fake devices of known power (node-a: 2 GPUs at 100 W, node-b:
2 GPUs at 150 W), scraped every second through a file_sd targets file; a task published on
node-b's GPU 0 with the runner's observer at a known rate of 1000 inferences/s. PromQL must
give back the model: energy `increase()` within 1 %, the task join, the recording rules, and
`up == 0` for a GPU turned faulty from outside the agent.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from deploy_helpers import AgentProcess, Prometheus
from moecluster.devices import FakeDevices
from moecluster.node.agent.task_labels import FileTaskObserver
from moecluster.spec.records import TaskResult, TaskSpec

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"
WINDOW_S = 10
RATE = 1000.0  # inferences per second of the published task
POWER_W = {"node-a": 100.0, "node-b": 150.0}
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@dataclass
class Setup:
    prom: Prometheus
    agents: dict[str, AgentProcess]
    faults: Path
    task_uuid: str
    t_first_scrape: float


def _config(tmp: Path, targets: Path) -> Path:
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    # The rules as deployed, their 1 m ranges shortened to 5 s: a rate over a range longer than
    # the series' life is divided by the whole range, and the test cannot wait a minute.
    rules = tmp / "rules"
    rules.mkdir()
    for pattern in config["rule_files"]:
        for src in sorted(PROM_DIR.glob(pattern)):
            (rules / src.name).write_text(src.read_text().replace("[1m]", "[5s]"))
    assert list(rules.iterdir()), "no rule files in deploy/prometheus"
    config["rule_files"] = [str(rules / "*.yml")]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "moecluster-agent"]
    config["scrape_configs"] = [job]  # the results exporter's job has its own test (test_deploy_dashboards_live)
    job["file_sd_configs"] = [{"files": [str(targets)]}]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _publish_task(state_dir: Path, uuid: str, stop: threading.Event) -> None:
    """The runner's observer, driven at RATE inferences/s until `stop`."""
    gpu = FakeDevices(1, node="node-b").gpus[0].info
    assert gpu.uuid == uuid
    spec = TaskSpec(task_id="t1", pair_id="p1", kind="moe", impl="grouped", model={}, preset="small", run_id="r1")
    obs = FileTaskObserver(state_dir)
    obs.started(spec, [gpu])
    t0 = time.monotonic()
    while not stop.wait(0.1):
        obs.progress(int(RATE * (time.monotonic() - t0)))
    obs.finished(TaskResult(spec=spec, status="ok"))


@pytest.fixture(scope="module")
def setup(prometheus_bin: str, tmp_path_factory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("prom")
    faults = tmp / "faults-a"
    common = ["--device", "fake", "--fake-gpus", "2", "--host", "127.0.0.1", "--port", "0", "--interval", "0.1"]
    agents = {
        "node-a": AgentProcess(*common, "--node", "node-a", "--fake-idle-w", "100", "--state-dir", str(tmp / "a"),
                               "--fake-fault-file", str(faults)),
        "node-b": AgentProcess(*common, "--node", "node-b", "--fake-idle-w", "50", "--fake-busy-w", "250",
                               "--fake-load", "0.5", "--state-dir", str(tmp / "b")),
    }
    stop = threading.Event()
    prom: Prometheus | None = None
    task_uuid = FakeDevices(1, node="node-b").gpus[0].info.uuid
    publisher = threading.Thread(target=_publish_task, args=(tmp / "b", task_uuid, stop), daemon=True)
    try:
        targets = tmp / "prometheus_targets.json"
        targets.write_text(json.dumps([{"targets": [a.wait_ready() and a.address], "labels": {"node": node}}
                                       for node, a in agents.items()]))
        publisher.start()
        prom = Prometheus(_config(tmp, targets), tmp / "data")
        prom.wait_ready()
        prom.wait_for('up{job="moecluster-agent"} == 1', count=2, timeout_s=20)
        yield Setup(prom=prom, agents=agents, faults=faults, task_uuid=task_uuid, t_first_scrape=time.time())
    finally:
        stop.set()
        publisher.join(5)
        if prom is not None:
            prom.stop()
        for a in agents.values():
            a.stop()


def _by(result: list[dict], *keys: str) -> dict[tuple[str, ...], float]:
    return {tuple(r["metric"].get(k, "") for k in keys): float(r["value"][1]) for r in result}


def test_task_labels_join_energy_and_rate(setup: Setup) -> None:
    joined = setup.prom.wait_for(
        "moecluster_gpu_power_watts * on (node, uuid) group_left (run, task, pair, kind, impl, preset) "
        "moecluster_task_info")
    (series,) = joined
    m = series["metric"]
    assert (m["node"], m["gpu"], m["uuid"], m["run"], m["task"], m["pair"], m["kind"], m["impl"], m["preset"]) == \
        ("node-b", "0", setup.task_uuid, "r1", "t1", "p1", "moe", "grouped", "small")
    assert float(series["value"][1]) == pytest.approx(POWER_W["node-b"])


def test_energy_increase_matches_the_power_model(setup: Setup) -> None:
    time.sleep(max(0.0, setup.t_first_scrape + WINDOW_S + 2.5 - time.time()))
    at = time.time() - 1.0
    got = _by(setup.prom.query(f"increase(moecluster_gpu_energy_joules_total[{WINDOW_S}s])", at=at), "node", "gpu")
    assert set(got) == {("node-a", "0"), ("node-a", "1"), ("node-b", "0"), ("node-b", "1")}
    for (node, _gpu), joules in got.items():
        assert joules == pytest.approx(POWER_W[node] * WINDOW_S, rel=0.01), (node, joules)
    rate = _by(setup.prom.query(f"rate(moecluster_task_inferences_total[{WINDOW_S}s])", at=at), "task")
    assert rate[("t1",)] == pytest.approx(RATE, rel=0.05)


def test_recording_rules(setup: Setup) -> None:
    q = setup.prom.query
    assert _by(q("node:moecluster_gpu_power_watts:sum"), "node") == {("node-a",): 200.0, ("node-b",): 300.0}
    assert _by(q("cluster:moecluster_gpu_power_watts:sum"), "x") == {("",): 500.0}
    node_w = _by(q("node:moecluster_gpu_energy_joules:rate1m"), "node")
    assert node_w == pytest.approx({("node-a",): 200.0, ("node-b",): 300.0}, rel=0.01)
    task_w = _by(q("task:moecluster_gpu_energy_joules:rate1m"), "run", "task", "kind", "impl")
    assert task_w == pytest.approx({("r1", "t1", "moe", "grouped"): 150.0}, rel=0.01)
    assert _by(q("run:moecluster_gpu_energy_joules:rate1m"), "run") == pytest.approx({("r1",): 150.0}, rel=0.01)
    per_j = _by(q("task:moecluster_task_inferences_per_joule:ratio_rate1m"), "task")
    assert per_j[("t1",)] == pytest.approx(RATE / 150.0, rel=0.05)


def test_faulty_gpu_shows_up_zero_and_the_rest_serve(setup: Setup) -> None:
    setup.faults.write_text("1\n")
    try:
        setup.prom.wait_for('moecluster_gpu_up{node="node-a", gpu="1"} == 0', timeout_s=15)
        time.sleep(1.5)  # one more scrape of everything
        up = _by(setup.prom.query("moecluster_gpu_up"), "node", "gpu")
        assert up == {("node-a", "0"): 1.0, ("node-a", "1"): 0.0, ("node-b", "0"): 1.0, ("node-b", "1"): 1.0}
        assert _by(setup.prom.query('up{job="moecluster-agent"}'), "node") == {("node-a",): 1.0, ("node-b",): 1.0}
        assert setup.prom.query('moecluster_gpu_power_watts{node="node-a", gpu="1"}') == []
    finally:
        setup.faults.write_text("")
    assert "GPU 1 (" in setup.agents["node-a"].log() and "is down" in setup.agents["node-a"].log()


def test_promtool_accepts_the_deployed_config_and_rules(tmp_path: Path) -> None:
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian's prometheus package) is not installed")
    rules = sorted(PROM_DIR.glob("rules/*.yml"))
    out = subprocess.run([promtool, "check", "rules", *map(str, rules)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run([promtool, "check", "config", "--syntax-only", str(PROM_DIR / "prometheus.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    for example in PROM_DIR.glob("targets/*.json.example"):
        groups = json.loads(example.read_text())
        assert all(set(g) == {"targets", "labels"} and "node" in g["labels"] for g in groups)
