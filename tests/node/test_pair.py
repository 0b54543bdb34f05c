"""What a pair does on its node (real runner, CPU, fake GPUs), and the pure scheduling rules."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from moecluster.devices import FakeDevices
from moecluster.measure.meters.idle import IdleCache, SettlePolicy
from moecluster.measure.meters.peaks import GemmCase, PeakCache, PeakPlan, StreamCase
from moecluster.spec.records import TaskResult, TaskSpec, Window
from moecluster.head.schedule.cluster import ClusterError, Inventory, NodeInfo
from moecluster.measure.pair import merge_repeats, round_order, run_pair
from moecluster.head.schedule.resources import check_feasible, pair_resources, parallel_slots
from moecluster.head.sweep import expand, parse_sweep

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
replicates: 1
device: cpu
meter: fake
"""


def tiny_pair(extra: str = ""):  # type: ignore[no-untyped-def]
    (pair,) = expand(parse_sweep(TINY + extra)).pairs
    return pair


def quick() -> dict[str, Any]:
    """run_pair's caches for tests: a tiny peak plan, a short idle span, nothing written to disk."""
    plan = PeakPlan(gemms=(GemmCase(32, 32, 32),), streams=(StreamCase(1),), samples=1, sample_s=0.001,
                    min_calls=1, max_call_s=10.0, warmup_s=0.0)
    return dict(peaks=PeakCache(plan=plan), idle_cache=IdleCache(policy=SettlePolicy(span_s=0.2, block_s=0.1)))


def name(spec: TaskSpec) -> str:
    return spec.kind + (spec.match or "")


def test_run_pair_counterbalances_and_merges_repeats_on_fake_gpus() -> None:
    pair = tiny_pair()
    order: list[tuple[str, int]] = []
    with FakeDevices(2, node="node-x", name="Fake TEST") as devices:
        results = run_pair(pair.tasks, devices=devices, gpu_indices=[1], node="node-x",
                           on_window=lambda spec, r: order.append((name(spec), r)), **quick())
    assert order == [("densetotal", 0), ("denseactive", 0), ("moe", 0),
                     ("moe", 1), ("denseactive", 1), ("densetotal", 1)]
    assert [r.spec for r in results] == list(pair.tasks)
    assert sorted(w.position for r in results for w in r.windows) == list(range(6))
    assert [[w.position for w in r.windows] for r in results] == [[0, 5], [1, 4], [2, 3]]
    (idle,) = {r.idle_power_w for r in results}  # one settled idle for the GPU, shared by every task of the run
    assert idle == pytest.approx(60.0, rel=1e-3)
    for r in results:
        assert r.status == "ok", r.error
        assert r.spec.repeats == 2 and len(r.windows) == 2
        assert r.energy_source == "fake-power-model" and all(w.energy_j and w.energy_j > 0 for w in r.windows)
        assert all(w.aligned for w in r.windows) and set(r.drift) == {"inferences_per_s", "inferences_per_j"}
        assert r.idle_settle_s == 0.0 and "settled after 0.0 s" in r.idle_note
        assert [(g.node, g.index, g.name) for g in r.gpus] == [("node-x", 1, "Fake TEST")]
        assert r.roofline is not None and r.roofline.time_s > 0
        assert r.started_at < r.finished_at
    assert [r.idle_note.startswith("cached for run local") for r in results] == [False, True, True]


def test_reverse_order_starts_the_pair_from_its_last_task() -> None:
    pair = tiny_pair()
    specs = [replace(t, reverse_order=True, repeats=1) for t in (pair.tasks[0], pair.tasks[2])]
    order: list[str] = []
    results = run_pair(specs, on_window=lambda spec, r: order.append(name(spec)), **quick())
    assert order == ["moe", "densetotal"]
    assert [r.windows[0].position for r in results] == [1, 0] and all(r.drift == {} for r in results)


def test_rounds_are_palindromes_per_pair_of_rounds() -> None:
    seq = [i for r in range(4) for i in round_order(3, r)]
    assert seq == [0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0]
    assert [i for r in range(2) for i in round_order(2, r, reverse=True)] == [1, 0, 0, 1]


def test_a_failing_task_stops_alone_and_names_its_repeat() -> None:
    pair = tiny_pair()
    broken = replace(pair.tasks[0], model={**pair.tasks[0].model, "hidden_dim": 0})
    runs: list[str] = []
    results = run_pair([broken, pair.tasks[2]], on_window=lambda spec, r: runs.append(spec.task_id),
                       **quick())
    assert runs.count(broken.task_id) == 1 and runs.count(pair.tasks[2].task_id) == 2
    assert results[0].status == "failed" and results[0].error.startswith("repeat 1/2: ")
    assert results[0].energy_source is None
    assert results[1].status == "ok" and len(results[1].windows) == 2


def _repeat(task_spec: TaskSpec, position: int, rate: float, **kw: Any) -> TaskResult:
    window = Window(inferences=int(100 * rate), duration_s=1.0, energy_j=10.0, position=position)
    return TaskResult(spec=task_spec, status="ok", windows=(window,), energy_source="fake-power-model", **kw)


def test_merge_repeats_keeps_form_idle_drift_and_warnings_readable() -> None:
    task = tiny_pair().moe
    idle = dict(idle_power_w=61.0, idle_settle_s=3.0)
    runs = [
        _repeat(task, 0, 1.0, form={"kernel": "bmm", "candidates": "bmm 1.0 ms"}, idle_note="settled after 3.0 s",
                warnings=("idle power did not settle", "energy resolution coarse"), **idle),
        _repeat(task, 3, 1.1, form={"kernel": "bmm", "candidates": "bmm 1.1 ms"},
                idle_note="cached for run r: settled after 3.0 s", warnings=("idle power did not settle",), **idle),
    ]
    merged = merge_repeats(task, runs)
    assert [w.position for w in merged.windows] == [0, 3]
    assert merged.form == {"kernel": "bmm", "candidates": "bmm 1.0 ms | bmm 1.1 ms"}
    assert merged.idle_power_w == 61.0 and merged.idle_settle_s == 3.0 and merged.idle_note == "settled after 3.0 s"
    assert merged.drift == pytest.approx({"inferences_per_s": 0.1, "inferences_per_j": 0.1})
    assert merged.warnings == ("idle power did not settle", "repeat 1/2: energy resolution coarse")


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
