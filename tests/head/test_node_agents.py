"""ensure_node_agents on a real two-node Ray cluster (ray.cluster_utils) with fake devices."""
from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from http_doubles import DCGM_BODY, serve_http  # noqa: E402
from moecluster.node.agent.server import Agent, AgentConfig  # noqa: E402
from moecluster.head.node_agents import (  # noqa: E402
    TARGETS_FILE, AgentPortTaken, ensure_node_agents, node_names, stop_node_agents)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=1)
    ray.init(address=c.address)
    c.wait_for_nodes()
    try:
        yield c
    finally:
        stop_node_agents()
        ray.shutdown()
        c.shutdown()


def _scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as resp:
        return resp.read().decode()


def test_one_agent_per_node_reused_on_second_call(cluster, tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "r1"
    addresses = ensure_node_agents(run_dir, port=0, device="fake", interval_s=0.5)
    assert len(addresses) == 2 and len(set(addresses)) == 2

    groups = json.loads((run_dir / TARGETS_FILE).read_text())
    assert sorted(g["targets"][0] for g in groups) == sorted(addresses)
    expected_nodes = set(node_names([n for n in ray.nodes() if n["Alive"]]).values())
    assert {g["labels"]["node"] for g in groups} == expected_nodes
    assert json.loads((run_dir.parent / TARGETS_FILE).read_text()) == groups
    for g in groups:  # every target answers as the node its label names
        body = _scrape(g["targets"][0])
        assert f'moecluster_agent_info{{device="fake",driver="fake",node="{g["labels"]["node"]}"' in body
        assert "moecluster_gpu_energy_joules_total{" in body

    again = ensure_node_agents(tmp_path / "runs" / "r2", port=0, device="fake")
    assert again == addresses  # the named actors were found, not started anew


def test_standalone_agent_on_the_port_is_reused(cluster, tmp_path: Path) -> None:
    stop_node_agents()
    alive = [n for n in ray.nodes() if n["Alive"]]
    names = node_names(alive)
    first = alive[0]
    node, ip = names[first["NodeID"]], first["NodeManagerAddress"]
    with Agent(AgentConfig(host=ip, port=0, device="fake", node=node, fake_gpus=1)) as standalone:
        address = f"{ip}:{standalone.port}"
        addresses = ensure_node_agents(tmp_path / "r", port=standalone.port, device="fake")
        groups = json.loads((tmp_path / "r" / TARGETS_FILE).read_text())
        by_node = {g["labels"]["node"]: g["targets"][0] for g in groups}
        assert by_node[node] == address  # reused, not duplicated
        assert len(addresses) == 2 and len(set(addresses)) == 2  # the other node got its own agent
    stop_node_agents()


def test_a_port_held_by_another_exporter_is_an_error_naming_it(cluster, tmp_path: Path) -> None:
    stop_node_agents()
    alive = [n for n in ray.nodes() if n["Alive"]]
    names = node_names(alive)
    first = alive[0]
    ip = first["NodeManagerAddress"]
    with serve_http(200, DCGM_BODY, host=ip) as address:
        port = int(address.rpartition(":")[2])
        with pytest.raises(AgentPortTaken) as exc:
            ensure_node_agents(tmp_path / "r", port=port, device="fake")
    message = str(exc.value)
    assert "\n" not in message and message.startswith(
        f"agent port {port} is held by something that is not a moecluster agent (free it or give another"
        " --agent-port) on ")
    assert f"{names[first['NodeID']]} ({address}: answers /metrics without moecluster_agent_info)" in message
    assert stop_node_agents() == 0  # nothing was started
    assert not (tmp_path / "r" / TARGETS_FILE).exists()
