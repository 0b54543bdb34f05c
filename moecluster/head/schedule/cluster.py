"""Reaching a Ray cluster: an embedded local instance, or an existing cluster by address.

A local instance gets the settings that notice a lost node within seconds
(`raysettings.FAST_FAILURE_DETECTION`); a joined cluster's own settings are checked once its
nodes are probed (`raysettings.check_cluster`). An address is tried first, with a bounded
wait, so a wrong one fails in seconds naming it (Ray itself would keep retrying).

Token authentication stays on. A local instance gets Ray's own default (token auth), with a
token generated in `~/.ray/auth_token`, readable by its user only, if none exists
(`ensure_private_token`). Joining by `--address` sets
`RAY_AUTH_MODE=token` unless the user chose a mode; Ray then reads the token from
`RAY_AUTH_TOKEN`, else the file named by `RAY_AUTH_TOKEN_PATH`, else `~/.ray/auth_token`.
The token never appears on a command line or in a log.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moecluster.spec.extras import require_ray_dashboard
from moecluster.head.raycompat import RayTooOld, mute_cluster_messages, private_raylet, require_ray
from moecluster.head.schedule.raysettings import FAST_FAILURE_DETECTION

ACCELERATOR_PREFIX = "accelerator_type:"
HEAD_RESOURCE = "node:__internal_head__"  # Ray's resource on the head node
AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
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
    port: int = 0  # its raylet's port (0: not known)


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


# An HTTP/2 client's connection preface and an empty SETTINGS frame: a gRPC server (Ray's GCS) answers
# with a SETTINGS frame of its own (type 4), anything else with something else or nothing.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_SETTINGS = 4


def _split_address(address: str) -> tuple[str, int]:
    target = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(f"--address {address!r}: expected host:port, ray://host:port or auto")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """ClusterError naming `address` unless a Ray GCS (or, for `ray://`, a Ray client server) answers
    there within `timeout_s`; `auto` is left to Ray (it reads the address of the cluster on this machine).

    A plain socket: the GCS is a gRPC server, so it answers HTTP/2's connection preface with a SETTINGS
    frame. (Plain `ray` installs no Python gRPC; Ray's own GCS client retries for tens of seconds.)"""
    if address == "auto":
        return
    host, port = _split_address(address)
    try:
        conn = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {why.lower()} (no Ray head answers there)") \
            from None
    with conn:
        if "://" in address:
            return
        try:
            conn.sendall(HTTP2_PREFACE)
            header = conn.recv(9)
        except OSError:
            header = b""
    if len(header) < 4 or header[3] != HTTP2_SETTINGS:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: something listens there, but no Ray GCS"
                           f" answered within {timeout_s:g} s")


def token_source() -> str:
    """Where Ray reads the cluster's token from, in Ray's order (never the token itself)."""
    if os.environ.get(TOKEN_ENV):
        return f"the {TOKEN_ENV} environment variable"
    if os.environ.get(TOKEN_PATH_ENV):
        return f"the file {os.environ[TOKEN_PATH_ENV]} (named by {TOKEN_PATH_ENV})"
    return f"{default_token_path()} (neither {TOKEN_ENV} nor {TOKEN_PATH_ENV} is set)"


def default_token_path() -> Path:
    """Ray's own default token file."""
    return Path.home() / ".ray" / "auth_token"


