"""The server lifecycle with real processes: a command that never answers and one that exits at once are
failures naming the cause and the log's last lines, within the bound; a stopped server's whole process group
is gone; a log directory that cannot be written falls back to a temporary one, saying why."""
from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import pytest

from moecluster.workloads.serve.server import Server, ServerFailed, free_port, log_path

PY = shlex.quote(sys.executable)


def test_a_server_that_never_becomes_healthy_fails_within_its_bound_with_its_log(tmp_path: Path) -> None:
    script = "import sys, time; print('loading', 'weights...', flush=True); time.sleep(60)"  # printed: one space
    start = time.monotonic()
    with pytest.raises(ServerFailed) as info:
        Server.start(f"{PY} -c {shlex.quote(script)} {{port}}", model="m", gpus="", log=tmp_path / "s.log",
                     startup_timeout_s=1.5)
    assert time.monotonic() - start < 15  # the bound, the stop and no more
    text = str(info.value)
    assert "server not healthy within 1.5 s" in text and "loading weights..." in text and str(tmp_path) in text


def test_a_server_that_exits_names_its_code_and_last_lines(tmp_path: Path) -> None:
    script = "import sys; print('error:', 'unknown flag', flush=True); sys.exit(3)"
    with pytest.raises(ServerFailed, match=r"(?s)server exited with code 3.*\nerror: unknown flag$"):
        Server.start(f"{PY} -c {shlex.quote(script)} {{port}}", model="m", gpus="", log=tmp_path / "s.log",
                     startup_timeout_s=30)


def test_a_command_that_cannot_start_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(ServerFailed, match="could not start"):
        Server.start("/no/such/server --port {port}", model="m", gpus="", log=tmp_path / "s.log",
                     startup_timeout_s=5)


def test_stop_takes_the_whole_process_group_down_even_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    # a healthy HTTP server (python's own) whose child ignores SIGTERM: SIGKILL must follow
    script = ("import signal, subprocess, sys, time\n"
              "subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM,"
              " signal.SIG_IGN); time.sleep(600)'])\n"
              "import http.server, socketserver\n"
              "class H(http.server.BaseHTTPRequestHandler):\n"
              "    def do_GET(self):\n"
              "        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')\n"
              "socketserver.TCPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n")
    server = Server.start(f"{PY} -c {shlex.quote(script)} {{port}}", model="m", gpus="", log=tmp_path / "s.log",
                          startup_timeout_s=30)
    assert server.process is not None
    pgid = server.process.pid
    server.check_alive()
    start = time.monotonic()
    server.stop(grace_s=1.0)
    assert 1.0 <= time.monotonic() - start < 12  # the child outlived SIGTERM's grace: SIGKILL took it
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def test_logs_go_to_the_run_directory_or_say_why_not(tmp_path: Path) -> None:
    path, why = log_path(str(tmp_path / "servers"), "t1")
    assert path == tmp_path / "servers" / "t1.log" and why is None
    blocker = tmp_path / "file"
    blocker.write_text("")
    path, why = log_path(str(blocker / "servers"), "t1")
    assert path.name == "t1.log" and path.parent.is_dir() and why is not None and "server log not in" in why
    assert 1024 <= free_port() <= 65535


HTTP_SERVER = ("import http.server, socketserver, sys\n"
               "class H(http.server.BaseHTTPRequestHandler):\n"
               "    def do_GET(self):\n"
               "        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')\n"
               "socketserver.TCPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n")


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_server_does_not_outlive_a_task_process_killed_outright(tmp_path: Path) -> None:
    import signal
    import subprocess

    task = ("import sys, time\n"
            "from pathlib import Path\n"
            "from moecluster.workloads.serve.server import Server\n"
            f"s = Server.start({f'{sys.executable} -c {shlex.quote(HTTP_SERVER)} {{port}}'!r}, model='m', gpus='',"
            f" log=Path({str(tmp_path / 's.log')!r}), startup_timeout_s=30)\n"
            "print(s.process.pid, flush=True)\n"
            "time.sleep(600)\n")
    worker = subprocess.Popen([sys.executable, "-c", task], stdout=subprocess.PIPE, text=True)
    assert worker.stdout is not None
    server_pid = int(worker.stdout.readline())
    os.kill(worker.pid, signal.SIGKILL)  # as Ray kills a worker: no `finally` runs
    worker.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(server_pid, signal.SIGKILL)
    pytest.fail("the server outlived the task's process")
