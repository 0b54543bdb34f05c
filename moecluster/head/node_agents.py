"""One node agent on every node of the Ray cluster, and a file telling Prometheus where they are.

`ensure_node_agents()` runs on the head with Ray initialised. For each alive node it reuses
an agent that already serves there (our named actor, or a standalone `moecluster agent`,
e.g. from the systemd unit, answering on the node's address and port and recognised by its
`moecluster_agent_info` series, see `agent_probe`), else starts one as a Ray actor pinned to the
node (`NodeAffinitySchedulingStrategy(soft=False)`, `num_cpus=0`, so
it takes no slot from the benchmark). Actors are detached by default: they outlive one
`submit`, so Grafana keeps its live view between runs and the next submit finds them. The
addresses go to `run_dir/prometheus_targets.json` in Prometheus' file_sd format, with a copy
beside the run directories (`<runs root>/prometheus_targets.json`) for a Prometheus whose
`file_sd_configs` points at one stable path. A port held on some node by anything that is not a
moecluster agent (dcgm-exporter also defaults to 9400) is neither reused nor worked around:
`AgentPortTaken` names the node, the address and what answers there, before any agent starts.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
from moecluster.node.exporter_actor import NodeAgentActor as _NodeAgentBody
from moecluster.node.names import node_names
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from moecluster.head.agent_probe import PortProbe, probe_port

TARGETS_FILE = "prometheus_targets.json"
NAMESPACE = "moecluster"
ACTOR_PREFIX = "moecluster-agent-"
PROBE_TIMEOUT_S = 2.0
log = logging.getLogger(__name__)


class AgentPortTaken(RuntimeError):
    """The agent port is held on some node by something that is not a moecluster agent; one
    line naming each such node, address and what answers there. Nothing was started."""


# The actor's body lives on the node side, so an agent's process imports no head module.
NodeAgentActor = ray.remote(num_cpus=0, max_restarts=3)(_NodeAgentBody)


def _write_targets(path: Path, targets: Sequence[tuple[str, str]]) -> None:
    groups = [{"targets": [addr], "labels": {"node": node}} for node, addr in sorted(targets)]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(groups, fh, indent=2)
        fh.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)  # Prometheus watches the file: it must never see half of it


def _existing_actor(node_id: str) -> Any | None:
    try:
        return ray.get_actor(ACTOR_PREFIX + node_id, namespace=NAMESPACE)
    except ValueError:
        return None


def ensure_node_agents(run_dir: Path, *, port: int = 9400, device: str = "auto", interval_s: float = 0.1,
                       detached: bool = True, timeout_s: float = 60.0) -> list[str]:
    """Make sure one agent serves on every alive node; write the file_sd targets; return
    the agents' `host:port` addresses (sorted by node name)."""
    if not ray.is_initialized():
        raise RuntimeError("ensure_node_agents needs Ray initialised (ray.init(address=...)) on the head")
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    names = node_names(nodes)
    found: dict[str, tuple[str, str]] = {}  # node id -> (node label, address)
    pending: dict[str, Any] = {}
    probes = _probe_ports(nodes, port)
    taken = [f"{names[nid]} ({p.address}: {p.other})" for nid, p in probes.items() if p.other]
    if taken:
        raise AgentPortTaken(f"agent port {port} is held by something that is not a moecluster agent (free it"
                             f" or give another --agent-port) on {'; '.join(taken)}")
    for n in nodes:
        nid = n["NodeID"]
        actor = _existing_actor(nid)
        if actor is not None:
            try:
                info = ray.get(actor.describe.remote(), timeout=10)
                found[nid] = (info["node"], info["address"])
                continue
            except Exception as exc:  # noqa: BLE001 - a dead or stuck actor is replaced
                log.warning("agent actor on node %s does not answer (%s); replacing it", names[nid], exc)
                ray.kill(actor)
        probe = probes.get(nid)
        if probe is not None and probe.node is not None:
            # An agent labelled as another node (nodes sharing one host) is that node's: start this one's own.
            others = {v for k, v in names.items() if k != nid}
            if probe.node not in others:
                log.info("reusing the agent already serving on %s (node %s)", probe.address, probe.node)
                found[nid] = (probe.node, probe.address)
                continue
        options: dict[str, Any] = {
            "name": ACTOR_PREFIX + nid, "namespace": NAMESPACE, "get_if_exists": True,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=nid, soft=False)}
        if detached:
            options["lifetime"] = "detached"
        pending[nid] = NodeAgentActor.options(**options).remote(names[nid], port, device, interval_s)
    if pending:
        infos = ray.get([a.describe.remote() for a in pending.values()], timeout=timeout_s)
        for nid, info in zip(pending, infos):
            found[nid] = (info["node"], info["address"])
    targets = sorted(found.values())
    run_dir = Path(run_dir)
    _write_targets(run_dir / TARGETS_FILE, targets)
    _write_targets(run_dir.parent / TARGETS_FILE, targets)
    return [addr for _, addr in targets]


def _probe_ports(nodes: Sequence[dict[str, Any]], port: int) -> dict[str, PortProbe]:
    """What answers on `port` at each node's address (none for port 0: a free port is asked for),
    for the nodes whose own agent actor is not already there."""
    if not port:
        return {}
    return {n["NodeID"]: probe_port(f"{n['NodeManagerAddress']}:{port}", PROBE_TIMEOUT_S) for n in nodes
            if _existing_actor(n["NodeID"]) is None}


def stop_node_agents(timeout_s: float = 30.0) -> int:
    """Stop and remove every agent actor this cluster runs (for tests and `ray down` hygiene);
    returns how many were stopped. Standalone agents are left alone."""
    stopped = 0
    for n in ray.nodes():
        actor = _existing_actor(n["NodeID"])
        if actor is None:
            continue
        try:
            ray.get(actor.stop.remote(), timeout=timeout_s)
        except Exception as exc:  # noqa: BLE001 - kill it regardless
            log.warning("agent actor %s did not stop cleanly: %s", n["NodeID"], exc)
        ray.kill(actor)
        stopped += 1
    return stopped
