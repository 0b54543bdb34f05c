"""Faults on a cluster of separate hosts, through `moecluster submit --address` run on the head.

Hosts are network namespaces on a bridge (see `netns.py`); Ray runs in each with token auth and
moecluster's failure-detection settings. Each scenario runs a sweep of two to four pairs on two
workers (one pair at a time each: a pair holds a whole CPU), makes one fault while a pair
measures, and checks that every task is stored exactly once, all `ok`, the pair hit by the fault
with the attempt it ran as, and prints how long the recovery took (fault to the hit pair's results
stored; for a killed submit, to the end of `--resume`). A lost node's pair must be stored within
30 s of the fault. The scenarios share one cluster; the two that lose worker 1 go last.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from moecluster.spec.records import TaskResult
from moecluster.head.store import RunStore, StoreDamaged
from netns import NetnsCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

MOECLUSTER = str(Path(sys.executable).parent / "moecluster")
# The head notices a lost pair within this long of the fault and puts it first in the queue again. When
# it is stored then depends on the pairs' own length too (a free slot, a fresh process, the race between
# its forms, its windows), which the recovery line reports beside it.
RECOVERY_TARGET_S = 30.0
SWEEP = """\
name: faults
replicates: 1  # one process per pair: this test counts pairs and tasks
models:
  - {name: tiny, num_experts: 4, expert_hidden_dim: 32, expert_num_layers: 1, top_k: 2}
