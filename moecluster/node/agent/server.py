"""The node agent: opens the devices, samples power, serves `/metrics` until told to stop.

`Agent` is the embeddable object (the `moecluster agent` command and the Ray actor that
`moecluster submit` starts on each node both use it); `serve()` is the blocking loop with
SIGTERM/SIGINT handling for a process of its own. The endpoint is read-only: it only reads
GPU counters and the task-label directory.
"""
from __future__ import annotations

import logging
import signal
import socket
import threading
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, make_wsgi_app

from moecluster.node.address import node_address
from moecluster.devices import DeviceError, DeviceKind, DeviceSet, FakeDevices, FakeGpu, NoDevices, open_devices
from moecluster.node.agent.collector import GpuCollector
from moecluster.node.agent.sampler import PowerSampler
from moecluster.node.agent.task_labels import default_state_dir, state_dir
from moecluster.node.agent.web_config import load_web_config

DEVICE_KINDS = ("auto", "nvml", "fake", "none")
ALL_INTERFACES = "0.0.0.0"
LOOPBACK = "127.0.0.1"
log = logging.getLogger("moecluster.agent")


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent needs; validated here so every caller gets the same errors."""

    # None: this node's own address (`node_address()`) and loopback; ALL_INTERFACES only when asked
    host: str | None = None
    port: int = 9400
    interval_s: float = 0.1
    device: str = "auto"
    node: str = field(default_factory=socket.gethostname)
    state_dir: Path | None = None  # None: $MOECLUSTER_STATE_DIR or /tmp/moecluster-<uid>/tasks
    web_config_file: Path | None = None
    fake_gpus: int = 2
    fake_idle_w: float = 60.0
    fake_busy_w: float = 300.0
    fake_load: float = 0.0
    fake_fault_file: Path | None = None

    def __post_init__(self) -> None:
        if self.device not in DEVICE_KINDS:
            raise ValueError(f"device {self.device!r} is not one of {', '.join(DEVICE_KINDS)}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is outside 0..65535")
        if not 0.01 <= self.interval_s <= 60:
            raise ValueError(f"interval {self.interval_s} s is outside 0.01..60 s")
        if not self.node:
            raise ValueError("node name is empty")
        if self.fake_gpus < 0 or not 0 <= self.fake_load <= 1 or self.fake_idle_w < 0 \
                or self.fake_busy_w < self.fake_idle_w:
            raise ValueError("fake device: need fake_gpus >= 0, 0 <= fake_load <= 1, 0 <= idle_w <= busy_w")

    @property
    def resolved_state_dir(self) -> Path:
        return self.state_dir if self.state_dir is not None else default_state_dir()

    def bind_host(self) -> str:
        """The address to bind: the one given, else this node's own (as other nodes reach it)."""
        return self.host if self.host is not None else node_address()

    def also_loopback(self, bound: str) -> bool:
        """Whether to serve on the loopback address too: by default (no host given), so that
        `curl localhost:<port>/metrics` works on the node itself while other hosts still reach
        the node's own address only (never every interface unless asked)."""
        return self.host is None and not bound.startswith("127.")


_DEVICE_KINDS: dict[str, DeviceKind] = {"auto": "auto", "nvml": "nvml", "none": "none", "fake": "fake"}


def _device_kind(name: str) -> DeviceKind:
    """`name` as a device kind; ValueError naming the known ones."""
    try:
        return _DEVICE_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown device {name!r} ({', '.join(_DEVICE_KINDS)})") from None

def open_agent_devices(config: AgentConfig) -> DeviceSet:
    """The node's devices; NVML that cannot start leaves an empty set with the reason logged,
    so the agent still serves its own health instead of crash-looping."""
    devices: DeviceSet
    if config.device == "fake":
        devices = FakeDevices(config.fake_gpus, node=config.node, idle_w=config.fake_idle_w,
                              busy_w=config.fake_busy_w, fault_file=config.fake_fault_file)
        for gpu in devices.gpus:
            if isinstance(gpu, FakeGpu):
                gpu.set_load(config.fake_load)
        return devices
    try:
        devices = open_devices(_device_kind(config.device))
    except DeviceError as exc:
        devices = NoDevices(reason=str(exc))
    if devices.unavailable_reason:
        log.warning("no GPU readings on this node: %s; serving the agent's own metrics only",
                    devices.unavailable_reason)
    return devices


class _QuietHandler(WSGIRequestHandler):
    timeout = 30  # seconds a client may stall before its connection is dropped

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


def _server_class(host: str, port: int) -> type[WSGIServer]:
    from socketserver import ThreadingMixIn

    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = family

    return Server


