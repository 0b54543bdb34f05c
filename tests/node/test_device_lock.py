"""Device locks between runs on one node: real flock locks, held by threads and by other processes."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from moecluster.node.device_lock import (
    CPU, DeviceBusy, hold_devices, run_holding_devices, task_devices, wait_limit_s)
from moecluster.spec.records import TaskResult, TaskSpec

GPU = "GPU-aaaaaaaa-0000-0000-0000-000000000000"
HOLD = """
import sys, time
from pathlib import Path
from moecluster.node.device_lock import hold_devices
with hold_devices(sys.argv[2].split(","), run_id=sys.argv[3], holder="pair p9", lock_dir=Path(sys.argv[1]), wait_s=0):
    print("held", flush=True)
    time.sleep(float(sys.argv[4]))
print("released", flush=True)
"""


def _holder(lock_dir: Path, devices: str, run: str, hold_s: float) -> subprocess.Popen[str]:
    """Another process (another run's task) holding `devices` for `hold_s`; returns once it holds them."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock_dir), devices, run, str(hold_s)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _spec(run: str = "r2", device: str = "cpu") -> TaskSpec:
    return TaskSpec(task_id=f"{run}-t1", pair_id="p1", kind="moe", impl="sorted", model={}, run_id=run, device=device)


def test_a_free_device_is_held_exclusively_at_once(tmp_path: Path) -> None:
    with hold_devices([GPU], run_id="r1", holder="pair p1", lock_dir=tmp_path) as claim:
        assert (claim.access, claim.wait_s, claim.note) == ("exclusive", 0.0, None)
    assert oct(os.stat(tmp_path).st_mode & 0o777) == "0o700"


def test_a_gpu_held_by_another_process_is_waited_for_and_the_wait_recorded(tmp_path: Path) -> None:
    other = _holder(tmp_path, GPU, "r1", 1.0)
    try:
        t0 = time.monotonic()
        with hold_devices([GPU], run_id="r2", holder="pair p1", lock_dir=tmp_path, wait_s=30) as claim:
            assert other.stdout is not None and other.stdout.readline().strip() == "released"  # not before
        assert claim.access == "waited" and 0.5 < claim.wait_s <= time.monotonic() - t0
        assert claim.note is not None and claim.note.startswith(f"waited {claim.wait_s:.1f} s for {GPU}")
    finally:
        other.wait(10)


def test_a_device_busy_for_the_whole_wait_is_one_line_naming_it_and_its_holder(tmp_path: Path) -> None:
    other = _holder(tmp_path, GPU, "run-a", 30.0)
    try:
        with pytest.raises(DeviceBusy) as exc:
            with hold_devices([GPU], run_id="run-b", holder="pair p1", lock_dir=tmp_path, wait_s=0.5):
                raise AssertionError("must not run")
    finally:
        other.kill()
        other.wait(10)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"{GPU} still busy after 0.5 s: {GPU} is held by run run-a")
    assert f"pid {other.pid}" in message and "MOECLUSTER_DEVICE_WAIT_S" in message


def test_a_killed_holder_releases_the_device_at_once(tmp_path: Path) -> None:
    other = _holder(tmp_path, GPU, "r1", 60.0)
    other.kill()
    other.wait(10)
    with hold_devices([GPU], run_id="r2", holder="pair p1", lock_dir=tmp_path, wait_s=0) as claim:
        assert claim.access == "exclusive"


def test_the_cpu_is_shared_within_a_run_and_not_between_runs(tmp_path: Path) -> None:
    with hold_devices([CPU], run_id="r1", holder="pair p1", lock_dir=tmp_path, wait_s=0) as first:
        with hold_devices([CPU], run_id="r1", holder="pair p2", lock_dir=tmp_path, wait_s=0) as second:
            assert first.access == second.access == "exclusive"  # one run's slots, as the user sized them
            with pytest.raises(DeviceBusy, match=r"cpu is used by run r1 \(pair p1, pid"):
                with hold_devices([CPU], run_id="r2", holder="pair q1", lock_dir=tmp_path, wait_s=0.3):
                    pass
    with hold_devices([CPU], run_id="r2", holder="pair q1", lock_dir=tmp_path, wait_s=0) as later:
        assert later.access == "exclusive"


