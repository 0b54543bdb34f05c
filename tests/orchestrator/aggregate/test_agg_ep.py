"""Expert-parallel costs against the same MoE on one GPU."""
from __future__ import annotations

import pytest

import moecluster_synthetic as syn
from moecluster.agents.workloads.mlp.shapes import PRESETS
from moecluster.orchestrator.aggregate import all_task_stats, ep_points


def _moe(degree: int, rate: float, eff: float, impl: str = "sorted"):  # type: ignore[no-untyped-def]
    shape = PRESETS["large"]
    p = shape.params()
    return syn.task(f"ep{degree}-{impl}", f"large-ep{degree}-{impl}", "moe", rate=rate, eff=eff, total=p.total,
                    active=p.active_per_token, impl=impl, preset="large", model=shape.as_model(),
                    expert_parallel=degree, n_gpus=degree)


def test_speedup_scaling_loss_and_energy_ratio() -> None:
    stats = all_task_stats([_moe(1, 1000.0, 10.0), _moe(2, 1600.0, 8.0), _moe(4, 2400.0, 6.0)])
    points = {p.degree: p for p in ep_points(stats)}
    assert sorted(points) == [2, 4]
    two, four = points[2], points[4]
    assert two.baseline is not None and two.baseline.task_id == "ep1-sorted"
    assert two.speedup is not None and four.speedup is not None
    assert two.speedup.mean == pytest.approx(1.6) and four.speedup.mean == pytest.approx(2.4)
    assert two.scaling_loss.mean == pytest.approx(1 - 1.6 / 2)  # type: ignore[union-attr]
    assert four.scaling_loss.mean == pytest.approx(1 - 2.4 / 4)  # type: ignore[union-attr]
    lo, hi = two.scaling_loss.lo, two.scaling_loss.hi  # type: ignore[union-attr]
    assert lo is not None and hi is not None and lo < 0.2 < hi
    assert two.energy_ratio is not None and four.energy_ratio is not None
    assert two.energy_ratio.mean == pytest.approx(0.8) and four.energy_ratio.mean == pytest.approx(0.6)


def test_no_ep_means_no_points_and_a_missing_baseline_is_kept() -> None:
    assert ep_points(all_task_stats([_moe(1, 1000.0, 10.0)])) == []
    (only,) = ep_points(all_task_stats([_moe(2, 1600.0, 8.0)]))
    assert only.baseline is None and only.speedup is None and only.degree == 2
