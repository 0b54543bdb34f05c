"""benchmarks/ep_graph_capture.py in its CPU quick mode: a real subprocess, its JSON checked."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_cpu_quick_mode_checks_both_forms_and_times_them(tmp_path: Path) -> None:
    out = tmp_path / "ep.json"
    argv = [sys.executable, str(ROOT / "benchmarks" / "ep_graph_capture.py"), "--device", "cpu", "--quick",
            "--reps", "2", "--repeats", "2", "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["ok"] is True and result["backend"] == "gloo" and result["dropped_copies"] == 0
    assert result["static_vs_hostsync_rel_err"] <= result["tolerance"]
    assert set(result["ms_per_step"]) == {"ep-hostsync eager", "ep-static eager"}
    assert all(len(v) == 2 and all(t > 0 for t in v) for v in result["ms_per_step"].values())
    assert result["graph"].startswith("not captured")
