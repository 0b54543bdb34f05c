"""`run_gang_rank` end to end on gloo gangs: fake GPUs (N=2), the CPU (N=4), and a rank that fails."""
from __future__ import annotations

from typing import Any

import pytest
import torch.distributed as dist
from gang_harness import run_ranks

from moecluster.measure.meters.idle import IdleCache, SettlePolicy
from moecluster.measure.meters.peaks import GemmCase, PeakCache, PeakPlan, StreamCase
from moecluster.workloads.mlp.expert_parallel import PHASES, ExpertParallelMoE
from moecluster.measure.parallel.gang import run_gang_rank
from moecluster.measure.parallel.group import GangContext
from moecluster.spec.records import TaskResult, TaskSpec
from moecluster.spec.mlp.shapes import MoEShape, match_dense

MOE = MoEShape(num_experts=4, expert_hidden_dim=16, expert_num_layers=2, top_k=2, input_dim=32, output_dim=10)
TINY_PEAKS = PeakPlan(gemms=(GemmCase(32, 32, 32),), streams=(StreamCase(1),), samples=1, sample_s=0.001,
                      max_call_s=0.05, warmup_s=0.01)
QUICK_IDLE = SettlePolicy(tolerance=0.5, span_s=0.1, block_s=0.05, timeout_s=1.0)
BATCH = 16


def pair_specs(world: int, meter: str, repeats: int, twins: tuple[str, ...] = ("total",)) -> list[TaskSpec]:
    common: dict[str, Any] = dict(pair_id="p1", device="cpu", duration_s=0.2, warmup_s=0.02, repeats=repeats,
                                  batch_size=BATCH, meter=meter, cuda_graphs=False)
    dense = [TaskSpec(task_id=f"dense-{m}", kind="dense", impl="dense", match=m,
                      model=match_dense(MOE, m).as_model(), **common) for m in twins]
    moe = TaskSpec(task_id="moe", kind="moe", impl="grouped", model=MOE.as_model(), expert_parallel=world, **common)
    return [*dense, moe]


def _gang(ctx: GangContext, specs: list[TaskSpec], fail_on: tuple[int, str, int] | None = None
          ) -> tuple[list[TaskResult], list[tuple[str, int]], bool]:
    """Run the gang on this rank; (results, windows started as (task, repeat), process group still there)."""
    order: list[tuple[str, int]] = []

    def on_window(spec: TaskSpec, r: int) -> None:
        order.append((spec.task_id, r))
        if fail_on is not None and (ctx.rank, spec.task_id, r) == fail_on:
            raise RuntimeError(f"injected on rank {ctx.rank}")

    results = run_gang_rank(specs, ctx, node="node-x", peaks=PeakCache(plan=TINY_PEAKS),
                            idle_cache=IdleCache(policy=QUICK_IDLE), on_window=on_window)
    return results, order, dist.is_initialized()


