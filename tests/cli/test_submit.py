"""`moecluster submit`, `runs`, `status` through the CLI: bad input, dry run, end to end, resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from moecluster.cli import main
from moecluster.head.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
MOECLUSTER = str(Path(sys.executable).parent / "moecluster")


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MOECLUSTER, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    return int(info.value.code or 0), capsys.readouterr().err


GOOD = "name: t\nmodels: [{preset: small}]\ndevice: cpu\n"
BAD = {
    "unknown key": (GOOD + "top_kk: 2\n", "t.yaml:4: top_kk: unknown key"),
    "nested unknown key": ("name: t\nmodels:\n  - preset: small\n    topk: 2\n", "t.yaml:4: models[0].topk: unknown key"
                           " (did you mean 'top_k'?)"),
    "wrong type": (GOOD + "repeats: three\n", "t.yaml:4: repeats: expected an integer"),
    "impossible shape": ("name: t\nmodels:\n  - {preset: small, top_k: 9}\n", "t.yaml:3: models[0].top_k: top_k (9)"
                         " is larger than num_experts (8)"),
    "empty grid": (GOOD + "impl: []\n", "t.yaml:4: impl: empty list"),
    "not yaml": ("name: t\nmodels: [{preset: small}\n", "t.yaml:3: not valid YAML"),
    "infinite duration": (GOOD + "duration_s: .inf\n", "t.yaml:4: duration_s: must be a finite number, got inf"),
    "nan in a grid": (GOOD + "zipf_s: [1.0, .nan]\n", "t.yaml:4: zipf_s[1]: must be a finite number, got nan"),
    "model too big": ("name: t\nmodels: [{name: huge, num_experts: 8, top_k: 2, expert_hidden_dim: 100000000,"
                      " expert_num_layers: 3}]\n",
                      "task huge-grouped-fp32-b128-dense-total: 1.6e+17 parameters × 4 bytes (float32) need"),
    "alias bomb": ("".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
                   .join(["a: &a [x, x, x, x, x, x, x, x, x, x]\n", GOOD]),
                   "t.yaml: YAML aliases expand to more than 100,000 nodes"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_sweep_is_one_line_exit_2_and_leaves_nothing(case: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    text, expected = BAD[case]
    sweep = tmp_path / "t.yaml"
    sweep.write_text(text)
    runs = tmp_path / "runs"
    code, err = in_process(capsys, "submit", str(sweep), "--runs-dir", str(runs), "--no-agents")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("moecluster: error: ")
    assert expected in err.replace(str(tmp_path) + "/", "")
    assert not runs.exists()


@pytest.mark.parametrize("args, expected", [
    (["submit"], "give a SWEEP_FILE"),
    (["submit", "absent.yaml"], "absent.yaml: no such file"),
    (["submit", str(QUICKSTART), "--set", "repeats"], "expected KEY=VALUE"),
    (["submit", str(QUICKSTART), "--set", "repeats=0"], "--set: repeats: must be greater than 0"),
    (["submit", str(QUICKSTART), "--set", "duration_s=.inf"], "--set: duration_s: must be a finite number, got inf"),
    (["submit", str(QUICKSTART), "--set", "duration_s=.inf", "--dry-run"], "--set: duration_s: must be a finite"),
    (["submit", str(QUICKSTART), "--set", "seed=[0, 1, 2]", "--max-tasks", "17", "--dry-run"],
     "plans 54 tasks (3 impl × 3 seed × 2 tasks per pair × 3 replicates), more than --max-tasks 17"),
    (["submit", str(QUICKSTART), "--cpus-per-task", "nan"], "'--cpus-per-task': 'nan' is not a finite number"),
    (["submit", str(QUICKSTART), "--run-id", "a b"], "--run-id 'a b'"),
    (["submit", str(QUICKSTART), "--resume", "x"], "--resume RUN_ID takes the run's own sweep"),
    (["submit", "--resume", "nope"], "run 'nope' not found"),
    (["status", "nope"], "run 'nope' not found"),
])
def test_bad_arguments_exit_2(args: list[str], expected: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    code, err = in_process(capsys, *args, "--runs-dir", str(runs))
    assert code == 2 and expected in err and err.count("\n") == 1
    assert not runs.exists()


def test_dry_run_prints_the_task_table_and_starts_nothing(tmp_path: Path) -> None:
    proc = cli("submit", str(QUICKSTART), "--dry-run", "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    for text in ("small-naive-fp32-b128-r1", "dense", "match total", "2,687,737", "676,508", "9 pairs, 18 tasks",
                 "nothing started"):
        assert text in proc.stdout
    assert not (tmp_path / "runs").exists()
    as_json = json.loads(cli("submit", str(QUICKSTART), "--dry-run", "--json").stdout)
    assert len(as_json["tasks"]) == 18 and {t["kind"] for t in as_json["tasks"]} == {"dense", "moe"}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quickstart_end_to_end_through_the_console_script(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = cli("submit", str(QUICKSTART), "--runs-dir", str(runs), "--run-id", "qs", "--no-agents",
               "--set", "duration_s=1", "--num-cpus", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "18 ok, 0 failed" in proc.stderr and "energy unavailable (device cpu" in proc.stderr
    run_dir = runs / "qs"
    for name in ("sweep.yaml", "sweep.source.yaml", "environment.json", "results.sqlite"):
        assert (run_dir / name).is_file()
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["head"]["versions"]["torch"] and env["cluster"]["ray"] and env["cluster"]["nodes"]
    with RunStore(run_dir) as store:
        assert store.counts() == {"planned": 18, "ok": 18, "failed": 0, "missing": 0}
        assert {r.spec.run_id for r in store.results()} == {"qs"}
    listed = json.loads(cli("runs", "--runs-dir", str(runs), "--json").stdout)
    assert [(r["run"], r["state"], r["ok"]) for r in listed] == [("qs", "finished", 18)]
    status = json.loads(cli("status", "qs", "--runs-dir", str(runs), "--json").stdout)
    assert status["counts"]["ok"] == 18 and len(status["results"]) == 18
    again = cli("submit", "--resume", "qs", "--runs-dir", str(runs), "--no-agents")
    assert again.returncode == 0 and "nothing to do" in again.stdout
    # the first report a new user reads: intervals over 3 replicates, none "very wide or absent" (issue 26)
    report = cli("report", "qs", "--runs-dir", str(runs))
    assert report.returncode == 0, report.stderr[-3000:]
    assert "95 % CI covers: 3 replicates" in report.stdout and "very wide or absent" not in report.stdout


@pytest.fixture(scope="module")
def one_node_cluster() -> Iterator[tuple[Any, dict[str, str]]]:
    from moecluster_fakecluster import auth_env, fake_gpu_cluster

    with auth_env() as env, fake_gpu_cluster(("FAKE-A",), gpus=2, cpus=1) as cluster:
        yield cluster, env


RESUMABLE = """\
name: resumable
replicates: 1  # one process per pair: this test counts pairs and tasks
models: [{preset: small}]
impl: [naive, sorted, grouped]
seed: [0, 1]
batch_size: 64
duration_s: 0.5
warmup_s: 0.05
repeats: 1
device: cpu
meter: fake
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_killed_head_loses_nothing_and_resume_completes(one_node_cluster: tuple[Any, dict[str, str]],
                                                         tmp_path: Path) -> None:
    cluster, env = one_node_cluster
    sweep = tmp_path / "resumable.yaml"
    sweep.write_text(RESUMABLE)
    runs = tmp_path / "runs"
    common = ["--address", cluster.address, "--runs-dir", str(runs), "--no-agents", "--cpus-per-task", "0.5"]
    head = subprocess.Popen([MOECLUSTER, "submit", str(sweep), "--run-id", "r", *common],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    deadline = time.monotonic() + 150
    before: dict[str, float] = {}
    while time.monotonic() < deadline and len(before) < 2:
        assert head.poll() is None, head.stderr.read() if head.stderr else ""
        if (runs / "r" / "results.sqlite").exists():
            with RunStore(runs / "r") as store:
                before = {r.spec.task_id: r.finished_at for r in store.results() if r.status == "ok"}
        time.sleep(0.2)
    head.send_signal(signal.SIGKILL)
    head.wait(timeout=30)
    assert len(before) >= 2
    with RunStore(runs / "r") as store:
        assert store.counts()["missing"] > 0  # killed mid-sweep
    listed = json.loads(cli("runs", "--runs-dir", str(runs), "--json").stdout)
    assert listed[0]["state"] == "interrupted"

    resumed = cli("submit", "--resume", "r", *common, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    with RunStore(runs / "r") as store:
        assert store.counts() == {"planned": 12, "ok": 12, "failed": 0, "missing": 0}
        after = {r.spec.task_id: r.finished_at for r in store.results()}
    assert len(after) == 12
    assert all(after[t] == finished for t, finished in before.items())  # what was stored is kept as it was


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_ends_a_run_like_ctrl_c(one_node_cluster: tuple[Any, dict[str, str]], tmp_path: Path) -> None:
    """One line naming the signal and the resume command, exit 143 (128 + SIGTERM), the run
    `interrupted`, what was stored kept, and no crash dump from Ray."""
    cluster, env = one_node_cluster
    sweep = tmp_path / "resumable.yaml"
    sweep.write_text(RESUMABLE)
    runs = tmp_path / "runs"
    head = subprocess.Popen([MOECLUSTER, "submit", str(sweep), "--run-id", "t", "--address", cluster.address,
                             "--runs-dir", str(runs), "--no-agents", "--cpus-per-task", "0.5"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    deadline = time.monotonic() + 150
    stored = 0
    while time.monotonic() < deadline and stored < 1:
        assert head.poll() is None, head.stderr.read() if head.stderr else ""
        if (runs / "t" / "results.sqlite").exists():
            with RunStore(runs / "t") as store:
                stored = store.counts()["ok"]
        time.sleep(0.2)
    head.send_signal(signal.SIGTERM)
    _, err = head.communicate(timeout=60)
    assert head.returncode == 143, err[-3000:]
    last = [line for line in err.splitlines() if line.startswith("moecluster:")]
    assert last == ["moecluster: interrupted by SIGTERM; finish with: moecluster submit --resume t"], err[-3000:]
    assert "SIGTERM received" not in err and "Traceback" not in err, err[-3000:]
    listed = json.loads(cli("runs", "--runs-dir", str(runs), "--json").stdout)
    assert [(r["run"], r["state"]) for r in listed] == [("t", "interrupted")] and listed[0]["ok"] >= 1


def test_an_address_where_no_ray_answers_fails_in_seconds_naming_it(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    started = time.monotonic()
    code, err = in_process(capsys, "submit", str(QUICKSTART), "--address", f"127.0.0.1:{port}", "--no-agents",
                           "--runs-dir", str(tmp_path / "runs"))
    assert code == 2 and err.count("\n") == 1
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}: connection refused" in err
    assert time.monotonic() - started < 30 and not (tmp_path / "runs").exists()


def test_big_dry_run_prints_the_first_rows_and_a_summary(tmp_path: Path) -> None:
    seeds = ", ".join(str(i) for i in range(150))
    proc = cli("submit", str(QUICKSTART), "--dry-run", "--set", f"seed=[{seeds}]", "--set", "impl=grouped",
               "--set", "replicates=1", "--runs-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert "first 200 of 300 tasks shown; 50 more pairs not printed" in proc.stdout
    assert "150 pairs, 300 tasks" in proc.stdout and "seed149" not in proc.stdout
    assert not (tmp_path / "r").exists()
