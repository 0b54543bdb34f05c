"""Sweeps on a real three-node Ray cluster of fake GPUs, token auth on.

Nodes: the head and one worker with two `FAKE-A` GPUs each, one worker with two `FAKE-B`;
one CPU per node, each pair holding half a CPU, so six pairs run at once. Tasks run on the
CPU with the `fake` meter. The node-removal tests go last: they leave fewer nodes.
"""
from __future__ import annotations

import collections
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from ray._private import ray_constants

from moecluster.spec.records import TaskResult
from moecluster.head import schedule
from moecluster_fakecluster import auth_env, fake_gpu_cluster
from moecluster.head.store import RunStore
from moecluster.head.sweep import PairPlan, expand, parse_sweep

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CPUS_PER_TASK = 0.5
BASE = """\
name: cluster-test
replicates: 1  # one process per pair: this test counts pairs and tasks
models: [{preset: small}]
batch_size: 64
duration_s: 0.3
warmup_s: 0.05
repeats: 2
device: cpu
meter: fake
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with auth_env(), fake_gpu_cluster(("FAKE-A", "FAKE-A", "FAKE-B"), gpus=2, cpus=1) as c:
        schedule.connect(schedule.ClusterOptions(address=c.address))
        try:
            yield c
        finally:
            schedule.disconnect()


class Recorder:
    def __init__(self) -> None:
        self.started: list[tuple[str, str, int]] = []
        self.retried: list[tuple[str, int, str]] = []
        self.records: list[tuple[str, bool]] = []

    def pair_started(self, pair: PairPlan, node: str, attempt: int) -> None:
        self.started.append((pair.pair_id, node, attempt))

    def pair_retried(self, pair: PairPlan, attempt: int, reason: str) -> None:
        self.retried.append((pair.pair_id, attempt, reason))

    def stored_ids(self) -> list[str]:
        return [t for t, _ in self.records]

    def stored(self, result: TaskResult, written: bool) -> None:
        self.records.append((result.spec.task_id, written))


def run(sweep_text: str, run_dir: Path, events: Any = None, check: bool = True,
        **options: Any) -> tuple[list[PairPlan], RunStore, Any]:
    plan = expand(parse_sweep(sweep_text), run_id=run_dir.name)
    inv = schedule.inventory()
    if check:
        schedule.check_feasible(list(plan.pairs), inv, CPUS_PER_TASK)
    store = RunStore(run_dir)
    store.set_plan((t, e) for p in plan.pairs for t, e in zip(p.tasks, p.estimated_s))
    events = events or Recorder()
    sched = schedule.Scheduler(store, inv, schedule.ScheduleOptions(cpus_per_task=CPUS_PER_TASK, **options), events)
    sched.run(list(plan.pairs))
    return list(plan.pairs), store, events


def by_pair(results: list[TaskResult]) -> dict[str, list[TaskResult]]:
    out: dict[str, list[TaskResult]] = collections.defaultdict(list)
    for r in results:
        out[r.spec.pair_id].append(r)
    return out


def test_twelve_task_sweep_stores_each_task_once_and_keeps_pairs_on_one_gpu_model(cluster: Any, tmp_path: Path) -> None:
    text = BASE + "impl: [naive, sorted, grouped]\naccelerator_type: [FAKE-A, FAKE-B]\n"
    pairs, store, events = run(text, tmp_path)
    planned = [t.task_id for p in pairs for t in p.tasks]
    assert len(planned) == 12
    assert sorted(events.stored_ids()) == sorted(planned)  # each task stored exactly once
    assert all(written for _, written in events.records)
    assert store.counts() == {"planned": 12, "ok": 12, "failed": 0, "missing": 0}
    results = store.results()
    for pair_id, members in by_pair(results).items():
        assert len(members) == 2
        accel = "FAKE-B" if pair_id.endswith("FAKE-B") else "FAKE-A"
        names = {g.name for r in members for g in r.gpus}
        assert names == {f"Fake {accel}"}, (pair_id, names)
        uuids = {tuple(g.uuid for g in r.gpus) for r in members}
        assert len(uuids) == 1  # dense and MoE measured on the very same GPU
        assert all(r.energy_source == "fake-power-model" and len(r.windows) == 2 for r in members)
    assert len({g.uuid for r in results for g in r.gpus}) > 1  # spread over several GPUs
    assert {r.spec.run_id for r in results} == {tmp_path.name}
    store.close()


def test_watchdog_records_an_overdue_pair_as_failed(cluster: Any, tmp_path: Path) -> None:
    text = BASE.replace("duration_s: 0.3", "duration_s: 30").replace("repeats: 2", "repeats: 1") + "impl: naive\n"
    _, store, events = run(text, tmp_path, watchdog=lambda estimate_s: 3.0)
    results = store.results()
    assert len(results) == 2 and all(r.status == "failed" and "watchdog" in (r.error or "") for r in results)
    assert sorted(events.stored_ids()) == sorted(r.spec.task_id for r in results)
    store.close()


def test_a_gpu_pair_task_never_shares_its_process_with_another(cluster: Any) -> None:
    """`max_calls=1`: each GPU pair runs in a process of its own (one that ran a pair on GPU 0 would
    keep GPU 0 for the next), and reports its attempt, node and process before its results."""
    import ray

    from moecluster.node.progress import PairStarted
    from moecluster.head.schedule.remote import gpu_pair_task

    text = BASE.replace("repeats: 2", "repeats: 1") + "impl: naive\nseed: [0, 1, 2, 3]\naccelerator_type: FAKE-B\n"
    starts = []
    for pair in expand(parse_sweep(text), run_id="pids").pairs:  # one after another, on the FAKE-B node
        gen = gpu_pair_task.options(num_gpus=1, num_cpus=CPUS_PER_TASK, max_retries=0,
                                    resources={"accelerator_type:FAKE-B": 0.001}).remote(list(pair.tasks), 3)
        started, results = [ray.get(ref) for ref in gen]
        assert isinstance(started, PairStarted) and started.attempt == 3 and started.pair_id == pair.pair_id
        assert [r.status for r in results] == ["ok", "ok"]
        starts.append(started)
    assert len({s.node_id for s in starts}) == 1
    assert len({s.pid for s in starts}) == len(starts)  # never the same process twice


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc)."""
    out: list[int] = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        return out
    for child in children:
        out += [child, *descendants(child)]
    return out


