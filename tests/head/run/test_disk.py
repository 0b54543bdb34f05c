"""A full disk, for real: a small tmpfs filled to the last byte (ENOSPC), under the store, the run
directory being made, and a run under way. Nothing finished is lost, no half-made run directory is
left, the run reads `interrupted`, and `--resume` stores what was kept and runs only the rest.

Mounting needs root; elsewhere these tests are skipped."""
from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from moecluster.spec.records import TaskResult, TaskSpec, Window
from moecluster.head import rundir
from moecluster.cli import main
from moecluster.head.run import RunStopped, plan_new, plan_resume
from moecluster.head.run.execute import _make_run_dir
from moecluster.head.store import RunStore, pending_dirs, pending_results

ROOT = Path(__file__).resolve().parents[3]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
MOECLUSTER = str(Path(sys.executable).parent / "moecluster")


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                                            str(path)], capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True, capture_output=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", "4m") as path:
        yield path


def fill(disk: Path) -> Path:
    """Fill `disk` to the last byte; the file doing it (remove it to free the disk)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for block in (1 << 16, 1 << 12, 1 << 9, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * block)
    finally:
        os.close(fd)
    assert rundir.free_bytes(disk) == 0
    return filler


def result(task_id: str, finished_at: float) -> TaskResult:
    spec = TaskSpec(task_id=task_id, pair_id="p1", kind="moe", impl="sorted", model={"hidden_dim": 8, "num_layers": 1})
    return TaskResult(spec=spec, status="ok", windows=(Window(inferences=10, duration_s=1.0, energy_j=5.0),),
                      energy_source="fake-power-model", finished_at=finished_at)


@pytest.fixture
def clean_spill(disk: Path) -> Iterator[None]:
    yield
    for directory in pending_dirs(disk / "run"):
        for path in directory.glob("*.json"):
            path.unlink()


def test_a_result_the_full_disk_refuses_is_kept_and_stored_later(disk: Path, clean_spill: None) -> None:
    run_dir = disk / "run"
    run_dir.mkdir()
    with RunStore(run_dir) as store:
        assert store.add(result("before", 1.0))
        filler = fill(disk)
        late = result("late", 2.0)
        assert not store.add(late, attempts=2)  # not written: kept
        assert store.write_error is not None and "database or disk is full" in store.write_error
        assert str(run_dir / "results.sqlite") in store.write_error
        (kept,) = store.kept
        assert kept.parent == pending_dirs(run_dir)[1]  # the run directory's disk is full: the other place
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and store.unkept == []
    assert [(r.spec.task_id, r, n) for _, r, n in pending_results(run_dir)] == [("late", late, 2)]
    filler.unlink()
    with RunStore(run_dir) as store:
        assert [r.spec.task_id for r in store.adopt_pending()] == ["late"]
        assert store.results() == [result("before", 1.0), late] and store.attempts() == {"before": 1, "late": 2}
    assert pending_results(run_dir) == [] and not kept.exists()


def test_a_full_disk_at_start_is_refused_before_ray_and_leaves_nothing(disk: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    fill(disk)
    with pytest.raises(SystemExit) as info:
        main(["submit", str(QUICKSTART), "--runs-dir", str(disk / "runs"), "--no-agents"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert f"runs directory {disk / 'runs'}: the filesystem at {disk} (0 bytes free) is full" in err
    assert not (disk / "runs").exists()


def test_a_disk_that_fills_while_the_run_is_made_leaves_no_half_made_run(disk: Path) -> None:
    run = plan_new(QUICKSTART, {}, disk / "runs", "half", max_tasks=100)
    (disk / "runs").mkdir()
    fill(disk)
    with pytest.raises(RunStopped) as info, contextlib.ExitStack() as held:
        _make_run_dir(run, held)
    message = str(info.value)
    assert "\n" not in message and "No space left on device" in message and f"filesystem at {disk}" in message
    assert message.endswith("nothing was run and no run directory is left")
    assert list((disk / "runs").iterdir()) == []


SWEEP = """\
name: disk
replicates: 1  # one process per pair: this test counts pairs and tasks
models: [{preset: small}]
impl: [naive, sorted, grouped]
batch_size: 64
duration_s: 0.5
warmup_s: 0.05
repeats: 1
device: cpu
meter: none
"""


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_disk_that_fills_mid_run_stops_it_cleanly_and_resume_finishes_it(tmp_path: Path) -> None:
    sweep = tmp_path / "disk.yaml"
    sweep.write_text(SWEEP)
    with tmpfs(tmp_path / "disk", "8m") as disk:
        runs = disk / "runs"
        common = ["--runs-dir", str(runs), "--no-agents", "--num-cpus", "1"]
        head = subprocess.Popen([MOECLUSTER, "submit", str(sweep), "--run-id", "d", *common],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        before: dict[str, float] = {}
        deadline = time.monotonic() + 200
        while not before:
            assert head.poll() is None and time.monotonic() < deadline, head.communicate()
            if (runs / "d" / "results.sqlite").exists():
                with RunStore(runs / "d", read_only=True) as store:
                    before = {r.spec.task_id: r.finished_at for r in store.results()}
            time.sleep(0.05)
        filler = fill(disk)
        _, err = head.communicate(timeout=200)
        assert head.returncode == 74, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert last.startswith("moecluster: error: run d stopped: ") and "Traceback" not in err, err[-3000:]
        assert f"on the filesystem at {disk} (0 bytes free)" in last and "free space, then: moecluster submit" \
            " --resume d" in last
        assert "marked interrupted" in last or "could not be marked interrupted" in last
        kept = {r.spec.task_id: r.finished_at for _, r, _ in pending_results(runs / "d")}
        assert kept == {} or "result(s) it could not store are kept in" in last
        listed = subprocess.run([MOECLUSTER, "runs", "--runs-dir", str(runs), "--json"], capture_output=True,
                                text=True, timeout=120)
        assert [r["state"] for r in json.loads(listed.stdout)] == ["interrupted"]
        status = subprocess.run([MOECLUSTER, "status", "d", "--runs-dir", str(runs)], capture_output=True, text=True,
                                timeout=120, env={**os.environ, "COLUMNS": "400"})
        assert status.returncode == 0 and ": interrupted;" in status.stdout
        assert not kept or f"{len(kept)} result(s) its head could not store are kept in" in status.stdout

        filler.unlink()
        resumed_at = time.time()
        resumed = subprocess.run([MOECLUSTER, "submit", "--resume", "d", *common], capture_output=True, text=True,
                                 timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        with RunStore(runs / "d", read_only=True) as store:
            assert store.counts() == {"planned": 6, "ok": 6, "failed": 0, "missing": 0}
            after = {r.spec.task_id: r.finished_at for r in store.results()}
            rerun = {a.pair_id for a in store.pair_attempts() if a.submitted_at >= resumed_at}
            pair_of = {r.spec.task_id: r.spec.pair_id for r in store.results()}
        assert all(after[t] == at for t, at in {**before, **kept}.items())  # stored and kept: as they were
        assert not rerun & {pair_of[t] for t in [*before, *kept]}  # no pair that finished ran again
        assert pending_results(runs / "d") == []
        assert stat.S_IMODE((runs / "d").stat().st_mode) == 0o700
        for name in ("sweep.yaml", "sweep.source.yaml", "environment.json", "results.sqlite", ".lock"):
            assert stat.S_IMODE((runs / "d" / name).stat().st_mode) == 0o600, name
        assert plan_resume(runs, "d").pairs == ()
