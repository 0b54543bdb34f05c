"""Ray settings that make a lost or partitioned node noticed in seconds, not minutes.

With Ray's defaults the GCS health-checks every node each 3 s with a 10 s timeout and marks it
dead after 5 failures in a row: a partitioned node is dead only after about 65 s. A task running
there is failed by its owner when gRPC's client keepalive (300 s, then 120 s to answer) gives up
on the connection, about 420 s later. A killed process is noticed at once either way.

moecluster's scheduler re-queues a pair, at the front, as soon as the GCS marks the pair's node
dead, or once the node has not answered the head for `HEAD_UNREACHABLE_S` (`reach`), whichever comes first: with
these settings the health check decides; with Ray's defaults the head does, while Ray itself
still counts the node (and its resources) for about a minute. The keepalive decides how soon Ray
itself gives up on connections into a partitioned node (e.g. a task that was leased there but
had not yet reported its start). Both are lowered together, cluster-wide:
a gRPC server refuses pings more frequent than its own process's `grpc_client_keepalive_time_ms`
allows (at most 60 s), and closes the connection of a client that pings faster
("too_many_pings"). The head's system config is the one place that reaches every process: the
GCS hands it to every node that joins and to every driver.

- `FAST_FAILURE_DETECTION`: the settings (RayConfig names, as in Ray's `ray_config_def.h`);
  moecluster passes them to the local instances it starts (`ray.init(_system_config=...)`).
- `ray_start_hint()`: what `ray start --head` needs on a cluster moecluster joins.
- `check_cluster()`: warnings about a joined cluster's settings, as its head node reports them.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

FAST_FAILURE_DETECTION: dict[str, int] = {
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 3,
    "grpc_client_keepalive_time_ms": 5000,
    "grpc_client_keepalive_timeout_ms": 5000,
}
# Beyond this a lost node's pair is not retried within the 30 s moecluster aims for.
NODE_LOSS_TARGET_S = 30.0
# A node that has not answered the head this long is treated as lost by moecluster (`reach`), whatever Ray says.
HEAD_UNREACHABLE_S = 10.0


def node_loss_s(config: Mapping[str, Any]) -> float:
    """Seconds before the GCS marks a partitioned node dead: every health check waits its
    timeout, then the period, `failure_threshold` times in a row."""
    period = float(config["health_check_period_ms"]) / 1e3
    timeout = float(config["health_check_timeout_ms"]) / 1e3
    return float(config["health_check_failure_threshold"]) * (period + timeout)


def connection_loss_s(config: Mapping[str, Any]) -> float:
    """Seconds before gRPC gives up on a connection to a partitioned node (keepalive time + timeout)."""
    return (float(config["grpc_client_keepalive_time_ms"]) + float(config["grpc_client_keepalive_timeout_ms"])) / 1e3


def ray_start_hint() -> str:
    """The `ray start` line for a cluster's head that gives every node and driver the settings."""
    return f"ray start --head --system-config='{json.dumps(FAST_FAILURE_DETECTION, separators=(',', ':'))}' ..."


def env_hint() -> str:
    """The same settings as environment variables (then needed on every node and on the driver)."""
    return " ".join(f"RAY_{k}={v}" for k, v in FAST_FAILURE_DETECTION.items())


def check_cluster(nodes: Mapping[str, Mapping[str, Any] | str], head: str | None,
                  driver: Mapping[str, Any]) -> list[str]:
    """Warnings (one line each) about a joined cluster's failure detection.

    `nodes`: each node's name -> its Ray settings (`node.raycfg`) as a process there sees them, or the
    reason they could not be read; `head`: the head node's name (None: not known); `driver`: this
    process's settings. Empty when a lost node is noticed within `NODE_LOSS_TARGET_S` and the
    keepalive agrees everywhere."""
    out: list[str] = []
    fix = f"for retries within seconds start the head with: {ray_start_hint()}"
    unread = {n: v for n, v in nodes.items() if isinstance(v, str)}
    read = {n: v for n, v in nodes.items() if not isinstance(v, str)}
    if head is None or head not in read:
        why = unread.get(head or "", "the head node was not found") if head is not None else "no head node found"
        out.append(f"cannot check how fast this cluster notices a lost node ({why}); {fix}")
    else:
        config = read[head]
        bound = node_loss_s(config)
        if bound > NODE_LOSS_TARGET_S:
            settings = ", ".join(f"{k}={config[k]}" for k in ("health_check_period_ms", "health_check_timeout_ms",
                                                              "health_check_failure_threshold"))
            out.append(f"this cluster marks a partitioned node dead only after about {bound:.0f} s ({settings} on"
                       f" the head); moecluster retries its pair once the node has not answered for"
                       f" {HEAD_UNREACHABLE_S:g} s, but Ray counts the node until then; {fix}")
    for name, why in sorted(unread.items()):
        if name != head:
            out.append(f"cannot read the Ray settings of node {name} ({why})")
    keepalive = {n: int(v["grpc_client_keepalive_time_ms"]) for n, v in read.items()}
    ours = int(driver["grpc_client_keepalive_time_ms"])
    faster = sorted(n for n, k in keepalive.items() if ours < min(k, 60_000))
    if faster:
        out.append(f"this driver's grpc_client_keepalive_time_ms ({ours}) is below that of node(s)"
                   f" {', '.join(faster)} ({', '.join(str(keepalive[n]) for n in faster)}): they may close its"
                   " connections (too_many_pings); set the keepalive once, in the head's --system-config")
    return out


def check_probed(probe: Mapping[str, Any]) -> list[str]:
    """`check_cluster` on what `cluster.probe_nodes` found (each node's facts hold its `ray_config`)."""
    from moecluster.node.raycfg import ray_settings

    nodes: dict[str, Mapping[str, Any] | str] = {}
    head = None
    for entry in probe.get("nodes", []):
        facts = entry.get("facts") or {}
        config = facts.get("ray_config")
        nodes[entry["name"]] = config if isinstance(config, dict) and config else \
            str(facts.get("error") or "its probe reported no Ray settings")
        if entry.get("is_head"):
            head = entry["name"]
    return check_cluster(nodes, head, ray_settings())
