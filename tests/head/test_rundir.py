"""Run directories without Ray: run ids, one owner at a time (the lock), modes, the runs directory
checked before anything starts, where `runs`/`status` look, and read-only commands that leave
no file behind."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import moecluster_synthetic as syn
from moecluster.head import rundir
from moecluster.cli import main
from moecluster.head.run import plan_new, plan_resume, run_state
from moecluster.head.run.plan import write_new_run
from moecluster.head.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


QUICK = {"impl": "sorted", "duration_s": 0.2, "warmup_s": 0.05, "repeats": 1, "replicates": 1}  # one pair, short


def make_run(root: Path, run_id: str, state: str = "interrupted") -> Path:
    """A run directory as `submit` makes it (sweep, plan) of one quick pair, with nothing run,
    recorded as `state`."""
    run = plan_new(QUICKSTART, QUICK, root, run_id, max_tasks=100)
    run_dir, _, lock = rundir.create_run_dir(root, run_id, explicit=True)
    with lock:
        write_new_run(run_dir, run)
        with RunStore(run_dir) as store:
            store.set_meta(state=state, host=socket.gethostname(), pid=os.getpid(), sweep="quickstart")
    return run_dir


HOLD = ("import sys, time; from pathlib import Path; from moecluster.head import rundir;"
        " lock = rundir.lock_run(Path(sys.argv[1]), 'x'); print('held', flush=True); time.sleep(120)")


@contextlib.contextmanager
def held_by_another_process(run_dir: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


# -- run ids ---------------------------------------------------------------------------------
@pytest.mark.parametrize("run_id", ["okid\n", "ok\nid", "ok\tid", "a" * 129, "ok\x00", "ok\r"])
def test_run_ids_with_control_characters_or_too_long_are_one_line_exit_2(run_id: str, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    code, _, err = in_process(capsys, "submit", str(QUICKSTART), "--run-id", run_id, "--runs-dir", str(runs),
                              "--no-agents")
    assert code == 2 and err.count("\n") == 1 and f"--run-id {run_id!r}" in err
    assert not runs.exists()
    for command in (["status"], ["submit", "--resume"], ["report"]):
        code, _, err = in_process(capsys, *command, run_id, "--runs-dir", str(runs))
        assert code == 2 and err.count("\n") == 1 and "not a run id" in err


# -- one owner at a time -----------------------------------------------------------------------
def test_a_held_run_is_refused_naming_its_holder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = make_run(tmp_path / "runs", "r")
    with held_by_another_process(run_dir) as holder:
        with pytest.raises(rundir.RunBusy) as info:
            rundir.lock_run(run_dir, "r", wait_s=0.2)
        assert info.value.holder.pid == holder.pid and info.value.holder.host == socket.gethostname()
        with RunStore(run_dir, read_only=True) as store:
            assert run_state(store.meta(), run_dir) == "running"
        code, _, err = in_process(capsys, "submit", "--resume", "r", "--runs-dir", str(tmp_path / "runs"),
                                  "--no-agents")
        assert code == 2 and err.count("\n") == 1
        assert f"run r is in use by pid {holder.pid} on {socket.gethostname()} since " in err
        listed = json.loads(in_process(capsys, "runs", "--runs-dir", str(tmp_path / "runs"), "--json")[1])
        assert [row["state"] for row in listed] == ["running"]
    with RunStore(run_dir) as store:
        store.set_meta(state="running")  # its head died without a word
    with RunStore(run_dir, read_only=True) as store:
        assert run_state(store.meta(), run_dir) == "interrupted"  # the lock is free: no head holds it
    with rundir.lock_run(run_dir, "r", wait_s=0.2):
        pass


def test_a_new_run_is_held_before_its_store_exists(tmp_path: Path) -> None:
    """A `--resume X` racing a fresh `submit --run-id X` finds either no run or a held one."""
    root = tmp_path / "runs"
    run = plan_new(QUICKSTART, QUICK, root, "x", max_tasks=100)
    run_dir, _, lock = rundir.create_run_dir(root, "x", explicit=True)
    with lock:
        with pytest.raises(rundir.InputError, match="run 'x' not found"):
            plan_resume(root, "x")
        write_new_run(run_dir, run)
        with pytest.raises(rundir.RunBusy, match=f"run x is in use by pid {os.getpid()}"):
            plan_resume(root, "x")
    assert plan_resume(root, "x").tasks == 2


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_resumes_a_second_apart_only_one_runs(tmp_path: Path) -> None:
    """The second of two `--resume`s started together is refused in one line naming the first,
    before it starts Ray; the first runs the missing pair once."""
    root = tmp_path / "runs"
    make_run(root, "r")
    moecluster = str(Path(sys.executable).parent / "moecluster")
    args = [moecluster, "submit", "--resume", "r", "--runs-dir", str(root), "--no-agents", "--num-cpus", "1"]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while rundir.lock_holder(root / "r") is None:
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    second = subprocess.run(args, capture_output=True, text=True, timeout=120)
    _, first_err = first.communicate(timeout=240)
    assert second.returncode == 2, second.stderr
    assert second.stderr.count("\n") == 1 and f"run r is in use by pid {first.pid}" in second.stderr
    assert first.returncode == 0, first_err[-3000:]
    with RunStore(root / "r", read_only=True) as store:
        assert store.counts() == {"planned": 2, "ok": 2, "failed": 0, "missing": 0}
        assert [(a.pair_id, a.attempt) for a in store.pair_attempts()] == [(store.planned()[0][0].pair_id, 1)]
        assert set(store.attempts().values()) == {1}


# -- modes -----------------------------------------------------------------------------------
def test_run_directories_and_their_files_are_the_users_alone(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "runs", "m")
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    with RunStore(run_dir) as store:  # a writer: the -wal and -shm exist while it is open
        store.set_meta(state="running")
        names = sorted(p.name for p in run_dir.iterdir())
        assert {"results.sqlite-wal", "results.sqlite-shm"} <= set(names)
        for p in run_dir.iterdir():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
    assert {"sweep.yaml", "sweep.source.yaml", "results.sqlite", ".lock"} <= set(names)


# -- the runs directory, checked before anything starts ------------------------------------------
def test_a_runs_directory_that_is_a_file_or_read_only_is_one_line_before_anything_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "runs"
    a_file.write_text("not a directory")
    started = time.monotonic()
    monkeypatch.setenv(rundir.ENV_VAR, str(a_file))  # click checks --runs-dir itself, not the variable
    code, _, err = in_process(capsys, "submit", str(QUICKSTART), "--no-agents")
    assert code == 2 and err.count("\n") == 1
    assert f"runs directory {a_file}: not a directory" in err
    monkeypatch.delenv(rundir.ENV_VAR)
    code, _, err = in_process(capsys, "submit", str(QUICKSTART), "--runs-dir", str(a_file / "sub"), "--no-agents")
    assert code == 2 and err.count("\n") == 1 and f"{a_file} is not a directory" in err
    with read_only_dir(tmp_path / "ro") as ro:
        code, _, err = in_process(capsys, "submit", str(QUICKSTART), "--runs-dir", str(ro / "runs"), "--no-agents")
        assert code == 2 and err.count("\n") == 1 and f"runs directory {ro / 'runs'}: {ro} is " in err
        assert "read-only" in err or "not writable" in err
    assert time.monotonic() - started < 60  # no Ray instance was started for any of them


@contextlib.contextmanager
def read_only_dir(path: Path) -> Iterator[Path]:
    """`path`, made read-only: a read-only bind mount for root (whom modes do not stop), else 0555."""
    path.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    if subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True, capture_output=True)
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True, capture_output=True)  # a file still open


# -- where runs are looked for ------------------------------------------------------------------
def test_no_runs_names_the_absolute_path_searched_and_how_to_choose_another(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(rundir.ENV_VAR, raising=False)
    code, out, _ = in_process(capsys, "runs")
    assert code == 0
    assert out.strip() == f"no runs under {tmp_path / 'runs'}; choose the runs directory with --runs-dir or" \
                          f" ${rundir.ENV_VAR}"
    for command in ("status", "report"):
        code, _, err = in_process(capsys, command, "r1")
        assert code == 2 and err.count("\n") == 1
        assert f"run 'r1' not found (no runs under {tmp_path / 'runs'}; choose the runs directory with" \
               f" --runs-dir or ${rundir.ENV_VAR})" in err
    make_run(tmp_path / "runs", "known")
    code, _, err = in_process(capsys, "status", "r1")
    assert code == 2 and f"(known under {tmp_path / 'runs'}: known)" in err


# -- read-only commands leave nothing behind ---------------------------------------------------
def readers(capsys: pytest.CaptureFixture[str], root: Path, run_id: str) -> dict[str, tuple[int, str]]:
    out = {}
    for name, args in (("runs", ["runs", "--json"]), ("status", ["status", run_id, "--json"]),
                       ("report", ["report", run_id, "-q"])):
        code, stdout, err = in_process(capsys, *args, "--runs-dir", str(root))
        out[name] = (code, stdout + err)
    return out


def listing(directory: Path) -> list[tuple[str, int]]:
    return sorted((p.name, p.stat().st_size) for p in directory.iterdir())


@pytest.mark.parametrize("copy", ["in place", "read-only copy"])
def test_runs_status_report_leave_no_file_beside_a_store(copy: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "runs"
    results = syn.annotated(syn.demo_results())
    run_dir = syn.write_run(root, "demo", results)
    with RunStore(run_dir) as store:
        store.set_meta(state="finished", sweep="demo")
    before = listing(run_dir)
    assert [n for n, _ in before] == ["results.sqlite"]
    with (read_only_dir(root) if copy == "read-only copy" else contextlib.nullcontext(root)):
        seen = readers(capsys, root, "demo")
    assert listing(run_dir) == before
    assert all(code == 0 for code, _ in seen.values()), seen
    ok = sum(r.status == "ok" for r in results)
    assert json.loads(seen["runs"][1])[0]["ok"] == ok
    assert json.loads(seen["status"][1])["counts"]["ok"] == ok


def test_a_store_being_written_is_read_as_committed_and_left_as_it_is(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "runs"
    results = syn.annotated(syn.demo_results())
    run_dir = syn.write_run(root, "live", results[:-1])
    with RunStore(run_dir) as writer:  # a head at work: its -wal and -shm are there
        writer.set_meta(state="running", sweep="demo")
        writer.add(results[-1])
        before = listing(run_dir)
        seen = readers(capsys, root, "live")
        assert listing(run_dir) == before
        assert len(json.loads(seen["status"][1])["results"]) == len(results)
        assert seen["report"][0] == 0
        # A head killed with its -wal not yet folded in, copied without its -shm: read from a private copy.
        crashed = root / "crashed"
        crashed.mkdir()
        for name in ("results.sqlite", "results.sqlite-wal"):
            shutil.copyfile(run_dir / name, crashed / name)
    copied = listing(crashed)
    with read_only_dir(root):
        seen = readers(capsys, root, "crashed")
    assert listing(crashed) == copied
    assert len(json.loads(seen["status"][1])["results"]) == len(results)
    alone = tmp_path / "alone.sqlite"  # the store without its -wal lacks the last result: it was read from the -wal
    shutil.copyfile(crashed / "results.sqlite", alone)
    with contextlib.closing(sqlite3.connect(f"{alone.as_uri()}?immutable=1", uri=True)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM results").fetchone() == (len(results) - 1,)
