"""benchmarks/calibration.py: how often one run's intervals hold another run's figures, run as a
script on two stores written by the real store."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import moecluster_synthetic as syn

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "calibration.py"


def calibrate(runs: Path, *names: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *names, "--runs-dir", str(runs), "--out", str(runs / "c.md")],
                          capture_output=True, text=True, timeout=120, check=False)


def row(text: str, figure: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {figure} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_a_rerun_inside_and_outside_the_first_runs_intervals(tmp_path: Path) -> None:
    first = syn.preset_pair("small", 700.0, 500.0) + syn.preset_pair("large", 900.0, 800.0)
    syn.write_run(tmp_path, "a", first)
    syn.write_run(tmp_path, "same", syn.preset_pair("small", 700.0, 500.0) + syn.preset_pair("large", 900.0, 800.0))
    # energy per inference 30 % better on the MoE side only: its inferences/J and ratios move, rates do not
    syn.write_run(tmp_path, "moved", syn.preset_pair("small", 910.0, 500.0) + syn.preset_pair("large", 1170.0, 800.0))

    same = calibrate(tmp_path, "a", "same")
    assert same.returncode == 0, same.stderr
    assert row(same.stdout, "task inferences/J")[1:4] == ["4", "4", "4/4 (100 %)"]
    assert row(same.stdout, "MoE/dense inferences/J")[1:4] == ["2", "2", "2/2 (100 %)"]
    assert (tmp_path / "c.md").read_text().strip() == same.stdout.strip()

    moved = calibrate(tmp_path, "a", "moved")
    assert moved.returncode == 0, moved.stderr
    assert row(moved.stdout, "task inferences/J")[3] == "2/4 (50 %)"  # the dense tasks still agree
    assert row(moved.stdout, "task inferences/s")[3] == "4/4 (100 %)"
    assert row(moved.stdout, "MoE/dense inferences/J")[3:6] == ["0/2 (0 %)", "0/2 (0 %)", "0/2 (0 %)"]
    assert "half-widths away" in moved.stdout


def test_runs_on_two_gpus_pooled_hold_a_third_gpu_that_one_gpus_intervals_miss(tmp_path: Path) -> None:
    """Three GPUs whose offsets (±5 %) move every task's own figures alike, not the MoE/dense ratios: one
    GPU's window intervals miss the third GPU's task figures; A on two GPUs, pooled over them, holds them."""
    def on(node: str, scale: float) -> list:
        return (syn.preset_pair("small", 700.0 * scale, 500.0 * scale, node=node)
                + syn.preset_pair("large", 900.0 * scale, 800.0 * scale, node=node))
    for name, node, scale in (("a", "gpu-host-1", 1.0), ("b", "gpu-host-2", 1.1), ("c", "gpu-host-3", 1.05)):
        syn.write_run(tmp_path, name, on(node, scale))
    one = calibrate(tmp_path, "a", "c")
    assert one.returncode == 0, one.stderr
    assert row(one.stdout, "task inferences/J")[3] == "0/4 (0 %)"
    assert row(one.stdout, "MoE/dense inferences/J")[3] == "2/2 (100 %)"
    two = calibrate(tmp_path, "a", "b", "c")
    assert two.returncode == 0, two.stderr
    assert two.stdout.startswith("## a + b → c")
    assert row(two.stdout, "task inferences/J")[3] == "4/4 (100 %)"
    assert row(two.stdout, "MoE/dense inferences/J")[3] == "2/2 (100 %)"


def test_runs_with_no_task_in_common_are_refused(tmp_path: Path) -> None:
    syn.write_run(tmp_path, "a", syn.preset_pair("small", 700.0, 500.0))
    syn.write_run(tmp_path, "b", syn.preset_pair("large", 700.0, 500.0))
    done = calibrate(tmp_path, "a", "b")
    assert done.returncode == 1 and "measured no task in common" in done.stderr


def test_the_committed_calibration_is_what_the_script_says_of_the_committed_stores(tmp_path: Path) -> None:
    root = SCRIPT.parent / "results"
    for name, (a, b) in {"bf16_b128": ("seed-study-h100-bf16-b128", "seed-study-h100-bf16-b128-twins-align4"),
                         "bf16_b8192": ("seed-study-h100-bf16-b8192",
                                        "seed-study-h100-bf16-b8192-twins-align4"),
                         "h100_replicates": ("calibration-h100-a", "calibration-h100-b")}.items():
        done = subprocess.run([sys.executable, str(SCRIPT), a, b, "--runs-dir", str(root / "runs"),
                               "--out", str(tmp_path / f"{name}.md")], capture_output=True, text=True, timeout=300,
                              check=False)
        assert done.returncode == 0, done.stderr
        committed = next((root / "calibration").glob(f"{name}_*.md"))
        assert (tmp_path / f"{name}.md").read_text() == committed.read_text(), f"{committed} drifted"
