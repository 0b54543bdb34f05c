"""Expert-parallel gangs through `moecluster submit`: real Ray actors on a one-node cluster of fake
GPUs (token auth on), ranks on the CPU with gloo and the `fake` meter.

A gang of N runs N actors in one placement group and stores rank 0's results once. A rank killed
mid-window makes the whole gang fail, every actor go and the placement group be removed; the
gang is retried as one (new actors, new port) and each task is stored once, with 2 attempts.
Sweeps that cannot be measured as expert parallelism are refused before anything starts.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moecluster.node import capability
from moecluster.report.aggregate import aggregate
from moecluster.cli import main
from moecluster.head.schedule.envvars import scoped_environ
from moecluster.head.store import RunStore

MOECLUSTER = str(Path(sys.executable).parent / "moecluster")
SWEEP = """\
name: gangs
replicates: 1  # one process per pair: this test counts pairs and tasks
models:
  - {name: tiny, num_experts: 4, expert_hidden_dim: 32, expert_num_layers: 1, top_k: 2}
impl: sorted
batch_size: 32
duration_s: 0.3
warmup_s: 0.05
repeats: 1
device: cpu
meter: fake
"""


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    return int(info.value.code or 0), capsys.readouterr().err


def test_a_batch_the_gang_cannot_split_evenly_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SWEEP.replace("batch_size: 32", "batch_size: [32, 30]") + "expert_parallel: [1, 4]\n")
    code, err = in_process(capsys, "submit", str(sweep), "--dry-run", "--runs-dir", str(tmp_path / "runs"))
    assert code == 2 and err.count("\n") == 1
    assert "batch_size: 30 is not divisible by expert_parallel 4" in err


def test_gangs_are_refused_where_the_node_side_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(capability, "NEEDED", {"moecluster.node.absent_parallel": ("run_gang_rank",)})
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SWEEP + "expert_parallel: [1, 2]\n")
    code, err = in_process(capsys, "submit", str(sweep), "--dry-run", "--runs-dir", str(tmp_path / "runs"))
    assert code == 2 and err.count("\n") == 1
    assert "expert_parallel > 1 cannot run: the node side of expert parallelism is not installed" in err
    sweep.write_text(SWEEP + "expert_parallel: 1\n")  # no gang: nothing to refuse
    code, err = in_process(capsys, "submit", str(sweep), "--dry-run", "--runs-dir", str(tmp_path / "runs"))
    assert code == 0, err


@pytest.fixture(scope="module")
def gang_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str], Path]]:
    """One node, four fake GPUs, one CPU; task labels in a directory of our own (the ranks write
    their progress there, which tells the kill test when a window runs). This process joins the
    cluster too, to read Ray's actor and placement-group tables."""
    import ray

    from moecluster_fakecluster import auth_env, fake_gpu_cluster

    labels = tmp_path_factory.mktemp("labels")
    with auth_env() as env, scoped_environ({"MOECLUSTER_STATE_DIR": str(labels)}), \
            fake_gpu_cluster(("FAKE-A",), gpus=4, cpus=1) as cluster:
        ray.init(address=cluster.address, namespace="gang-test-watcher", log_to_driver=False)
        try:
            yield cluster, {**env, "MOECLUSTER_STATE_DIR": str(labels)}, labels
        finally:
            ray.shutdown()


def submit(cluster: Any, env: dict[str, str], sweep: Path, runs: Path, run_id: str) -> list[str]:
    return [MOECLUSTER, "submit", str(sweep), "--address", cluster.address, "--runs-dir", str(runs),
            "--run-id", run_id, "--no-agents", "--cpus-per-task", "0.25"]


