"""The results exporter as a process: `/metrics` over the run stores, until SIGTERM or SIGINT.

It runs on the head, beside the runs directory (`moecluster dashboards serve-results`). It binds
loopback by default: on the head, Prometheus reaches it there (the compose file runs Prometheus
with the host's network); bind another address (`--host`) only where Prometheus runs elsewhere,
e.g. a pod's IP under KubeRay.
"""
from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from .collector import ResultsCollector

DEFAULT_PORT = 9401
log = logging.getLogger("moecluster.results")


@dataclass(frozen=True)
class ResultsExporterConfig:
    """Where the runs are and where to serve; validated here for every caller."""

    runs_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_runs: int | None = 20  # the most recent runs; None: every run under runs_dir

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is outside 0..65535")
        if self.max_runs is not None and self.max_runs < 1:
            raise ValueError(f"max runs {self.max_runs} must be at least 1")


class ResultsExporter:
    """`start()` serves the collector over HTTP; `stop()` ends it. A context manager for tests."""

    def __init__(self, config: ResultsExporterConfig) -> None:
        self.config = config
        self.collector = ResultsCollector(config.runs_dir, max_runs=config.max_runs)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("results exporter not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self.config.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> "ResultsExporter":
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector)
        self._server, self._thread = start_http_server(self.config.port, addr=self.config.host, registry=registry)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def __enter__(self) -> "ResultsExporter":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(config: ResultsExporterConfig, *, on_ready: Callable[[ResultsExporter], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    exporter = ResultsExporter(config)
    try:
        exporter.start()
        log.info("serving %s (runs under %s, the %s most recent)", exporter.url, config.runs_dir,
                 config.max_runs if config.max_runs is not None else "all")
        if on_ready is not None:
            on_ready(exporter)
        while not stop.wait(0.5):
            pass
    finally:
        exporter.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped")