def check_token(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """ClusterError naming authentication, and where the token was read from, unless this process has a
    token and the GCS at `address` (reachable: `check_reachable`) accepts it; in seconds, where `ray.init`
    would retry for tens of seconds and then blame the connection. Nothing to check without token mode."""
    try:
        raylet = private_raylet()
    except RayTooOld as exc:
        raise ClusterError(str(exc)) from None
    if raylet.get_authentication_mode() != raylet.AuthenticationMode.TOKEN:
        return
    if not raylet.AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
        named = os.environ.get(TOKEN_PATH_ENV)
        where = f"{TOKEN_PATH_ENV} names {named}, which holds none" if named else f"{TOKEN_PATH_ENV} is unset"
        raise ClusterError(f"authentication: no Ray token found ({TOKEN_ENV} is unset, {where}, and"
                           f" {default_token_path()} does not exist); give the cluster's token in one of them")
    if address == "auto" or "://" in address:
        return  # Ray finds the GCS of `auto` itself; a Ray client server checks the token on connect
    host, port = _split_address(address)
    auth_error = importlib.import_module("ray.exceptions").AuthenticationError
    try:
        with quiet_stderr():  # Ray's C++ client logs the refusal on the terminal too
            raylet.InnerGcsClient.standalone(f"{host}:{port}", None, int(timeout_s * 1000))
    except auth_error:
        raise ClusterError(f"authentication failed at the Ray cluster at {address}: it refused the token read from"
                           f" {token_source()}") from None
    except Exception:  # noqa: BLE001 - anything else is ray.init's to report, as before
        return


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """File descriptor 2 goes to /dev/null for the body: a compiled library's lines cannot be caught in Python."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def ensure_private_token() -> None:
    """Before a local instance starts with token auth: a token that is the user's alone.

    Ray itself writes a new token to `~/.ray/auth_token` with the umask's mode (usually 0644: every
    user of the machine could read it). Where no token exists yet, this writes one, mode 0600 (its
    directory 0700 when created here); where Ray's default file exists, group and others lose their
    access to it. A token in `RAY_AUTH_TOKEN` or a file named by `RAY_AUTH_TOKEN_PATH` is the user's choice
    and left alone."""
    if os.environ.get(AUTH_MODE_ENV, "token").lower() != "token":
        return
    try:
        loader = private_raylet().AuthenticationTokenLoader.instance()
    except RayTooOld as exc:
        raise ClusterError(str(exc)) from None
    path = default_token_path()
    if loader.has_token(ignore_auth_mode=True):
        if not os.environ.get(TOKEN_ENV) and not os.environ.get(TOKEN_PATH_ENV) and path.is_file():
            mode = path.stat().st_mode & 0o777
            if mode & 0o077 and path.stat().st_uid == os.getuid():
                path.chmod(mode & 0o700)
        return
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o700, parents=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))  # as Ray's `generate_new_authentication_token`: 256 bits
    loader.reset_cache()


def connect(options: ClusterOptions) -> None:
    """`ray.init` for a local instance or an existing cluster; ClusterError in one line if it fails.

    A wrong or missing token fails before `ray.init`, naming authentication (`check_token`). Once
    connected, Ray's messages from the cluster's processes (a raylet's last log lines and stack trace
    when it dies, worker crashes) are not printed on this process's terminal: they stay in the nodes'
    Ray logs, and the scheduler says in its own words which node was lost."""
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
        ensure_private_token()
        # "local" always starts a new instance: a bare ray.init() would silently join any
        # cluster already running on this machine (a stale `ray start`, another user's).
        kwargs.update(address="local", num_cpus=options.num_cpus, num_gpus=options.num_gpus,
                      resources=options.resources or None, labels=options.labels or None,
                      _system_config=dict(FAST_FAILURE_DETECTION))
    else:
        if options.num_cpus is not None or options.num_gpus is not None:
            raise ClusterError("--num-cpus/--num-gpus size a local instance; they cannot be used with --address")
        _enable_token_auth()
        check_token(options.address)
        kwargs["address"] = options.address
        kwargs.pop("include_dashboard")
    try:
        ray.init(**kwargs)
    except Exception as exc:  # noqa: BLE001 - Ray raises many types; the user needs one line
        where = f"Ray cluster at {options.address}" if options.address else "a local Ray instance"
        message = " ".join(str(exc).split())
        if "auth" in message.lower() or "token" in message.lower():
            message = f"authentication failed with the token read from {token_source()}"
        raise ClusterError(f"cannot reach {where}: {message[:300]}") from None
    mute_cluster_messages(True)


def disconnect() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
    mute_cluster_messages(False)


def inventory() -> Inventory:
    """The alive nodes and what each advertises (CPUs, GPUs, accelerator type)."""
    import ray
    from moecluster.node.names import node_names

    alive = [n for n in ray.nodes() if n.get("Alive")]
    names = node_names(alive)
    nodes = []
    for n in alive:
        res = n.get("Resources", {})
        accel = next((k[len(ACCELERATOR_PREFIX):] for k in res if k.startswith(ACCELERATOR_PREFIX)), None)
        nodes.append(NodeInfo(node_id=n["NodeID"], name=names[n["NodeID"]], address=n["NodeManagerAddress"],
                              cpus=float(res.get("CPU", 0)), gpus=float(res.get("GPU", 0)), accelerator_type=accel,
                              is_head=HEAD_RESOURCE in res, port=int(n.get("NodeManagerPort") or 0)))
    return Inventory(nodes=tuple(sorted(nodes, key=lambda x: x.name)))


def probe_nodes(timeout_s: float = 60.0) -> dict[str, Any]:
    """Each alive node's own facts (GPUs, driver, torch, CUDA), from a zero-resource task pinned
    to it; a node that does not answer in time is listed with the reason."""
    import ray
    from moecluster.head.environment import local_facts
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