def test_gang_of_two_on_fake_gpus_measures_the_pair_together() -> None:
    specs = pair_specs(2, "fake", repeats=2, twins=("total", "active"))
    per_rank = run_ranks(_gang, 2, specs, (1, "dense-active", 1))
    (results, order, alive), (others, order1, alive1) = per_rank
    assert others == [] and not alive and not alive1
    # counterbalanced, as the pair runner: A B C C B A on every rank
    expected = [("dense-total", 0), ("dense-active", 0), ("moe", 0),
                ("moe", 1), ("dense-active", 1), ("dense-total", 1)]
    assert order == expected and order1 == expected
    dense, failed, moe = results
    assert [r.spec.task_id for r in results] == ["dense-total", "dense-active", "moe"]
    assert failed.status == "failed" and failed.error == "repeat 2/2: rank 1: RuntimeError: injected on rank 1"
    assert {w.position for r in (dense, moe) for w in r.windows} == {0, 2, 3, 4}  # the failed one measured none
    for r in (dense, moe):
        assert r.status == "ok", r.error
        assert r.world_size == 2 and len(r.windows) == 2
        assert len({g.uuid for g in r.gpus}) == 2 and {g.node for g in r.gpus} == {"node-x"}
        assert r.energy_source == "fake-power-model" and r.energy_unavailable_reason is None
        for w in r.windows:
            assert w.inferences > 0 and w.inferences % BATCH == 0
            assert len(w.gpu_energy_j) == 2 and w.energy_j == pytest.approx(sum(w.gpu_energy_j))
            # two fake GPUs at full load (300 W) all through their windows; the gang's window is the longest
            assert w.avg_power_w == pytest.approx(2 * 300.0, rel=0.02)
            assert 0 < w.energy_j <= 2 * 300.0 * w.duration_s * 1.02
            assert w.max_power_w is None
        assert r.idle_power_w == pytest.approx(2 * 60.0, rel=1e-3)
        assert r.roofline is not None and "sum over 2 GPUs" in r.roofline.peak_source
    assert dense.phases == () and dense.alltoall == () and dense.form["parallel"].startswith("data over 2 ranks")
    assert moe.form["parallel"].startswith("expert over 2 ranks") and "graph" in moe.form
    assert [p.name for p in moe.phases] == list(PHASES)
    assert all(p.time_s > 0 and p.time_max_s >= p.time_s for p in moe.phases)
    assert moe.phases[1].bytes_sent > 0 and moe.phases[3].bytes_sent > 0
    dispatch, combine = moe.alltoall
    assert dispatch.bytes_per_rank == BATCH // 2 * 2 * 32 * 4 and combine.bytes_per_rank == BATCH // 2 * 2 * 10 * 4
    for p in moe.alltoall:
        assert p.algbw_bytes_per_s == pytest.approx(p.bytes_per_rank / p.time_s)
        assert p.busbw_bytes_per_s == pytest.approx(p.algbw_bytes_per_s / 2)
    assert dispatch.energy_j is not None and dispatch.energy_j > 0 and combine.energy_j is None
    assert sum(moe.expert_tokens) == BATCH * 2
    assert TaskResult.from_json(moe.to_json()) == moe


def test_gang_of_four_on_the_cpu_reports_energy_unavailable() -> None:
    specs = pair_specs(4, "auto", repeats=1)
    per_rank = run_ranks(_gang, 4, specs)
    results = per_rank[0][0]
    assert all(res == [] for res, _, _ in per_rank[1:]) and not any(alive for _, _, alive in per_rank)
    for r in results:
        assert r.status == "ok", r.error
        assert r.world_size == 4 and r.gpus == ()
        assert r.energy_source is None and "cpu" in (r.energy_unavailable_reason or "")
        assert all(w.energy_j is None and w.gpu_energy_j == () and w.inferences > 0 for w in r.windows)
    moe = results[-1]
    assert [p.name for p in moe.phases] == list(PHASES)
    assert len(moe.alltoall) == 2 and all(p.energy_j is None and p.time_s > 0 for p in moe.alltoall)


def _fail_mid_step(ctx: GangContext, specs: list[TaskSpec]) -> tuple[list[TaskResult], bool]:
    """Rank 1's experts raise inside a step: between the dispatch and the combine all-to-all."""
    if ctx.rank == 1:
        def broken(self: ExpertParallelMoE, *args: object) -> None:
            raise RuntimeError("injected inside a step")

        pytest.MonkeyPatch().setattr(ExpertParallelMoE, "_experts", broken)  # this process only: it ends with the test
    results = run_gang_rank(specs, ctx, node="node-x", peaks=PeakCache(plan=TINY_PEAKS),
                            idle_cache=IdleCache(policy=QUICK_IDLE))
    return results, dist.is_initialized()


def test_a_rank_failing_inside_a_step_fails_the_gang_naming_it() -> None:
    specs = pair_specs(2, "fake", repeats=1)
    (results, alive), (others, alive1) = run_ranks(_fail_mid_step, 2, specs)
    assert others == [] and not alive and not alive1
    dense, moe = results
    assert dense.status == "ok", dense.error  # measured before the MoE broke the gang
    assert moe.status == "failed" and moe.windows == ()
    assert moe.error is not None and moe.error.startswith("rank 1: RuntimeError: injected inside a step")
    assert moe.world_size == 2 and len(moe.gpus) == 2