class RemoveBusyWorker(Recorder):
    """Removes the first worker node (not the head) seen running a pair."""

    def __init__(self, cluster: Any) -> None:
        super().__init__()
        self.cluster = cluster
        self.removed: str | None = None
        self.removed_at = 0.0

    def pair_started(self, pair: PairPlan, node: str, attempt: int) -> None:
        super().pair_started(pair, node, attempt)
        if self.removed is None:
            for worker in list(self.cluster.worker_nodes):
                if node.endswith(worker.node_id[:8]):
                    self.removed, self.removed_at = node, time.time()
                    # lost, not drained: the raylet dies, and so do its workers at once (on one
                    # machine a worker could otherwise outlive its raylet and finish the pair)
                    raylet = worker.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
                    workers = descendants(raylet)
                    self.cluster.remove_node(worker, allow_graceful=False)
                    for pid in workers:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    break


def test_node_removed_mid_sweep_loses_and_duplicates_nothing(cluster: Any, tmp_path: Path) -> None:
    text = BASE.replace("duration_s: 0.3", "duration_s: 1.0") + "impl: [naive, sorted, grouped]\nseed: [0, 1]\n"
    events = RemoveBusyWorker(cluster)
    pairs, store, _ = run(text, tmp_path, events=events)
    assert events.removed is not None
    planned = sorted(t.task_id for p in pairs for t in p.tasks)
    assert sorted(events.stored_ids()) == planned
    assert store.counts() == {"planned": 12, "ok": 12, "failed": 0, "missing": 0}
    # Every pair that started on the lost node (or was handed to it, not yet started) either
    # finished there before the loss, or was put back first in the queue and stored once, from
    # another node, with the attempt it ran as.
    lost = {pid for pid, node, _ in events.started if node == events.removed}
    retried = {pid for pid, attempt, _ in events.retried}
    assert retried and all(attempt == 1 for _, attempt, _ in events.retried), events.retried
    attempts = store.attempts()
    for r in store.results():
        if r.spec.pair_id in retried:
            assert attempts[r.spec.task_id] == 2 and all(g.node != events.removed for g in r.gpus), r
        elif r.spec.pair_id in lost:
            assert r.gpus[0].node == events.removed and r.finished_at <= events.removed_at, r
    store.close()


def test_pair_whose_only_gpu_model_is_gone_fails_instead_of_waiting(cluster: Any, tmp_path: Path) -> None:
    for worker in list(cluster.worker_nodes):
        if worker.node_id in {n.node_id for n in schedule.inventory().nodes if n.accelerator_type == "FAKE-B"}:
            cluster.remove_node(worker)
    text = BASE.replace("repeats: 2", "repeats: 1") + "impl: naive\naccelerator_type: FAKE-B\n"
    _, store, _ = run(text, tmp_path, check=False, inventory_poll_s=0.5, stranded_grace_s=2.0)
    results = store.results()
    assert len(results) == 2 and all(r.status == "failed" and "unschedulable" in (r.error or "") for r in results)
    store.close()
