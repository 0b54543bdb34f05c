"""Two `moecluster submit`s at once on one machine, each with its own local Ray instance, through
the console script: they never measure on the CPU at the same time, the later one is told of the
earlier one, and every result records whether it waited."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moecluster.node.device_lock import CPU, hold_devices
from moecluster.head.local_submits import default_dir
from moecluster.head.store import RunStore

MOECLUSTER = str(Path(sys.executable).parent / "moecluster")
SWEEP = """\
name: twin
replicates: 1  # one process per pair: this test counts pairs and tasks
models: [{preset: small}]
impl: [sorted]
batch_size: 64
duration_s: 0.5
warmup_s: 0.1
repeats: 1
device: cpu
"""


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_two_submits_at_once_take_turns_on_the_cpu_and_record_it(tmp_path: Path) -> None:
    sweep = tmp_path / "twin.yaml"
    sweep.write_text(SWEEP)
    runs = tmp_path / "runs"
    lock_dir = Path(os.environ["MOECLUSTER_LOCK_DIR"])  # the submits' tasks inherit it (tests/conftest.py)
    heads: dict[str, subprocess.Popen[str]] = {}
    # A third run holds the CPU until both submits run their sweeps, so both meet a busy device.
    with hold_devices([CPU], run_id="blocker", holder="test", lock_dir=lock_dir, wait_s=0):
        for run in ("a", "b"):
            heads[run] = subprocess.Popen(
                [MOECLUSTER, "submit", str(sweep), "--runs-dir", str(runs), "--run-id", run, "--no-agents",
                 "--num-cpus", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                env={**os.environ, "MOECLUSTER_DEVICE_WAIT_S": "240"})
        deadline = time.monotonic() + 180
        while not all((default_dir() / f"{h.pid}.json").exists() for h in heads.values()):
            assert time.monotonic() < deadline, "the submits did not start their sweeps"
            assert all(h.poll() is None for h in heads.values()), [h.stderr.read() for h in heads.values() if h.stderr]
            time.sleep(0.2)
        time.sleep(2.0)  # their first pairs are waiting for the CPU
    errs = {run: h.communicate(timeout=300)[1] for run, h in heads.items()}
    for run, h in heads.items():
        assert h.returncode == 0, errs[run][-3000:]
    assert sum("another moecluster submit runs on this machine: run" in e for e in errs.values()) >= 1
    spans: dict[str, list[tuple[float, float]]] = {}
    for run in heads:
        with RunStore(runs / run) as store:
            results = store.results()
        assert len(results) == 2 and all(r.status == "ok" for r in results)
        assert {r.device_access for r in results} <= {"exclusive", "waited"}
        assert any(r.device_access == "waited" and r.device_wait_s > 1.0 for r in results)
        pairs: dict[str, list[float]] = {}
        for r in results:
            pairs.setdefault(r.spec.pair_id, []).extend([r.started_at, r.finished_at])
        spans[run] = [(min(v), max(v)) for v in pairs.values()]
    overlaps = [(a, b) for a in spans["a"] for b in spans["b"] if a[0] < b[1] and b[0] < a[1]]
    assert not overlaps, f"pairs of both runs measured at once: {overlaps}"
    status = json.loads(subprocess.run([MOECLUSTER, "status", "a", "--runs-dir", str(runs), "--json"],
                                       capture_output=True, text=True, timeout=120).stdout)
    assert {r["device_access"] for r in status["results"]} <= {"exclusive", "waited"}
    assert "waited" in errs["a"] and "while another run used its device" in errs["a"]
