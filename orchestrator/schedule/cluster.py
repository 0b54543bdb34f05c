"""Reaching a Ray cluster: an embedded local instance, or an existing cluster by address.

A local instance gets the settings that notice a lost node within seconds
(`raysettings.FAST_FAILURE_DETECTION`); a joined cluster's own settings are checked once its
nodes are probed (`raysettings.check_cluster`). An address is tried first, with a bounded
wait, so a wrong one fails in seconds naming it (Ray itself would keep retrying).

Token authentication stays on. A local instance gets Ray's own default (token auth, with a
token generated in `~/.ray/auth_token` if none exists). Joining by `--address` sets
`RAY_AUTH_MODE=token` unless the user chose a mode; Ray then reads the token from
`RAY_AUTH_TOKEN`, else the file named by `RAY_AUTH_TOKEN_PATH`, else `~/.ray/auth_token`.
The token never appears on a command line or in a log.
"""
from __future__ import annotations

import importlib
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from moecluster.agents.extras import require_ray_dashboard
from moecluster.orchestrator.raycompat import RayTooOld, private_raylet, require_ray
from .raysettings import FAST_FAILURE_DETECTION

ACCELERATOR_PREFIX = "accelerator_type:"
HEAD_RESOURCE = "node:__internal_head__"  # Ray's resource on the head node
AUTH_MODE_ENV = "RAY_AUTH_MODE"
NAMESPACE = "moecluster"
CONNECT_TIMEOUT_S = 10.0


class ClusterError(ValueError):
    """The cluster cannot be reached, or cannot run the sweep; one line saying why.

    (Not the CLI's `InputError`, which would import the CLI into every Ray worker;
    `submit` turns this into one.)
    """


@dataclass(frozen=True)
class ClusterOptions:
    """How to reach Ray: `address` None starts a local instance with these resources."""

    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    include_dashboard: bool = False
    resources: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    name: str  # host name, with the node id's prefix where several nodes share a host
    address: str
    cpus: float
    gpus: float
    accelerator_type: str | None
    is_head: bool = False


@dataclass(frozen=True)
class Inventory:
    """The alive nodes of the cluster at one moment."""

    nodes: tuple[NodeInfo, ...]

    @property
    def total_gpus(self) -> float:
        return sum(n.gpus for n in self.nodes)

    @property
    def accelerator_types(self) -> list[str]:
        return sorted({n.accelerator_type for n in self.nodes if n.accelerator_type})

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": [vars(n) for n in self.nodes]}


def _enable_token_auth() -> None:
    """Token mode for this process and its children when joining a cluster by address.

    Ray reads `RAY_AUTH_MODE` into its cached config when first imported; Ray's own
    `_enable_token_auth` refreshes that cache after setting the variable, as we do here.
    """
    if os.environ.get(AUTH_MODE_ENV) is not None:
        return
    os.environ[AUTH_MODE_ENV] = "token"
    try:
        raylet = private_raylet()  # compiled: no attributes for a type checker to see
    except RayTooOld as exc:
        raise ClusterError(str(exc)) from None
    raylet.Config.initialize("")


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """ClusterError naming `address` unless a Ray GCS (or, for `ray://`, a Ray client server) answers
    there within `timeout_s`; `auto` is left to Ray (it reads the address of the cluster on this machine)."""
    if address == "auto":
        return
    target = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(f"--address {address!r}: expected host:port, ray://host:port or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {why.lower()} (no Ray head answers there)") \
            from None
    if "://" in address:
        return
    grpc = importlib.import_module("grpc")  # Ray's own dependency; it ships no type stubs

    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: something listens there, but no Ray GCS"
                           f" answered within {timeout_s:g} s") from None
    finally:
        channel.close()


def connect(options: ClusterOptions) -> None:
    """`ray.init` for a local instance or an existing cluster; ClusterError in one line if it fails."""
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")  # workers use this interpreter as it is
    try:
        require_ray()
    except RayTooOld as exc:
        raise ClusterError(str(exc)) from None
    if options.address is not None:
        check_reachable(options.address)
    import ray

    kwargs: dict[str, Any] = {"namespace": NAMESPACE, "include_dashboard": options.include_dashboard,
                              "log_to_driver": False, "configure_logging": True, "logging_level": "WARNING"}
    if options.address is None:
        if options.include_dashboard:
            require_ray_dashboard()  # MissingExtra naming the `dashboard` extra, before Ray starts
        # "local" always starts a new instance: a bare ray.init() would silently join any
        # cluster already running on this machine (a stale `ray start`, another user's).
        kwargs.update(address="local", num_cpus=options.num_cpus, num_gpus=options.num_gpus,
                      resources=options.resources or None, labels=options.labels or None,
                      _system_config=dict(FAST_FAILURE_DETECTION))
    else:
        if options.num_cpus is not None or options.num_gpus is not None:
            raise ClusterError("--num-cpus/--num-gpus size a local instance; they cannot be used with --address")
        _enable_token_auth()
        kwargs["address"] = options.address
        kwargs.pop("include_dashboard")
    try:
        ray.init(**kwargs)
    except Exception as exc:  # noqa: BLE001 - Ray raises many types; the user needs one line
        where = f"Ray cluster at {options.address}" if options.address else "a local Ray instance"
        message = " ".join(str(exc).split())
        if "auth" in message.lower() or "token" in message.lower():
            message = ("authentication failed: give the cluster's token in RAY_AUTH_TOKEN, a file named by"
                       " RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token")
        raise ClusterError(f"cannot reach {where}: {message[:300]}") from None


def disconnect() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def inventory() -> Inventory:
    """The alive nodes and what each advertises (CPUs, GPUs, accelerator type)."""
    import ray
    from moecluster.agents.node.names import node_names

    alive = [n for n in ray.nodes() if n.get("Alive")]
    names = node_names(alive)
    nodes = []
    for n in alive:
        res = n.get("Resources", {})
        accel = next((k[len(ACCELERATOR_PREFIX):] for k in res if k.startswith(ACCELERATOR_PREFIX)), None)
        nodes.append(NodeInfo(node_id=n["NodeID"], name=names[n["NodeID"]], address=n["NodeManagerAddress"],
                              cpus=float(res.get("CPU", 0)), gpus=float(res.get("GPU", 0)), accelerator_type=accel,
                              is_head=HEAD_RESOURCE in res))
    return Inventory(nodes=tuple(sorted(nodes, key=lambda x: x.name)))


def probe_nodes(timeout_s: float = 60.0) -> dict[str, Any]:
    """Each alive node's own facts (GPUs, driver, torch, CUDA), from a zero-resource task pinned
    to it; a node that does not answer in time is listed with the reason."""
    import ray
    from moecluster.orchestrator.environment import local_facts
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(local_facts)
    inv = inventory()
    refs = {n.node_id: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n.node_id, soft=False))
            .remote() for n in inv.nodes}
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
    out = []
    for node in inv.nodes:
        entry: dict[str, Any] = vars(node).copy()
        ref = refs[node.node_id]
        try:
            entry["facts"] = ray.get(ref) if ref in ready else {"error": f"no answer within {timeout_s:g} s"}
        except Exception as exc:  # noqa: BLE001 - one node's failure is a fact, not a crash
            entry["facts"] = {"error": f"{type(exc).__name__}: {exc}"}
        if ref not in ready:
            ray.cancel(ref, force=True)
        out.append(entry)
    return {"ray": ray.__version__, "nodes": out}
