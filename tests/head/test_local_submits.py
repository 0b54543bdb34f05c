"""A submit learns of the other submits running on its machine (real processes, real flock locks)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from moecluster.head.local_submits import concurrency_warning, registered_submit

OTHER = """
import sys, time
from pathlib import Path
from moecluster.head.local_submits import registered_submit
with registered_submit("sweep-a", None, directory=Path(sys.argv[1])):
    print("registered", flush=True)
    time.sleep(60)
"""


def test_a_second_submit_is_told_of_the_first_and_a_dead_one_is_forgotten(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", OTHER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "registered"
        said: list[str] = []
        with registered_submit("sweep-b", "10.0.0.1:6379", say=said.append, directory=tmp_path) as others:
            assert [(o.pid, o.run_id, o.address) for o in others] == [(other.pid, "sweep-a", "local")]
            assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted([f"{other.pid}.json",
                                                                              f"{os.getpid()}.json"])
        (line,) = said
        assert line.startswith(f"another moecluster submit runs on this machine: run sweep-a (pid {other.pid},"
                               " its own local Ray instance, since ")
        assert "a pair waits while the other run measures on its device (up to 300 s" in line and "\n" not in line
        assert not (tmp_path / f"{os.getpid()}.json").exists()  # gone with its block
    finally:
        other.kill()
        other.wait(10)
    said.clear()
    with registered_submit("sweep-c", None, say=said.append, directory=tmp_path) as others:
        assert others == [] and said == []  # the killed submit's file held no lock: removed, not reported
    assert not list(tmp_path.glob("*.json"))


def test_an_unusable_registry_registers_nothing_and_runs_on(tmp_path: Path) -> None:
    shared = tmp_path / "submits"
    shared.mkdir()
    shared.chmod(0o777)
    with registered_submit("r", None, directory=shared) as others:
        assert others == []
    assert not list(shared.iterdir())


def test_no_other_submit_no_warning() -> None:
    assert concurrency_warning([]) is None
