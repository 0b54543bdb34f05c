"""A served model's server on this node: started from a command template, or one already running at a URL.

`render_command` fills a template's `{port}`, `{model}` and `{gpus}` word by word (the template is split
like a shell line first, so a model path with spaces stays one argument; no shell runs it). `Server.start`
runs it in its own process group (so the server's workers go with it) on a free port, its output in a log
file, and waits for health: `GET /health`, else `GET /v1/models`, answered 200, polled until
`startup_timeout_s`. `stop` sends SIGTERM to the group, then SIGKILL after `STOP_GRACE_S`; on Linux the server
also gets SIGTERM should the task's process die without stopping it (`PR_SET_PDEATHSIG`). A server that
exits or never answers raises `ServerFailed` naming the cause and the log's last lines: the task fails
rather than measure anything else.
"""
from __future__ import annotations

import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx

from moecluster.workloads.serve.template import template_problem

HEALTH_PATHS = ("/health", "/v1/models")
STOP_GRACE_S = 10.0
POLL_S = 0.25
LOG_TAIL_LINES = 15
PR_SET_PDEATHSIG = 1  # prctl(2)


class ServerFailed(RuntimeError):
    """The server died, never became healthy or answered errors; the message ends with its log's tail."""


def render_command(template: str, *, port: int, model: str, gpus: str) -> list[str]:
    """The argument list of `template` with its placeholders filled (see `template_problem`)."""
    problem = template_problem(template)  # the head checked it at load; a hand-made spec is checked here
    if problem:
        raise ValueError(f"server command {problem}")
    values = {"port": str(port), "model": model, "gpus": gpus}
    return [word.format(**values) for word in shlex.split(template)]


def _die_with_parent() -> None:
    """In the server's process, before it runs (Linux): SIGTERM when the task's thread dies, so a Ray
    worker killed outright (SIGKILL, no `finally`) leaves no server holding the GPUs; nothing elsewhere."""
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    """A TCP port free on this host now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of the log at `path` ("" where there is none)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def log_path(log_dir: str | None, task_id: str) -> tuple[Path, str | None]:
    """Where the server's log goes: `<log_dir>/<task_id>.log`, or a temporary directory (and why) where
    `log_dir` is unset or cannot be written on this node."""
    if log_dir:
        try:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            return Path(log_dir) / f"{task_id}.log", None
        except OSError as exc:
            why = f"server log not in {log_dir} ({exc.strerror or exc} on this node)"
    else:
        why = None
    return Path(tempfile.mkdtemp(prefix="moecluster-server-")) / f"{task_id}.log", why


@dataclass
class Server:
    """One server the task talks to: `base_url`, and the process where moecluster started it."""

    base_url: str
    log: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    command: str = ""

    @classmethod
    def external(cls, url: str) -> "Server":
        """A server already running at `url` (not started, not stopped by moecluster)."""
        return cls(base_url=url.rstrip("/"))

    @classmethod
    def start(cls, template: str, *, model: str, gpus: str, log: Path, startup_timeout_s: float,
              alive_check: Callable[[], None] | None = None) -> "Server":
        """Start `template` on a free port and wait until it is healthy; `ServerFailed` (the server
        stopped) where it exits or is not healthy within `startup_timeout_s`."""
        port = free_port()
        argv = render_command(template, port=port, model=model, gpus=gpus)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            out.write(f"$ {shlex.join(argv)}\n".encode())
            out.flush()
            try:
                process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True, preexec_fn=_die_with_parent)
            except OSError as exc:
                raise ServerFailed(f"server command {argv[0]!r} could not start: {exc.strerror or exc}") from None
        server = cls(base_url=f"http://127.0.0.1:{port}", log=log, process=process, command=shlex.join(argv))
        try:
            server.wait_healthy(startup_timeout_s)
        except BaseException:
            server.stop()
            raise
        return server

    def failure(self, cause: str) -> ServerFailed:
        """`ServerFailed` with `cause`, the log's path and its last lines."""
        if self.log is None:
            return ServerFailed(cause)
        tail = log_tail(self.log)
        return ServerFailed(f"{cause}; server log {self.log}, last lines:\n{tail}" if tail else
                            f"{cause}; server log {self.log} is empty")

    def check_alive(self) -> None:
        """`ServerFailed` where a server moecluster started has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise self.failure(f"server exited with code {self.process.returncode}")

    def wait_healthy(self, timeout_s: float) -> str:
        """Poll the health paths until one answers 200; the path that did. `ServerFailed` on exit or timeout."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        with httpx.Client(timeout=5.0) as client:
            while True:
                self.check_alive()
                for path in HEALTH_PATHS:
                    try:
                        response = client.get(self.base_url + path)
                    except httpx.HTTPError as exc:
                        last = f"{type(exc).__name__}"
                        break  # not listening yet: no use trying the other path now
                    if response.status_code == 200:
                        return path
                    last = f"GET {path}: HTTP {response.status_code}"
                if time.monotonic() >= deadline:
                    raise self.failure(f"server not healthy within {timeout_s:g} s (last: {last})")
                time.sleep(POLL_S)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM to the server's process group, SIGKILL after `grace_s`; nothing for an external server."""
        process = self.process
        if process is None or process.poll() is not None and not _group_alive(process.pid):
            return
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, STOP_GRACE_S)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and (process.poll() is None or _group_alive(process.pid)):
                time.sleep(0.05)
            if process.poll() is not None and not _group_alive(process.pid):
                break


def _group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` is left."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