def _app(metrics_app: Callable[..., Iterable[bytes]], health: Callable[[], str]) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path in ("/healthz", "/"):
            body = (health() if path == "/healthz" else
                    "moecluster node agent: metrics at /metrics, health at /healthz\n").encode()
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: try /metrics\n"]

    return app


def _version() -> str:
    try:
        return metadata.version("moecluster")
    except metadata.PackageNotFoundError:
        return "unknown"


class Agent:
    """One node agent. `start()` opens devices, starts the sampler and the HTTP server;
    `stop()` undoes all three. Use as a context manager in tests."""

    def __init__(self, config: AgentConfig, devices: DeviceSet | None = None) -> None:
        self.config = config
        self._given_devices = devices
        self.devices: DeviceSet | None = None
        self.sampler: PowerSampler | None = None
        self._servers: list[WSGIServer] = []  # the node's own address first; loopback after it by default
        self._threads: list[threading.Thread] = []
        self._tls = False
        self.host = config.bind_host()  # resolved once: the address this agent serves on

    @property
    def port(self) -> int:
        if not self._servers:
            raise RuntimeError("agent not started")
        return int(self._servers[0].server_address[1])

    @property
    def hosts(self) -> list[str]:
        """Every address served (the first is `host`)."""
        return [str(server.server_address[0]) for server in self._servers]

    @property
    def url(self) -> str:
        host = self.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{host}:{self.port}/metrics"

    def health(self) -> str:
        devices = self.devices
        if devices is None:
            return "starting\n"
        reason = devices.unavailable_reason
        gpus = ", ".join(f"{g.info.index}:{g.info.uuid}" for g in devices.gpus) or "none"
        return (f"ok\nnode {self.config.node}\ndevice {devices.kind}\ngpus {gpus}\n"
                + (f"no GPU readings: {reason}\n" if reason else ""))

    def start(self) -> "Agent":
        """Serve; UnsafeDirectory (a ValueError) before anything starts where the task-label
        directory is not this user's alone, WebConfigError for a bad web config, OSError where
        the address cannot be bound."""
        state = state_dir(self.config.resolved_state_dir)
        tls = load_web_config(self.config.web_config_file) if self.config.web_config_file else None
        self.devices = self._given_devices or open_agent_devices(self.config)
        self.sampler = PowerSampler(self.devices.gpus, self.config.interval_s)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(GpuCollector(self.devices, node=self.config.node, sampler=self.sampler,
                                       state_dir=state, agent_version=_version()))
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        app = _app(make_wsgi_app(registry), self.health)
        try:
            servers = [make_server(self.host, self.config.port, app, _server_class(self.host, self.config.port),
                                   handler_class=_QuietHandler)]
        except OSError:
            self._close_devices()
            raise
        port = int(servers[0].server_address[1])
        if self.config.also_loopback(self.host):
            try:
                servers.append(make_server(LOOPBACK, port, app, _server_class(LOOPBACK, port),
                                           handler_class=_QuietHandler))
            except OSError as exc:  # the node's own address is what Prometheus scrapes: serve it regardless
                log.warning("not serving on %s port %d too: %s", LOOPBACK, port, exc.strerror or exc)
        if tls is not None:
            context = tls.context()  # one context (certificates read once) for every address served
            for server in servers:
                # Handshake in the request's thread, not in accept(): a silent client must not stall the server.
                server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._tls = tls is not None
        self._servers = servers
        self.sampler.start()
        self._threads = [threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                          name="moecluster-agent-http", daemon=True) for server in servers]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, stop sampling, release the devices; idempotent."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []
        for thread in self._threads:
            thread.join(5.0)
        self._threads = []
        if self.sampler is not None:
            self.sampler.stop()
        self._close_devices()

    def _close_devices(self) -> None:
        if self.devices is not None and self._given_devices is None:
            self.devices.close()

    def __enter__(self) -> "Agent":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _bound(host: str) -> str:
    return "all interfaces" if host in (ALL_INTERFACES, "::", "") else host


def serve(config: AgentConfig, *, on_ready: Callable[[Agent], None] | None = None) -> None:
    """Run the agent in this process until SIGTERM or SIGINT, then stop cleanly."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    agent = Agent(config)
    try:
        agent.start()
        devices = agent.devices
        assert devices is not None
        log.info("serving %s (bound to %s port %d; node %s, %s devices, %d GPUs, power sampled every %g s, "
                 "task labels from %s)", agent.url, " and ".join(_bound(h) for h in agent.hosts), agent.port,
                 config.node,
                 devices.kind, len(devices.gpus), config.interval_s, config.resolved_state_dir)
        if on_ready is not None:
            on_ready(agent)
        while not stop.wait(0.5):
            pass
    finally:
        agent.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped")
