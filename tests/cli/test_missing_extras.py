"""An optional dependency missing where a command needs it: one line naming the extra, exit 1, nothing written."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import moecluster_synthetic as syn
from moecluster.cli import main


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    syn.write_run(tmp_path, "r1", syn.seed_001_sweep("sorted")[:2])
    return tmp_path


@pytest.mark.parametrize("args, module, extra", [
    (["--format", "csv", "parquet"], "pyarrow", "report"),
    (["--html", "HTML"], "matplotlib", "report"),
])
def test_report_names_the_extra_before_writing(args: list[str], module: str, extra: str, runs: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as on a node installed without the extra
    out_dir = runs / "out"
    args = [str(runs / a) if a == "HTML" else a for a in args]
    code, out, err = in_process(capsys, "report", "r1", "--runs-dir", str(runs), "--out", str(out_dir), *args)
    assert code == 1 and err.count("\n") == 1, err
    assert f"needs {module} (not installed): pip install 'moecluster[{extra}]'" in err
    assert not out_dir.exists() and not (runs / "HTML").exists() and out == ""


def test_report_tables_need_no_extra(runs: Path) -> None:
    # a fresh process, as on a node installed without the extra: pandas, imported there after the block,
    # never sees pyarrow (in this process an earlier test may have imported it, and pandas then keeps
    # strings in pyarrow arrays that need it later)
    code = ("import sys\n"
            "sys.modules.update(pyarrow=None, matplotlib=None)\n"
            "from moecluster.cli import main\n"
            "main(sys.argv[1:])\n")
    done = subprocess.run([sys.executable, "-c", code, "report", "r1", "--runs-dir", str(runs), "--format", "csv",
                           "json", "--out", str(runs / "out")], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (runs / "out" / "tasks.csv").is_file() and "MoE" in done.stdout


def test_dashboards_without_the_sdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    for name in [m for m in sys.modules if m.startswith(("grafana_foundation_sdk", "moecluster.report.dashboards"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "grafana_foundation_sdk", None)
    code, _, err = in_process(capsys, "dashboards", "export", str(tmp_path / "json"))
    assert code == 1 and err.count("\n") == 1
    assert "needs grafana_foundation_sdk (not installed): pip install 'moecluster[grafana]'" in err


def test_submit_dashboard_without_ray_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`--dashboard` on a node with plain ray: one line, before Ray starts or a run directory exists."""
    monkeypatch.setitem(sys.modules, "ray.dashboard.optional_deps", None)
    sweep = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"
    code, _, err = in_process(capsys, "submit", str(sweep), "--runs-dir", str(tmp_path / "runs"), "--dashboard",
                              "--no-agents")
    assert code == 1 and "moecluster[dashboard]" in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


TINY_LLM = ["bench", "--workload", "llm", "--preset", "tiny-mixtral", "--device", "cpu", "--batch-size", "2",
            "--prompt-len", "6", "--gen-tokens", "3", "--duration", "0.2", "--warmup", "0", "--meter", "fake"]


@pytest.mark.parametrize("extra_args", [[], ["--dry-run"], ["--json"]])
def test_llm_bench_without_transformers_is_one_line_before_anything_runs(
        extra_args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The whole hint (`[llm]` included) on one line, and no table: a dry run that passes means the run can start."""
    monkeypatch.setitem(sys.modules, "transformers", None)  # as after the README's set-up, which skips [llm]
    code, out, err = in_process(capsys, *TINY_LLM, *extra_args)
    assert code == 1 and err.count("\n") == 1, err
    assert "needs transformers (not installed): pip install 'moecluster[llm]'" in err
    assert out == ""


def test_a_task_failing_for_the_extra_shows_the_whole_hint(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Where the check passes but the task's own import fails (a node without the extra), the
    error is printed in full: no table cell cuts it and no markup eats `[llm]`."""
    from moecluster.head.bench import llm

    monkeypatch.setattr(llm, "require_workload", lambda workload, feature: None)  # the head has it...
    monkeypatch.setitem(sys.modules, "transformers", None)  # ...the process running the task does not
    code, out, err = in_process(capsys, *TINY_LLM)
    assert code == 1
    failed = [line for line in err.splitlines() if " failed: " in line]
    assert len(failed) == 2 and all(line.endswith("pip install 'moecluster[llm]' (the 'llm' extra: transformers)")
                                    for line in failed), err
    assert "failed (below)" in out


@pytest.mark.parametrize("extra_args", [["--dry-run"], ["--no-agents", "--num-cpus", "1"]])
def test_llm_submit_without_transformers_is_one_line_before_ray(extra_args: list[str], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """An LLM sweep run on this machine without the extra: one line naming it, no run directory, no Ray."""
    import ray

    monkeypatch.setitem(sys.modules, "transformers", None)
    sweep = Path(__file__).resolve().parents[2] / "benchmarks" / "sweeps" / "llm-h100.yaml"
    code, out, err = in_process(capsys, "submit", str(sweep), "--runs-dir", str(tmp_path / "runs"), *extra_args)
    assert code == 1 and err.count("\n") == 1, err
    assert "workload llm (run on this machine) needs transformers" in err
    assert "pip install 'moecluster[llm]'" in err and out == ""
    assert not ray.is_initialized() and not (tmp_path / "runs").exists()


def test_a_cluster_head_without_transformers_plans_an_llm_sweep_with_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """With --address the nodes run the tasks: a head without the extra still plans (a dry run here, so
    nothing connects) and warns in one line that the nodes need it."""
    monkeypatch.setitem(sys.modules, "transformers", None)
    sweep = Path(__file__).resolve().parents[2] / "benchmarks" / "sweeps" / "llm-h100.yaml"
    code, out, err = in_process(capsys, "submit", str(sweep), "--runs-dir", str(tmp_path / "runs"), "--dry-run",
                                "--address", "127.0.0.1:1")
    first = err.splitlines()[0]
    assert code == 0 and first.startswith("moecluster: warning: not installed on this machine:"), err
    assert "(on every node that runs its tasks) needs transformers" in first and "moecluster[llm]" in first
    assert "decode" in out
