"""What answers on an agent port, told apart by real servers: a moecluster agent (plain and TLS),
another exporter, a web server saying 404, a service that is not HTTP, and nothing."""
from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from http_doubles import DCGM_BODY, serve_http
from moecluster.node.agent.server import Agent, AgentConfig
from moecluster.head.agent_probe import probe_port


def _free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@contextmanager
def _not_http() -> Iterator[str]:
    """A service that greets in its own protocol and hangs up (like sshd)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_nothing_on_the_port_is_free() -> None:
    probe = probe_port(_free_address())
    assert probe.free and probe.node is None and probe.other is None


def test_a_moecluster_agent_is_recognised_with_its_node_label(tmp_path: Path) -> None:
    config = AgentConfig(host="127.0.0.1", port=0, device="fake", node="gpu-07", state_dir=tmp_path, fake_gpus=1)
    with Agent(config) as agent:
        probe = probe_port(f"127.0.0.1:{agent.port}")
    assert (probe.node, probe.other) == ("gpu-07", None)


def test_a_moecluster_agent_serving_tls_is_recognised(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=x",
                    "-keyout", str(tmp_path / "a.key"), "-out", str(tmp_path / "a.crt")],
                   check=True, capture_output=True, timeout=60)
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n")
    config = AgentConfig(host="127.0.0.1", port=0, device="none", node="tls-node", state_dir=tmp_path / "s",
                         web_config_file=web)
    with Agent(config) as agent:
        assert probe_port(f"127.0.0.1:{agent.port}").node == "tls-node"


def test_another_exporter_on_the_port_is_something_else() -> None:
    with serve_http(200, DCGM_BODY) as address:
        probe = probe_port(address)
    assert probe.node is None and probe.other == "answers /metrics without moecluster_agent_info"


def test_a_fake_info_line_outside_the_text_format_is_not_an_agent() -> None:
    with serve_http(200, b"<html>moecluster_agent_info{node=\"x\"} 1</html>\n") as address:
        assert probe_port(address).node is None


def test_a_web_server_without_metrics_is_something_else() -> None:
    with serve_http(404, b"not found") as address:
        assert probe_port(address).other == "answers HTTP 404 at /metrics"


def test_a_service_that_is_not_http_is_something_else() -> None:
    with _not_http() as address:
        probe = probe_port(address)
    assert probe.node is None and probe.other is not None and probe.other.startswith("speaks neither HTTP")
