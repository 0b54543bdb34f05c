"""The results exporter as a process: `/metrics` over the run stores, until SIGTERM or SIGINT.

It runs on the head, beside the runs directory (`moecluster dashboards serve-results`). It binds
loopback by default: on the head, Prometheus reaches it there (the compose file runs Prometheus
with the host's network); bind another address (`--host`) only where Prometheus runs elsewhere,
e.g. a pod's IP under KubeRay.
"""
from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server

from moecluster.report.results_exporter.collector import ResultsCollector

DEFAULT_PORT = 9401
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
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


def _url(host: str, port: int) -> str:
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{f'[{host}]' if ':' in host and not host.startswith('[') else host}:{port}/metrics"


@contextmanager
def exporting(config: ResultsExporterConfig) -> Iterator[str]:
    """Serve the run stores' series over HTTP for the `with` block; yields the /metrics URL."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ResultsCollector(config.runs_dir, max_runs=config.max_runs))
    server, thread = start_http_server(config.port, addr=config.host, registry=registry)
    try:
        yield _url(config.host, int(server.server_address[1]))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5.0)


def serve(config: ResultsExporterConfig, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly.

    The stop signals are blocked before the server's thread starts (so it inherits the mask) and
    then awaited in this thread: no handler runs in the middle of a scrape."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        with exporting(config) as url:
            log.info("serving %s (runs under %s, the %s most recent)", url, config.runs_dir,
                     config.max_runs if config.max_runs is not None else "all")
            if on_ready is not None:
                on_ready(url)
            received = signal.sigwait(STOP_SIGNALS)
            log.info("received %s, stopping", signal.Signals(received).name)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    log.info("stopped")
