"""What a pair does on its node (real runner, CPU, fake GPUs), and the pure scheduling rules."""
from __future__ import annotations

from dataclasses import replace

import pytest

from moecluster.agents.devices import FakeDevices
from moecluster.agents.records import GpuRecord, TaskResult, Window
from moecluster.orchestrator.schedule.cluster import ClusterError, Inventory, NodeInfo
from moecluster.orchestrator.schedule.gang import merge_ranks, rank_env, rank_specs
from moecluster.agents.pair import run_pair
from moecluster.orchestrator.schedule.resources import check_feasible, pair_resources, parallel_slots
from moecluster.orchestrator.sweep import expand, parse_sweep

TINY = """\
name: tiny
models:
  - {name: tiny, num_experts: 4, expert_hidden_dim: 32, expert_num_layers: 1, top_k: 2}
impl: sorted
batch_size: 32
match: [total, active]
duration_s: 0.2
warmup_s: 0.05
repeats: 2
device: cpu
meter: fake
"""


def tiny_pair(extra: str = ""):  # type: ignore[no-untyped-def]
    (pair,) = expand(parse_sweep(TINY + extra)).pairs
    return pair


def test_run_pair_alternates_and_merges_repeats_on_fake_gpus() -> None:
    pair = tiny_pair()
    order: list[tuple[str, int]] = []
    with FakeDevices(2, node="node-x", name="Fake TEST") as devices:
        results = run_pair(pair.tasks, devices=devices, gpu_indices=[1], node="node-x",
                           on_window=lambda spec, r: order.append((spec.kind + (spec.match or ""), r)))
    assert order == [("densetotal", 0), ("denseactive", 0), ("moe", 0),
                     ("densetotal", 1), ("denseactive", 1), ("moe", 1)]
    assert [r.spec for r in results] == list(pair.tasks)
    for r in results:
        assert r.status == "ok", r.error
        assert r.spec.repeats == 2 and len(r.windows) == 2
        assert r.energy_source == "fake-power-model" and all(w.energy_j and w.energy_j > 0 for w in r.windows)
        assert [(g.node, g.index, g.name) for g in r.gpus] == [("node-x", 1, "Fake TEST")]
        assert r.roofline is not None and r.roofline.time_s > 0
        assert r.started_at < r.finished_at


def test_a_failing_task_stops_alone_and_names_its_repeat() -> None:
    pair = tiny_pair()
    broken = replace(pair.tasks[0], model={**pair.tasks[0].model, "hidden_dim": 0})
    runs: list[str] = []
    results = run_pair([broken, pair.tasks[2]], on_window=lambda spec, r: runs.append(spec.task_id))
    assert runs.count(broken.task_id) == 1 and runs.count(pair.tasks[2].task_id) == 2
    assert results[0].status == "failed" and results[0].error.startswith("repeat 1/2: ")
    assert results[0].energy_source is None
    assert results[1].status == "ok" and len(results[1].windows) == 2


def _ok(task_spec, gpu: int, energy: float | None) -> TaskResult:  # type: ignore[no-untyped-def]
    return TaskResult(spec=task_spec, status="ok", gpus=(GpuRecord("n", gpu, f"GPU-{gpu}", "Fake"),),
                      windows=(Window(inferences=100, duration_s=1.0, energy_j=energy, avg_power_w=energy),),
                      energy_source="fake-power-model", idle_power_w=50.0)


def test_gang_ranks_merge_into_rank_zero() -> None:
    pair = tiny_pair("expert_parallel: 2\n")
    assert [t.kind for t in rank_specs(pair.tasks, 1)] == ["moe"]
    rank0 = [_ok(t, 0, 10.0) for t in pair.tasks]
    merged = merge_ranks([rank0, [_ok(pair.moe, 1, 7.0)]])
    moe = merged[-1]
    assert [g.index for g in moe.gpus] == [0, 1] and moe.windows[0].energy_j == 17.0
    assert moe.windows[0].inferences == 100 and moe.idle_power_w == 100.0
    assert merged[:-1] == rank0[:-1]
    lacking = merge_ranks([rank0, [_ok(pair.moe, 1, None)]])[-1]
    assert lacking.windows[0].energy_j is None and lacking.energy_source is None
    assert lacking.energy_unavailable_reason


def test_rank_env_is_torchrun_style() -> None:
    env = rank_env(2, 3, ["a", "b", "b"], "10.0.0.1", 29999)
    assert env == {"RANK": "2", "WORLD_SIZE": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                   "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29999"}


def inventory(*nodes: tuple[float, float, str | None]) -> Inventory:
    return Inventory(tuple(NodeInfo(f"id{i}", f"n{i}", "127.0.0.1", cpus, gpus, accel)
                           for i, (cpus, gpus, accel) in enumerate(nodes)))


def test_pairs_ask_for_gpus_on_gpu_clusters_and_cpus_elsewhere() -> None:
    pair = tiny_pair()
    assert pair_resources(pair, 4, 1.0).bundle() == {"CPU": 1.0, "GPU": 1.0}
    assert pair_resources(pair, 0, 1.0).bundle() == {"CPU": 1.0}
    accel = tiny_pair("accelerator_type: H100\n")
    assert pair_resources(accel, 4, 0.5).bundle() == {"CPU": 0.5, "GPU": 1.0, "accelerator_type:H100": 0.001}
    assert parallel_slots(inventory((4, 2, "A"), (1, 2, "A")), True, 1.0) == 3
    assert parallel_slots(inventory((4, 0, None)), False, 1.0) == 4


def test_infeasible_pairs_are_refused_before_anything_runs() -> None:
    gang = tiny_pair("expert_parallel: 4\n")
    two_by_two = inventory((8, 2, "A"), (8, 2, "A"))
    with pytest.raises(ClusterError, match="STRICT_PACK"):
        check_feasible([gang], two_by_two, 1.0)
    check_feasible([tiny_pair("expert_parallel: 4\nplacement_strategy: PACK\n")], two_by_two, 1.0)
    with pytest.raises(ClusterError, match="accelerator_type 'B'"):
        check_feasible([tiny_pair("accelerator_type: B\n")], two_by_two, 1.0)
    cuda = tiny_pair().tasks
    with pytest.raises(ClusterError, match="no GPU"):
        check_feasible([replace(tiny_pair(), tasks=tuple(replace(t, device="cuda") for t in cuda))],
                       inventory((8, 0, None)), 1.0)