def test_a_waiting_run_goes_before_a_run_that_arrives_later(tmp_path: Path) -> None:
    """Run r1's pairs overlap; r2 waits for the CPU: r1's next pair must queue behind r2."""
    order: list[str] = []
    r2_waiting = threading.Event()

    def r2() -> None:
        r2_waiting.set()
        with hold_devices([CPU], run_id="r2", holder="pair q1", lock_dir=tmp_path, wait_s=30, poll_s=0.05) as c:
            order.append(f"r2 {c.access}")
            time.sleep(0.3)
        order.append("r2 done")

    with hold_devices([CPU], run_id="r1", holder="pair p1", lock_dir=tmp_path, wait_s=0):
        thread = threading.Thread(target=r2)
        thread.start()
        r2_waiting.wait(5)
        time.sleep(0.3)  # r2 has polled and marked itself waiting
        with pytest.raises(DeviceBusy, match="cpu is awaited first by run r2"):
            with hold_devices([CPU], run_id="r1", holder="pair p2", lock_dir=tmp_path, wait_s=0.2):
                pass
    with hold_devices([CPU], run_id="r1", holder="pair p2", lock_dir=tmp_path, wait_s=30, poll_s=0.05) as c:
        order.append(f"r1 {c.access}")
    thread.join(10)
    assert order == ["r2 waited", "r2 done", "r1 waited"]


def test_several_gpus_are_taken_all_or_none(tmp_path: Path) -> None:
    other_gpu = "GPU-bbbbbbbb-0000-0000-0000-000000000000"
    other = _holder(tmp_path, other_gpu, "r1", 30.0)
    try:
        with pytest.raises(DeviceBusy, match=f"{other_gpu} is held by run r1"):
            with hold_devices([GPU, other_gpu], run_id="r2", holder="gang", lock_dir=tmp_path, wait_s=0.2):
                pass
        with hold_devices([GPU], run_id="r3", holder="pair", lock_dir=tmp_path, wait_s=0) as claim:
            assert claim.access == "exclusive"  # the first GPU was let go when the second was busy
    finally:
        other.kill()
        other.wait(10)


def test_an_unsafe_lock_dir_runs_unlocked_and_says_so(tmp_path: Path) -> None:
    shared = tmp_path / "locks"
    shared.mkdir()
    shared.chmod(0o777)
    with hold_devices([GPU], run_id="r1", holder="pair p1", lock_dir=shared) as claim:
        assert claim.access == "unlocked"
        assert claim.note is not None and "devices not locked (device lock directory" in claim.note
        assert "another run may have measured on them at the same time" in claim.note
    assert not list(shared.iterdir())


def test_results_record_how_the_devices_were_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOECLUSTER_LOCK_DIR", str(tmp_path))
    spec = _spec()
    done = run_holding_devices([spec], lambda: [TaskResult(spec=spec, status="ok", warnings=("w",))], node="n1")
    assert [(r.status, r.device_access, r.device_wait_s, r.warnings) for r in done] == \
        [("ok", "exclusive", 0.0, ("w",))]
    assert TaskResult.from_json(done[0].to_json()) == done[0]
    assert TaskResult.from_dict({"spec": spec.to_dict(), "status": "ok"}).device_access == ""  # older records


def test_a_pair_whose_device_stays_busy_fails_as_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOECLUSTER_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("MOECLUSTER_DEVICE_WAIT_S", "0.3")
    dense = TaskSpec(task_id="r2-t2", pair_id="p1", kind="dense", impl="dense", model={}, run_id="r2", device="cpu")
    other = _holder(tmp_path, CPU, "r1", 30.0)
    try:
        done = run_holding_devices([_spec(), dense], lambda: pytest.fail("ran on a busy device"), node="n1")
        with pytest.raises(DeviceBusy):
            run_holding_devices([_spec()], lambda: [], node="n1", raise_busy=True)  # a gang's rank
    finally:
        other.kill()
        other.wait(10)
    assert [r.spec.task_id for r in done] == ["r2-t1", "r2-t2"]
    for r in done:
        assert r.status == "failed" and r.device_access == "waited" and r.device_wait_s >= 0.3 and r.node == "n1"
        assert r.error is not None
        assert r.error.startswith("DeviceBusy: cpu still busy after 0.3 s: cpu is used by run r1")


def test_an_unreadable_wait_limit_fails_the_pair_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOECLUSTER_DEVICE_WAIT_S", "forever")
    with pytest.raises(ValueError, match="MOECLUSTER_DEVICE_WAIT_S='forever': expected seconds"):
        wait_limit_s()
    (done,) = run_holding_devices([_spec()], lambda: pytest.fail("ran"), node="n1")
    assert done.status == "failed" and done.error is not None and "MOECLUSTER_DEVICE_WAIT_S" in done.error


def test_a_cpu_task_holds_the_cpu() -> None:
    assert task_devices("cpu") == [CPU]
