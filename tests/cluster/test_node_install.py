"""A node installed exactly as the README installs one joins a cluster: `submit --address` works there.

The test extra pulls `ray[default]` (grpcio, aiohttp, ...), so the rest of the suite runs with packages
a node installed as the README says does not have. Here: a fresh virtual environment, `pip install
torch==2.13.0`, then `pip install -e <repo>` (no extras), from the indexes pip is configured with;
`ray start --head` from that environment (token auth on, the token in the environment only), and
`moecluster submit examples/quickstart.yaml --address host:port`, made small with `--set`. Skipped,
saying so, only where pip reaches no index.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from moecluster.head.store import RunStore
from netns import descendants

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
TORCH = "torch==2.13.0"  # the README's line
# pip's words when it cannot get a package list or a file from any index
NO_INDEX = ("from versions: none", "Failed to establish a new connection", "Temporary failure in name resolution",
            "Network is unreachable", "Could not fetch URL", "No route to host")


def pip(venv: Path, *args: str) -> None:
    # --no-compile: no bytecode written at install (half of torch's install time); what is installed is the same
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile", *args],
                          capture_output=True, text=True, timeout=420)
    if proc.returncode != 0:
        out = proc.stdout + proc.stderr
        if any(words in out for words in NO_INDEX):
            pytest.skip(f"pip reaches no package index here (pip install {' '.join(args)}): {out.strip()[-300:]}")
        raise AssertionError(f"pip install {' '.join(args)} failed:\n{out[-3000:]}")


@pytest.fixture(scope="module")
def node_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment installed as the README's set-up line installs a node."""
    venv = tmp_path_factory.mktemp("node") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    pip(venv, TORCH)
    pip(venv, "-e", str(ROOT))
    return venv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_env(venv: Path, token: str) -> dict[str, str]:
    """Only that environment's packages (none of the test run's), and the token in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PYTHON", "VIRTUAL_ENV"))}
    return {**env, "PATH": f"{venv / 'bin'}:{env.get('PATH', '')}", "VIRTUAL_ENV": str(venv),
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0"}


@contextlib.contextmanager
def ray_head(venv: Path, env: dict[str, str]) -> Iterator[str]:
    """`ray start --head --block` from `venv`; yields its address; ends every process it started, by PID."""
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="mcnode-", dir="/tmp"))  # short: Ray's socket paths must fit
    log = open(temp / "ray-start.log", "wb")  # noqa: SIM115 - the process keeps it open
    head = subprocess.Popen([str(venv / "bin" / "ray"), "start", "--head", "--block", f"--port={port}",
                             "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    log.close()
    pids: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in (temp / "ray-start.log").read_text(errors="replace"):
            pids |= {head.pid, *descendants(head.pid)}
            assert head.poll() is None and time.monotonic() < deadline, \
                (temp / "ray-start.log").read_text(errors="replace")[-3000:]
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        pids |= {head.pid, *descendants(head.pid)}
        for pid in sorted(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=10)
        shutil.rmtree(temp, ignore_errors=True)


def test_submit_joins_a_cluster_from_a_node_installed_as_the_readme_says(node_venv: Path, tmp_path: Path) -> None:
    env = node_env(node_venv, secrets.token_hex(32))
    with ray_head(node_venv, env) as address:
        proc = subprocess.run(
            [str(node_venv / "bin" / "moecluster"), "submit", str(ROOT / "examples" / "quickstart.yaml"),
             "--address", address, "--run-id", "node", "--runs-dir", str(tmp_path / "runs"), "--no-agents",
             "--set", "impl=naive", "--set", "duration_s=0.2", "--set", "warmup_s=0.05", "--set", "repeats=1",
             "--set", "replicates=1"],
            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with RunStore(tmp_path / "runs" / "node", read_only=True) as store:
        counts = store.counts()
    assert counts["planned"] == 2 and counts["ok"] == 2, (counts, proc.stderr[-3000:])
