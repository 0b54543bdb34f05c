"""Real processes for the deployment tests: `moecluster agent` subprocesses and a Prometheus server."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


SERVING = re.compile(r"serving (https?://\S+/metrics)")


def moecluster_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("moecluster")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from moecluster.cli import main; main()"]


class AgentProcess:
    """`moecluster agent ...` (or another serving command, e.g. `dashboards serve-results`) as a
    child process; `url` once its log says it serves."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, command: tuple[str, ...] = ("agent",)) -> None:
        self.args = [*moecluster_cmd(), *command, *args]
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self.url: str | None = None
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            m = SERVING.search(line)
            if m and self.url is None:
                self.url = m.group(1)
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout_s: float = 60.0) -> str:
        if not self._ready.wait(timeout_s) or self.url is None:
            self.stop()
            raise AssertionError(f"agent did not start: {self.args}\n" + "\n".join(self.lines))
        return self.url

    @property
    def address(self) -> str:
        assert self.url is not None
        return urllib.parse.urlsplit(self.url).netloc

    def log(self) -> str:
        return "\n".join(self.lines)

    def stop(self, timeout_s: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        return self.proc.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    """A Prometheus server of our own on loopback, with its TSDB in a temporary directory."""

    def __init__(self, config: Path, data: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = data.parent / "prometheus.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle"],
            stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("prometheus exited:\n" + self.log_path.read_text())
            try:
                with urllib.request.urlopen(self.base + "/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("prometheus not ready:\n" + self.log_path.read_text())

    def api(self, path: str, **params: Any) -> Any:
        url = f"{self.base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self.api("query", **params)["result"]

    def wait_for(self, promql: str, *, timeout_s: float = 20.0, count: int = 1) -> list[dict[str, Any]]:
        """Poll until `promql` returns at least `count` series."""
        deadline = time.monotonic() + timeout_s
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(promql)
            if len(result) >= count:
                return result
            time.sleep(0.25)
        raise AssertionError(f"{promql!r} returned {result} after {timeout_s} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


