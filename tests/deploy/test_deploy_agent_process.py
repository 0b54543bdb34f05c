"""`moecluster agent` as a process of its own, the way the systemd unit runs it."""
from __future__ import annotations

import re
import shlex
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from deploy_helpers import moecluster_cmd

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "moecluster-agent.service"
pytestmark = pytest.mark.timeout(120)


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def test_sigterm_stops_the_agent_cleanly(agent_process) -> None:
    agent = agent_process("--device", "fake", "--fake-gpus", "2", "--host", "127.0.0.1", "--port", "0",
                          "--node", "n1")
    body = _scrape(agent.wait_ready())
    assert 'moecluster_gpu_up{gpu="1",name="Fake GPU",node="n1"' in body
    assert agent.stop() == 0
    assert "received SIGTERM, stopping" in agent.log() and agent.log().rstrip().endswith("stopped")


def test_missing_nvml_serves_agent_health_and_says_why(agent_process) -> None:
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("NVML works on this machine")
    except Exception:  # noqa: BLE001 - any NVML failure is the case under test
        pass
    agent = agent_process("--device", "nvml", "--host", "127.0.0.1", "--port", "0", "--node", "n1")
    body = _scrape(agent.wait_ready())
    assert 'moecluster_agent_devices_up{device="none",node="n1"} 0.0' in body
    assert re.search(r"no GPU readings on this node: NVML could not start: .+; serving the agent's own metrics",
                     agent.log())
    assert agent.proc.poll() is None  # still serving: no crash loop
    assert agent.stop() == 0


def test_taken_port_is_one_line_and_exit_1() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run([*moecluster_cmd(), "agent", "--device", "fake", "--host", "127.0.0.1",
                              "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == \
        f"moecluster: error: agent cannot serve on 127.0.0.1:{port}: Address already in use"


@pytest.mark.parametrize("args, message", [
    (["--fake-gpus", "3"], "--fake-gpus needs --device fake"),
    (["--interval", "0"], "interval 0.0 s is outside"),
    (["--port", "-1"], "port -1 is outside"),
    (["--all-interfaces", "--host", "10.0.0.5"], "--all-interfaces binds 0.0.0.0: give it or --host 10.0.0.5"),
    (["--device", "none", "--state-dir", "{shared}"], "task-label state directory {shared} is writable by its group"),
])
def test_bad_options_are_one_line_and_exit_2(args: list[str], message: str, capsys, tmp_path: Path) -> None:
    from moecluster.cli import main

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(SystemExit) as exc:
        main(["agent", *(a.format(shared=shared) for a in args)])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1 and message.format(shared=shared) in err


def _unit_values(key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines() if line.startswith(f"{key}=")]


def test_systemd_unit_runs_the_agent_command(agent_process) -> None:
    (exec_start,) = _unit_values("ExecStart")
    argv = shlex.split(exec_start)
    assert Path(argv[0]).name == "moecluster" and argv[1] == "agent" and argv[2] == "$MOECLUSTER_AGENT_ARGS"
    env = dict(shlex.split(v)[0].split("=", 1) for v in _unit_values("Environment"))
    unit_args = shlex.split(env["MOECLUSTER_AGENT_ARGS"])
    # The unit's own arguments, then test overrides (later options win in click).
    agent = agent_process(*unit_args, "--device", "none", "--host", "127.0.0.1", "--port", "0")
    assert "moecluster_agent_info" in _scrape(agent.wait_ready())
    assert agent.stop() == 0
    assert _unit_values("KillSignal") == ["SIGTERM"] and _unit_values("Restart") == ["on-failure"]