impl: sorted
seed: [0, 1]
batch_size: 32
duration_s: 0.5
warmup_s: 0.05
repeats: 1
device: cpu
meter: fake
"""
RETRIED = re.compile(r"↻ (\S+) attempt (\d+) lost \((.*)\); first in the queue again")


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """Print the recovery line; with `$MOECLUSTER_RECOVERY_LOG`, also append it there (one JSON line
    with the time, for evidence kept beside the README's figures)."""
    with capsys.disabled():
        print(f"\n[recovery] {line}", flush=True)
    log = os.environ.get("MOECLUSTER_RECOVERY_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"at": time.time(), "recovery": line}) + "\n")


def submit(hosts: NetnsCluster, tmp_path: Path, run_id: str, *extra: str, pairs: int = 2) -> subprocess.Popen[str]:
    sweep = tmp_path / "faults.yaml"
    sweep.write_text(SWEEP.replace("seed: [0, 1]", f"seed: {list(range(pairs))}"))
    args = [MOECLUSTER, "submit", *([] if "--resume" in extra else [str(sweep), "--run-id", run_id]), *extra,
            "--address", hosts.address, "--runs-dir", str(tmp_path / "runs"), "--no-agents",
            "--cpus-per-task", "1"]
    return hosts.popen_in(0, args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(head: subprocess.Popen[str], timeout_s: float = 150) -> str:
    try:
        _, err = head.communicate(timeout=timeout_s)
    finally:
        if head.poll() is None:
            head.kill()
    return err


def results(tmp_path: Path, run_id: str) -> list[TaskResult]:
    path = tmp_path / "runs" / run_id
    try:
        with RunStore(path, read_only=True) as store:
            return store.results()
    except StoreDamaged:  # not there yet, or being created this very moment
        return []


def measuring_pair(hosts: NetnsCluster, host: int, run_id: str, timeout_s: float = 90) -> str:
    """The pair of `run_id` at work on `host` now: its task label (written once the task has its GPU
    and its model, before the warm-up) names a live process."""
    labels = hosts.root / f"labels-h{host}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for path in labels.glob("*.json"):
            try:
                label = json.loads(path.read_text())
                os.kill(int(label["pid"]), 0)
            except (OSError, ValueError, KeyError):
                continue
            if label.get("run") == run_id:
                return str(label["pair"])
        time.sleep(0.05)
    raise AssertionError(f"no pair of {run_id} measured on host {host} within {timeout_s:g} s")


def assert_stored_once(tmp_path: Path, run_id: str, errs: list[str], killed: bool = False) -> dict[str, int]:
    """Every planned task stored once and `ok` and announced once over all submits (at most once
    where a submit was killed: it may die between storing a result and printing it); returns each
    pair's attempts, as stored."""
    with RunStore(tmp_path / "runs" / run_id, read_only=True) as store:
        planned = store.counts()["planned"]
        assert store.counts() == {"planned": planned, "ok": planned, "failed": 0, "missing": 0}
        attempts = store.attempts()
        pair_of = {spec.task_id: spec.pair_id for spec, _ in store.planned()}
    announced = Counter(m.group(1) for err in errs for m in re.finditer(r"^[✓✗] (\S+)", err, re.M))
    if killed:
        assert set(announced) <= set(pair_of) and max(announced.values()) == 1, announced
    else:
        assert announced == Counter(list(pair_of)), announced
    by_pair: dict[str, set[int]] = {}
    for task, pair in pair_of.items():
        by_pair.setdefault(pair, set()).add(attempts[task])
    assert all(len(a) == 1 for a in by_pair.values()), by_pair  # a pair's tasks ran in one attempt
    return {pair: a.pop() for pair, a in by_pair.items()}


def retries(err: str) -> list[tuple[str, int, str]]:
    return [(m.group(1), int(m.group(2)), m.group(3)) for m in RETRIED.finditer(err)]


def stored_at(tmp_path: Path, run_id: str, pair: str, timeout_s: float) -> float:
    """When the last task of `pair` was stored (waits for it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        mine = [r for r in results(tmp_path, run_id) if r.spec.pair_id == pair]
        if len(mine) == 2:
            return max(r.finished_at for r in mine)
        time.sleep(0.1)
    raise AssertionError(f"pair {pair} not stored within {timeout_s:g} s")


def noticed_at(tmp_path: Path, run_id: str, pair: str) -> float:
    """When the head noticed that `pair`'s first attempt was lost (and queued it first again)."""
    with RunStore(tmp_path / "runs" / run_id, read_only=True) as store:
        lost = [a.lost_at for a in store.pair_attempts() if a.pair_id == pair and a.lost_at is not None]
    assert lost, f"no lost attempt of {pair} recorded"
    return min(lost)


def recovery(pair: str, noticed_s: float, stored_s: float, fault: str) -> str:
    """The recovery line: when the head noticed the loss and when the pair was stored again, after the fault."""
    return f"pair {pair} noticed lost {noticed_s:.1f} s and stored {stored_s:.1f} s after {fault}"


def restart(hosts: NetnsCluster, host: int) -> None:
    """Bring a lost host back as a fresh Ray node (its old processes gone); `hosts.wait_alive` waits for it."""
    hosts.kill(host)
    hosts.start(hosts.hosts[host])


def test_a_killed_submit_resumes_and_keeps_what_was_stored(hosts: NetnsCluster, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    head = submit(hosts, tmp_path, "head", pairs=3)  # the third still waits when the first is stored
    try:
        deadline = time.monotonic() + 90
        before: dict[str, float] = {}
        while not before and time.monotonic() < deadline:
            assert head.poll() is None, head.stderr.read() if head.stderr else ""
            before = {r.spec.task_id: r.finished_at for r in results(tmp_path, "head")}
            time.sleep(0.1)
        fault_at = time.time()
        head.send_signal(signal.SIGKILL)
    finally:
        first = finish(head, 30)
    assert 1 <= len(before) < 6  # of the 6 tasks
    resumed = submit(hosts, tmp_path, "head", "--resume", "head")
    err = finish(resumed)
    done_at = time.time()
    assert resumed.returncode == 0 and re.search(r"run head: [1-9]\d* tasks in", err), err[-3000:]
    assert_stored_once(tmp_path, "head", [first, err], killed=True)
    after = {r.spec.task_id: r.finished_at for r in results(tmp_path, "head")}
    assert all(after[t] == at for t, at in before.items())  # what was stored is kept as it was
    report(capsys, f"submit killed: --resume finished the run {done_at - fault_at:.1f} s after the kill")


def test_a_process_on_the_wrong_gpu_fails_loudly_and_its_pair_runs_again(hosts: NetnsCluster, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    token = hosts.root / "stale-cuda"
    token.write_text("armed")
    head = submit(hosts, tmp_path, "gpu")
    err = finish(head)
    assert head.returncode == 0, err[-3000:]
    claim = json.loads((hosts.root / "stale-cuda.claimed").read_text())
    attempts = assert_stored_once(tmp_path, "gpu", [err])
    (lost,) = retries(err)
    pair, attempt, why = lost
    assert attempt == 1 and "GpuMismatch" in why and "Ray assigned GPU" in why, why
    assert attempts[pair] == 2
    recovered_at = max(r.finished_at for r in results(tmp_path, "gpu") if r.spec.pair_id == pair)
    noticed = noticed_at(tmp_path, "gpu", pair) - claim["at"]
    report(capsys, "process on the wrong GPU: " + recovery(pair, noticed, recovered_at - claim["at"],
                                                           "its process bound the wrong GPUs"))
    assert noticed < RECOVERY_TARGET_S


def test_a_killed_worker_s_pair_is_retried_first_and_stored_once(hosts: NetnsCluster, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    head = submit(hosts, tmp_path, "kill", pairs=4)  # two run, two wait in moecluster's queue
    try:
        pair = measuring_pair(hosts, 1, "kill")
        fault_at = time.time()
        hosts.kill(1)
        recovered_at = stored_at(tmp_path, "kill", pair, 90)
        restart(hosts, 1)  # joins while the sweep ends (waiting pairs may run there)
    finally:
        err = finish(head)
    assert head.returncode == 0, err[-3000:]
    attempts = assert_stored_once(tmp_path, "kill", [err])
    assert [(p, a) for p, a, _ in retries(err)] == [(pair, 1)], err[-3000:]
    assert attempts[pair] == 2
    with RunStore(tmp_path / "runs" / "kill", read_only=True) as store:
        handed = store.pair_attempts()  # in the order the head handed them to Ray
    assert {a.pair_id: a.attempt for a in handed} == attempts, handed  # the last attempt of each is the stored one
    lost = [a for a in handed if a.lost_at is not None]
    assert [(a.pair_id, a.attempt) for a in lost] == [(pair, 1)], handed
    # The lost pair is first in the queue from the moment the head noticed the loss, not from the
    # kill: the other worker may finish its pair and take the next waiting one in between. Of the
    # pairs handed out after that moment (at least one of the two waiting ones), it went first.
    after = [(a.pair_id, a.attempt) for a in handed if a.submitted_at > lost[0].lost_at]
    assert len(after) >= 2 and after[0] == (pair, 2), handed
    noticed = lost[0].lost_at - fault_at
    report(capsys, "worker killed: " + recovery(pair, noticed, recovered_at - fault_at, "the kill"))
    assert noticed < RECOVERY_TARGET_S


def test_a_partitioned_worker_s_pair_is_retried_while_the_rest_runs_and_the_heal_adds_nothing(
        hosts: NetnsCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hosts.wait_alive(len(hosts.hosts))  # worker 1, restarted after the kill
    head = submit(hosts, tmp_path, "part")
    try:
        other = measuring_pair(hosts, 2, "part")
        pair = measuring_pair(hosts, 1, "part")
        fault_at = time.time()
        hosts.partition(1)
        recovered_at = stored_at(tmp_path, "part", pair, 90)
        hosts.heal(1)  # the old node learns it was declared dead; nothing it still sends may count
    finally:
        err = finish(head)
    assert head.returncode == 0, err[-3000:]
    attempts = assert_stored_once(tmp_path, "part", [err])
    lost = retries(err)
    assert [(p, a) for p, a, _ in lost] == [(pair, 1)] and "Ray marked it dead" in lost[0][2], err[-3000:]
    assert attempts[pair] == 2 and attempts[other] == 1
    other_at = max(r.finished_at for r in results(tmp_path, "part") if r.spec.pair_id == other)
    assert fault_at < other_at  # the rest of the sweep went on meanwhile
    noticed = noticed_at(tmp_path, "part", pair) - fault_at
    report(capsys, "worker partitioned: " + recovery(pair, noticed, recovered_at - fault_at, "the partition"))
    assert noticed < RECOVERY_TARGET_S
