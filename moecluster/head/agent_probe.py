"""What answers on a node's agent port: nothing, a moecluster agent (and which node it labels), or
something else — asked by the head before it reuses an agent it did not start.

A moecluster agent is recognised by its identifying series, `moecluster_agent_info{node=...}`,
in its `/metrics` (read with prometheus-client's own parser). Plain HTTP is asked first; where
the port speaks something else, HTTPS is tried, because a standalone agent may serve TLS
(`--web-config-file`): its certificate is not verified, as nothing is sent and the answer only
identifies the server (Prometheus verifies it when it scrapes). A port that refuses the
connection is free; anything else that answers is "something else", described in a few words
for the error that names the port.
"""
from __future__ import annotations

import http.client
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

INFO_SAMPLE = "moecluster_agent_info"
MAX_BODY_BYTES = 8 * 2**20  # a node agent's /metrics is a few kB; stop reading a stranger's long answer


@dataclass(frozen=True)
class PortProbe:
    """What answers at `address`: `node` is the agent's node label where a moecluster agent
    answers; `other` says what answers instead where it is not one; both None: nothing."""

    address: str
    node: str | None = None
    other: str | None = None

    @property
    def free(self) -> bool:
        return self.node is None and self.other is None


def _node_label(body: str) -> str | None:
    """The `node` label of the agent's info series in a /metrics body, else None."""
    try:
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name == INFO_SAMPLE and sample.labels.get("node"):
                    return sample.labels["node"]
    except (ValueError, TypeError, IndexError):  # not the Prometheus text format
        return None
    return None


def _get(url: str, timeout_s: float, context: ssl.SSLContext | None) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s, context=context) as resp:
        return resp.read(MAX_BODY_BYTES).decode("utf-8", "replace")


def _identify(url: str, timeout_s: float, context: ssl.SSLContext | None) -> tuple[str | None, str]:
    """(node label, '') for a moecluster agent at `url`, else (None, what answered instead)."""
    try:
        body = _get(url, timeout_s, context)
    except urllib.error.HTTPError as exc:
        return None, f"answers HTTP {exc.code} at /metrics"
    label = _node_label(body)
    return (label, "") if label else (None, f"answers /metrics without {INFO_SAMPLE}")


def probe_port(address: str, timeout_s: float = 2.0) -> PortProbe:
    """What answers at `address` (`host:port`); never raises for what it finds there."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except (OSError, ValueError):
        return PortProbe(address)  # refused, unreachable or silent: no server to reuse or to collide with
    try:
        label, other = _identify(f"http://{address}/metrics", timeout_s, None)
    except (OSError, http.client.HTTPException) as plain:  # not HTTP: perhaps an agent serving TLS
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # identification only, see the module's docstring
        try:
            label, other = _identify(f"https://{address}/metrics", timeout_s, insecure)
        except (OSError, http.client.HTTPException) as tls:
            reason = getattr(tls, "reason", None) or tls
            return PortProbe(address, other=f"speaks neither HTTP ({type(plain).__name__}) nor HTTPS we can read"
                                            f" ({' '.join(str(reason).split())[:120]})")
    return PortProbe(address, node=label) if label else PortProbe(address, other=other)