def submitted(gang_cluster: tuple[Any, dict[str, str], Path], tmp_path: Path, text: str, run_id: str) -> Path:
    """The runs directory after `moecluster submit` of sweep `text` as run `run_id` succeeded on the cluster."""
    cluster, env, _ = gang_cluster
    sweep = tmp_path / f"{run_id}.yaml"
    sweep.write_text(text)
    runs = tmp_path / "runs"
    proc = subprocess.run(submit(cluster, env, sweep, runs, run_id), capture_output=True, text=True, timeout=360,
                          env={**os.environ, **env}, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return runs


def gang_actors(run_id: str) -> dict[str, dict[str, Any]]:
    """Ray's table of this run's gang actors, by name (`gang-<run>-<pair>-a<attempt>-r<rank>`)."""
    import ray._private.state

    return {a["Name"]: a for a in ray._private.state.actors().values()
            if str(a.get("Name", "")).startswith(f"gang-{run_id}-")}


def assert_nothing_left(run_id: str) -> None:
    """Every gang actor of the run is dead and no placement group of it is left."""
    from ray.util.placement_group import placement_group_table

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        alive = [n for n, a in gang_actors(run_id).items() if a["State"] != "DEAD"]
        groups = [g for g in placement_group_table().values() if g["state"] != "REMOVED"]
        if not alive and not groups:
            return
        time.sleep(0.5)
    raise AssertionError(f"left behind: actors {alive}, placement groups {groups}")


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_gangs_of_two_and_four_store_rank_zeros_measurement_once(
        gang_cluster: tuple[Any, dict[str, str], Path], tmp_path: Path) -> None:
    runs = submitted(gang_cluster, tmp_path, SWEEP + "expert_parallel: [2, 4]\n", "g")
    with RunStore(runs / "g") as store:
        assert store.counts() == {"planned": 4, "ok": 4, "failed": 0, "missing": 0}
        assert set(store.attempts().values()) == {1}
        results = store.results()
    moes = {r.spec.expert_parallel: r for r in results if r.spec.kind == "moe"}
    for degree, moe in moes.items():
        assert moe.world_size == degree and len(moe.gpus) == degree
        assert len({g.uuid for g in moe.gpus}) == degree and len({g.node for g in moe.gpus}) == 1  # STRICT_PACK
        assert all(w.energy_j is not None and w.energy_j > 0 for w in moe.windows)
        assert {"dispatch", "combine"} <= {p.name for p in moe.phases} and moe.alltoall
    points = {p.degree: p for p in aggregate(results).ep}
    assert sorted(points) == [2, 4]
    for p in points.values():
        assert p.comm is not None and p.comm.time_share is not None and 0 < p.comm.time_share < 1
    names = gang_actors("g")
    assert len(names) == 6 and all("-a1-" in n for n in names)  # 2 + 4 ranks, one attempt each
    assert_nothing_left("g")


def wait_for_window(labels: Path, pair_prefix: str, timeout_s: float = 240.0) -> None:
    """Until a rank of the pair reports inferences done in a measured window (its label file)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for path in labels.glob("*.json"):
            try:
                label = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if str(label.get("pair", "")).startswith(pair_prefix) and label.get("inferences_total", 0) > 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"no window of {pair_prefix} seen within {timeout_s:g} s")


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_rank_killed_mid_window_fails_the_gang_which_is_retried_whole_and_stored_once(
        gang_cluster: tuple[Any, dict[str, str], Path], tmp_path: Path) -> None:
    cluster, env, labels = gang_cluster
    sweep = tmp_path / "kill.yaml"
    sweep.write_text(SWEEP.replace("duration_s: 0.3", "duration_s: 3") + "expert_parallel: 2\n")
    runs = tmp_path / "runs"
    head = subprocess.Popen(submit(cluster, env, sweep, runs, "k"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    try:
        wait_for_window(labels, "tiny")
        first = gang_actors("k")
        (victim,) = [a for n, a in first.items() if n.endswith("-a1-r1")]
        assert victim["State"] == "ALIVE" and victim["Pid"] > 0
        os.kill(int(victim["Pid"]), signal.SIGKILL)  # rank 1 dies mid-window
        _, err = head.communicate(timeout=300)
    finally:
        if head.poll() is None:
            head.kill()
    assert head.returncode == 0, err[-4000:]
    with RunStore(runs / "k") as store:
        assert store.counts() == {"planned": 2, "ok": 2, "failed": 0, "missing": 0}
        assert set(store.attempts().values()) == {2}  # retried once, as a whole, stored once
        moe = next(r for r in store.results() if r.spec.kind == "moe")
    assert moe.world_size == 2 and len(moe.gpus) == 2
    names = gang_actors("k")
    assert sorted(n[-5:] for n in names) == ["a1-r0", "a1-r1", "a2-r0", "a2-r1"]  # new actors for the retry
    assert_nothing_left("k")


LLM_SWEEP = """\
name: llm-gang
workload: llm
replicates: 1
models: [{preset: tiny-mixtral}]
match: total
phase: decode
batch_size: 4
prompt_len: 5
gen_tokens: 3
dtype: float32
duration_s: 0.3
warmup_s: 0.05
repeats: 1
device: cpu
meter: fake
expert_parallel: 2
"""


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_an_llm_moe_pair_runs_expert_parallel_through_submit(
        gang_cluster: tuple[Any, dict[str, str], Path], tmp_path: Path) -> None:
    runs = submitted(gang_cluster, tmp_path, LLM_SWEEP, "l")
    with RunStore(runs / "l") as store:
        assert store.counts() == {"planned": 2, "ok": 2, "failed": 0, "missing": 0}
        results = store.results()
    moe = next(r for r in results if r.spec.kind == "moe")
    dense = next(r for r in results if r.spec.kind == "dense")
    assert moe.spec.workload == "llm" and moe.spec.expert_parallel == 2 and dense.spec.expert_parallel == 1
    for r in (moe, dense):
        assert r.world_size == 2 and len({g.uuid for g in r.gpus}) == 2
        assert all(w.energy_j is not None and w.energy_j > 0 and w.inferences % (4 * 3) == 0 for w in r.windows)
    assert moe.form["parallel"].startswith("expert over 2 ranks") and dense.form["parallel"].startswith("data over 2")
    assert [p.name for p in moe.phases] == ["other", "route", "dispatch", "experts", "combine"]
    assert len(moe.alltoall) == 2 and moe.alltoall[0].energy_j is not None
    (series,) = aggregate(results).llm
    assert "EP2" in series.key.label()
    assert_nothing_left("l")
