"""Separate hosts on one machine: Linux network namespaces joined by a bridge, a real Ray node in each.

Every host is a network namespace with one veth interface on a test subnet (10.213.0.0/24),
its peer on a bridge inside a switch namespace of its own, so the machine's own network is never
touched. Each host runs `ray start --block` (token auth on, its own `--temp-dir` and
`--node-ip-address`); host 0 is the head, its GCS carries moecluster's failure-detection
settings in `--system-config`. Faults: `kill` (every process of a host, SIGKILL), `partition`
and `heal` (the host's port on the switch down and up: packets vanish, no connection is reset).
`close` ends every process this fixture started, by PID (walking each `ray start`'s process
tree), and deletes the namespaces.

Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) and `ip` from iproute2; `unavailable()` says why
not where it cannot work.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = "10.213.0"
PORT = 6379
BIN = Path(sys.executable).parent


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None: they can)."""
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    probe = f"mc-probe-{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"cannot create a network namespace ({exc.stderr.strip() or exc}); run as root"
    except OSError as exc:
        return f"cannot run `ip` ({exc})"
    with contextlib.suppress(subprocess.CalledProcessError):
        _ip("netns", "del", probe)
    return None


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), children first found, depth first."""
    out: list[int] = []
    try:
        children = []
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                children += [int(c) for c in fh.read().split()]
    except OSError:
        return out
    for child in children:
        out += [child, *descendants(child)]
    return out


@dataclass
class Host:
    index: int
    netns: str
    address: str
    port_on_switch: str
    process: subprocess.Popen[bytes] | None = None
    pids: set[int] = field(default_factory=set)  # every process of this host's Ray node seen so far
    starts: int = 0


class NetnsCluster:
    """`hosts` namespaces, host 0 the Ray head (no GPUs), the others workers with `gpus` fake GPUs
    of `accelerator` each and `cpus` CPUs. `env` holds the token settings for clients."""

    def __init__(self, hosts: int, gpus: int = 2, cpus: int = 1, accelerator: str = "FAKE-A",
                 system_config: dict[str, int] | None = None,
                 worker_env: dict[int, dict[str, str]] | None = None) -> None:
        import secrets

        tag = f"mc{os.getpid() % 100000}"
        self.tag = tag
        self.root = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir="/tmp"))  # short: Ray's socket paths must fit
        self.gpus, self.cpus, self.accelerator = gpus, cpus, accelerator
        self.system_config = system_config or {}
        self.worker_env = worker_env or {}
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
                    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_USAGE_STATS_ENABLED": "0"}
        self.switch = f"{tag}-sw"
        self.hosts = [Host(i, f"{tag}-h{i}", f"{SUBNET}.{i + 1}", f"{tag}s{i}") for i in range(hosts)]
        self._made: list[str] = []

    # -- set-up ------------------------------------------------------------------------------
    def build(self) -> "NetnsCluster":
        _ip("netns", "add", self.switch)
        self._made.append(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for host in self.hosts:
            _ip("netns", "add", host.netns)
            self._made.append(host.netns)
            _ip("-n", host.netns, "link", "set", "lo", "up")
            _ip("link", "add", "eth0", "netns", host.netns, "type", "veth", "peer", "name", host.port_on_switch,
                "netns", self.switch)
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "eth0", "up")
            _ip("-n", self.switch, "link", "set", host.port_on_switch, "master", "br0")
            _ip("-n", self.switch, "link", "set", host.port_on_switch, "up")
        for host in self.hosts:
            self.start(host)
        self.wait_alive(len(self.hosts))
        return self

    @property
    def address(self) -> str:
        return f"{self.hosts[0].address}:{PORT}"

    def start(self, host: Host) -> None:
        """`ray start --block` in the host's namespace, with a fresh temp dir."""
        host.starts += 1
        temp = self.root / f"h{host.index}-{host.starts}"
        temp.mkdir()
        args = [str(BIN / "ray"), "start", "--block", "--disable-usage-stats", f"--node-ip-address={host.address}",
                f"--temp-dir={temp}", f"--num-cpus={self.cpus}"]
        if host.index == 0:
            args += ["--head", f"--port={PORT}", "--num-gpus=0", "--include-dashboard=false",
                     f"--system-config={json.dumps(self.system_config)}"]
        else:
            args += [f"--address={self.address}", f"--num-gpus={self.gpus}",
                     f"--resources={json.dumps({f'accelerator_type:{self.accelerator}': 1})}",
                     f"--labels=ray.io/accelerator-type={self.accelerator}"]
        env = {**os.environ, **self.env, **self.worker_env.get(host.index, {})}
        log = open(temp / "ray-start.log", "wb")  # noqa: SIM115 - the process keeps it open
        host.process = subprocess.Popen(["ip", "netns", "exec", host.netns, *args], stdout=log,
                                        stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()

    def wait_alive(self, count: int, timeout_s: float = 90.0) -> None:
        """Until every host's current `ray start` says its node runs (`count`: how many hosts; a
        worker says so once its raylet registered with the GCS)."""
        deadline = time.monotonic() + timeout_s
        pending = [h for h in self.hosts[:count] if h.process is not None]
        while pending and time.monotonic() < deadline:
            self.track()
            for host in list(pending):
                log = self.root / f"h{host.index}-{host.starts}" / "ray-start.log"
                text = log.read_text(errors="replace") if log.exists() else ""
                if "Ray runtime started" in text:
                    pending.remove(host)
                elif host.process is not None and host.process.poll() is not None:
                    raise RuntimeError(f"ray start on host {host.index} ended: {text[-1000:]}")
            time.sleep(0.2)
        if pending:
            raise RuntimeError(f"Ray not started on hosts {[h.index for h in pending]} within {timeout_s:g} s")

    def run_in(self, index: int, args: list[str], timeout: float = 300,
               **kwargs: object) -> subprocess.CompletedProcess[str]:
        """Run `args` in host `index`'s namespace with the token in its environment."""
        env = {**os.environ, **self.env}
        return subprocess.run(["ip", "netns", "exec", self.hosts[index].netns, *args], capture_output=True,
                              text=True, timeout=timeout, env=env, check=False, **kwargs)  # type: ignore[call-overload]

    def popen_in(self, index: int, args: list[str], **kwargs: object) -> subprocess.Popen[str]:
        env = {**os.environ, **self.env}
        return subprocess.Popen(["ip", "netns", "exec", self.hosts[index].netns, *args], env=env, text=True,
                                **kwargs)  # type: ignore[call-overload]

    # -- faults ------------------------------------------------------------------------------
    def track(self) -> None:
        """Note every process of every host's Ray node (new workers appear all the time)."""
        for host in self.hosts:
            if host.process is not None:
                host.pids |= {host.process.pid, *descendants(host.process.pid)}

    def kill(self, index: int) -> None:
        """SIGKILL every process of host `index`'s Ray node at once (a machine losing power)."""
        host = self.hosts[index]
        self.track()
        for pid in sorted(host.pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if host.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                host.process.wait(timeout=10)
        host.pids.clear()
        host.process = None

    def partition(self, index: int) -> None:
        """Cut host `index` off the network: its switch port goes down (nothing is reset)."""
        _ip("-n", self.switch, "link", "set", self.hosts[index].port_on_switch, "down")

    def heal(self, index: int) -> None:
        _ip("-n", self.switch, "link", "set", self.hosts[index].port_on_switch, "up")

    # -- teardown ----------------------------------------------------------------------------
    def close(self) -> None:
        for host in reversed(self.hosts):
            self.kill(host.index)
        for netns in reversed(self._made):
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", netns)
        shutil.rmtree(self.root, ignore_errors=True)
