"""The agent's HTTP endpoint in-process: routes, TLS from a web config, config errors."""
from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from moecluster.node.address import node_address
from moecluster.node.agent.server import ALL_INTERFACES, Agent, AgentConfig
from moecluster.node.agent.web_config import WebConfigError, load_web_config
from moecluster.node.private_dir import UnsafeDirectory


def _get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_routes(tmp_path: Path) -> None:
    config = AgentConfig(host="127.0.0.1", port=0, device="fake", node="n1", state_dir=tmp_path, fake_gpus=1)
    with Agent(config) as agent:
        status, body = _get(agent.url)
        assert status == 200 and 'moecluster_gpu_up{gpu="0"' in body and "process_cpu_seconds_total" in body
        base = agent.url.removesuffix("/metrics")
        status, body = _get(base + "/healthz")
        assert status == 200 and body.startswith("ok\n") and "device fake" in body
        assert _get(base + "/nope")[0] == 404
    assert agent.sampler is not None and not agent.sampler.thread.is_alive()


def test_health_says_why_there_are_no_gpus() -> None:
    with Agent(AgentConfig(host="127.0.0.1", port=0, device="none", node="n1")) as agent:
        _, body = _get(agent.url.removesuffix("/metrics") + "/healthz")
        assert "no GPU readings: no GPU energy source on this node" in body
        _, metrics = _get(agent.url)
        assert 'moecluster_agent_devices_up{device="none",node="n1"} 0.0' in metrics


@pytest.mark.parametrize("kw, key", [
    ({"device": "cuda"}, "device"), ({"port": 70000}, "port"), ({"interval_s": 0.0}, "interval"),
    ({"fake_load": 2.0}, "fake_load"),
])
def test_config_errors_name_the_key(kw: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        AgentConfig(**kw)


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "agent.crt", tmp_path / "agent.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


def test_tls_from_an_exporter_toolkit_web_config(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: agent.crt\n  key_file: agent.key\n")  # relative to the file
    with Agent(AgentConfig(host="127.0.0.1", port=0, device="fake", node="n1", web_config_file=web)) as agent:
        assert agent.url.startswith("https://")
        silent = socket.create_connection(("127.0.0.1", agent.port))  # connects, never says hello
        status, body = _get(agent.url, ssl.create_default_context(cafile=str(cert)))
        silent.close()
        assert status == 200 and "moecluster_gpu_energy_joules_total" in body
        with pytest.raises(OSError):  # plain HTTP is not served
            _get(agent.url.replace("https://", "http://"))


@pytest.mark.parametrize("text, message", [
    ("basic_auth_users:\n  prom: $2y$10$abc\n", "reverse proxy"),
    ("tls_server_config:\n  cert_file: a.crt\n", "key_file is required"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
     "client_ca_file"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [x]\n", "cipher_suites"),
    ("listen: 1\n", "unknown key"),
])
def test_web_config_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    web = tmp_path / "web.yml"
    web.write_text(text)
    with pytest.raises(WebConfigError, match=message):
        load_web_config(web)


def test_binds_the_nodes_own_address_and_loopback_by_default(tmp_path: Path) -> None:
    """Prometheus on another host scrapes the node's address; `curl localhost:9400/metrics` on the
    node works too; nothing else is bound (not every interface)."""
    ours = node_address()
    if ours.startswith("127."):
        pytest.skip("this machine has no address but loopback")
    with Agent(AgentConfig(port=0, device="none", node="n1", state_dir=tmp_path)) as agent:
        assert agent.host == ours and agent.url == f"http://{ours}:{agent.port}/metrics"
        assert agent.hosts == [ours, "127.0.0.1"]
        assert _get(agent.url)[0] == 200
        status, body = _get(f"http://127.0.0.1:{agent.port}/metrics")
        assert status == 200 and "moecluster_agent_devices_up" in body
        with pytest.raises(OSError):  # 127.0.0.2 is this machine too: only a bind of every interface serves it
            socket.create_connection(("127.0.0.2", agent.port), timeout=5).close()


def test_a_given_host_is_the_only_one(tmp_path: Path) -> None:
    ours = node_address()
    if ours.startswith("127."):
        pytest.skip("this machine has no address but loopback")
    with Agent(AgentConfig(host=ours, port=0, device="none", node="n1", state_dir=tmp_path)) as agent:
        assert agent.hosts == [ours] and _get(agent.url)[0] == 200
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", agent.port), timeout=5).close()


def test_the_agent_command_answers_on_localhost(tmp_path: Path) -> None:
    """`moecluster agent` as the README starts it: a real request to 127.0.0.1 on its port; the
    process imports neither pandas, scipy, torch nor Ray."""
    moecluster = str(Path(sys.executable).parent / "moecluster")
    proc = subprocess.Popen([sys.executable, "-X", "importtime", moecluster, "agent", "--port", "0", "--device",
                             "none", "--state-dir", str(tmp_path / "tasks")], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        for line in proc.stderr:
            lines.append(line)
            found = re.search(r"port (\d+);", line)
            if "serving " in line and found:
                break
        else:
            pytest.fail("".join(lines[-20:]))
        status, body = _get(f"http://127.0.0.1:{found.group(1)}/metrics")
        assert status == 200 and "moecluster_agent_devices_up" in body
    finally:
        proc.terminate()
        _, rest = proc.communicate(timeout=30)
    assert proc.returncode == 0, rest[-2000:]
    imported = {m.split(".")[0] for m in re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$",
                                                     "".join(lines) + rest, re.M)}
    assert not imported & {"pandas", "scipy", "torch", "ray"}, sorted(imported & {"pandas", "scipy", "torch", "ray"})


def test_all_interfaces_only_when_asked(tmp_path: Path) -> None:
    with Agent(AgentConfig(host=ALL_INTERFACES, port=0, device="none", node="n1", state_dir=tmp_path)) as agent:
        assert agent.host == "0.0.0.0"
        assert _get(f"http://127.0.0.1:{agent.port}/metrics")[0] == 200
        assert _get(f"http://{node_address()}:{agent.port}/metrics")[0] == 200


def test_an_unsafe_state_dir_stops_the_agent_before_it_serves(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    agent = Agent(AgentConfig(host="127.0.0.1", port=0, device="none", node="n1", state_dir=shared))
    with pytest.raises(UnsafeDirectory, match=r"task-label state directory .*shared is writable by its group"):
        agent.start()
    with pytest.raises(RuntimeError, match="not started"):
        agent.port  # noqa: B018 - nothing serves
