"""Reaching Ray: the reachability probe without Python gRPC, authentication named in one line and in
seconds, the local token kept private, and Ray's messages from the cluster off the driver's terminal.

Real Ray throughout: a one-node cluster with token auth (`fake_gpu_cluster`), `moecluster submit`
in subprocesses (Ray caches the token per process), a local instance started by `connect`.
"""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moecluster.head.schedule.cluster import ClusterError, check_reachable, ensure_private_token
from moecluster_fakecluster import auth_env, fake_gpu_cluster

ROOT = Path(__file__).resolve().parents[3]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
MOECLUSTER = str(Path(sys.executable).parent / "moecluster")
TOKEN_VARS = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")


@pytest.fixture(scope="module")
def one_node() -> Iterator[tuple[Any, dict[str, str]]]:
    with auth_env() as env, fake_gpu_cluster(("FAKE-A",), gpus=0, cpus=1) as cluster:
        yield cluster, env


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without any Ray token setting, `HOME` at `home`, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in TOKEN_VARS}
    return {**env, "HOME": str(home), **extra}


def submit(address: str, tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run([MOECLUSTER, "submit", str(QUICKSTART), "--address", address, "--no-agents",
                           "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120,
                          env=env)
    return proc, time.monotonic() - started


def test_the_probe_needs_no_python_grpc(one_node: tuple[Any, dict[str, str]],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain `ray` does not install `grpcio`: the probe must answer without it."""
    cluster, _ = one_node
    monkeypatch.setitem(sys.modules, "grpc", None)  # `import grpc` raises ImportError, as on a plain install
    check_reachable(cluster.address, timeout_s=5)


def test_something_else_listening_is_not_taken_for_ray() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def answer() -> None:  # an HTTP/1 server's reply to whatever it is sent
            conn, _ = server.accept()
            with conn:
                conn.recv(64)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        with pytest.raises(ClusterError, match=f"127.0.0.1:{port}: something listens there, but no Ray GCS"):
            check_reachable(f"127.0.0.1:{port}", timeout_s=5)
        thread.join(5)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_wrong_or_missing_token_fails_in_seconds_naming_authentication_and_its_source(
        one_node: tuple[Any, dict[str, str]], tmp_path: Path) -> None:
    cluster, _ = one_node
    wrong = "0123456789abcdef" * 4
    token_file = tmp_path / "token"
    token_file.write_text(wrong)
    cases = {
        "env": (clean_env(tmp_path, RAY_AUTH_TOKEN=wrong), "the RAY_AUTH_TOKEN environment variable"),
        "file": (clean_env(tmp_path, RAY_AUTH_TOKEN_PATH=str(token_file)),
                 f"the file {token_file} (named by RAY_AUTH_TOKEN_PATH)"),
    }
    for case, (env, source) in cases.items():
        proc, took_s = submit(cluster.address, tmp_path, env)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, (case, proc.stderr[-2000:])
        assert (f"authentication failed at the Ray cluster at {cluster.address}: it refused the token read from"
                f" {source}") in proc.stderr, (case, proc.stderr)
        assert wrong not in proc.stderr + proc.stdout and not (tmp_path / "runs").exists()
        assert took_s < 20, (case, took_s)  # Ray alone retries for about 23 s, then blames the connection
    proc, took_s = submit(cluster.address, tmp_path, clean_env(tmp_path))  # no token anywhere
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert "authentication: no Ray token found" in proc.stderr and str(tmp_path / ".ray" / "auth_token") in proc.stderr
    assert took_s < 20 and not (tmp_path / ".ray").exists()  # nothing generated for a cluster we join


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_messages_from_the_cluster_s_processes_stay_off_the_driver_s_terminal(
        one_node: tuple[Any, dict[str, str]]) -> None:
    """What Ray's error listener receives (a dead raylet's log tail and stack trace, published to every
    driver) is not printed by a connected moecluster driver; its own output is."""
    import ray

    cluster, env = one_node
    driver = ("import sys, time\n"
              "from moecluster.head.schedule import cluster\n"
              "cluster.connect(cluster.ClusterOptions(address=sys.argv[1]))\n"
              "print('connected', flush=True)\n"
              "sys.stdin.readline()\n"
              "time.sleep(3)\n"  # Ray's listener polls the published errors in the background
              "print('moecluster line', flush=True)\n"
              "cluster.disconnect()\n")
    proc = subprocess.Popen([sys.executable, "-c", driver, cluster.address], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "connected\n", proc.stderr
        gcs = ray._raylet.GcsClient(address=cluster.address)
        ray._private.utils.publish_error_to_driver("raylet_died", "raylet test dump *** StackTrace Information ***",
                                                   gcs_client=gcs)
        out, err = proc.communicate("go\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert out == "moecluster line\n" and "StackTrace" not in err and "raylet test dump" not in out + err, (out, err)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_local_instance_leaves_a_token_only_its_user_can_read(tmp_path: Path) -> None:
    """No token yet: the one a local instance gets is 0600 in a 0700 `~/.ray`, whatever the umask."""
    code = ("import os; os.umask(0o022)\n"
            "from moecluster.head.schedule import cluster\n"
            "cluster.connect(cluster.ClusterOptions(num_cpus=1))\n"
            "cluster.disconnect()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240,
                          env=clean_env(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    token = tmp_path / ".ray" / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and stat.S_IMODE(token.parent.stat().st_mode) == 0o700
    assert len(token.read_text().strip()) == 64


def test_an_existing_default_token_readable_by_others_is_made_private(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from moecluster.head.raycompat import private_raylet

    token = tmp_path / ".ray" / "auth_token"
    token.parent.mkdir()
    token.write_text("f" * 64)
    token.chmod(0o644)
    for var in TOKEN_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    loader = private_raylet().AuthenticationTokenLoader.instance()
    loader.reset_cache()  # Ray caches the token it found per process
    try:
        ensure_private_token()
    finally:
        monkeypatch.undo()
        loader.reset_cache()
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and token.read_text() == "f" * 64
