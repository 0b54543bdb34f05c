"""Expert-parallel costs: per configuration and degree, against the same MoE on one GPU, with the
communication measured in the gang's timed pass (and nothing where it was not measured)."""
from __future__ import annotations

from dataclasses import replace

import moecluster_synthetic as syn
import pytest

from moecluster.spec.records import AllToAllPoint, PhaseStat, TaskResult
from moecluster.spec.mlp.shapes import PRESETS
from moecluster.report.aggregate import all_task_stats, ep_points
from moecluster.report.aggregate.ep import comm_of, ep_left_out, raw_at

BATCH = 128


def _moe(degree: int, rate: float, eff: float, impl: str = "sorted", gang: bool = True) -> TaskResult:
    shape = PRESETS["large"]
    p = shape.params()
    result = syn.task(f"ep{degree}-{impl}", f"large-ep{degree}-{impl}", "moe", rate=rate, eff=eff, total=p.total,
                      active=p.active_per_token, impl=impl, preset="large", model=shape.as_model(),
                      expert_parallel=degree, n_gpus=degree, batch_size=BATCH)
    return replace(result, world_size=degree) if gang else result


def _window_j_per_step(r: TaskResult) -> float:
    return sum(w.energy_j or 0.0 for w in r.windows) / (sum(w.inferences for w in r.windows) / BATCH)


def _with_comm(r: TaskResult, dispatch_share: float | None, combine_share: float | None) -> TaskResult:
    """Phases route 1 ms, dispatch, experts 5 ms, combine 2 ms; each rank's dispatch sends 1 MB to the
    others (combine 100 kB) at half the bus bandwidth of the raw all-to-all measured at its size
    (10^9 B/s), whose energy per call is the given share of the window energy per step."""
    world = r.world_size
    step_j = _window_j_per_step(r)
    whole = world / (world - 1)  # a send buffer per byte that crosses to other ranks

    def point(crossing: float, share: float | None) -> AllToAllPoint:
        busbw = 1e9
        return AllToAllPoint(crossing * whole, crossing / busbw, busbw * whole, busbw,
                             energy_j=None if share is None else share * step_j)

    dispatch_s = 1e6 / (0.5 * 1e9)
    return replace(r, phases=(
        PhaseStat("route", 1e-3, 1e-3),
        PhaseStat("dispatch", dispatch_s, dispatch_s, bytes_sent=world * 1e6),
        PhaseStat("experts", 5e-3, 6e-3),
        PhaseStat("combine", 2e-3, 2e-3, bytes_sent=world * 1e5),
    ), alltoall=(point(1e6, dispatch_share), point(1e5, combine_share)))


def test_every_degree_against_degree_one_with_speedup_and_energy_ratio() -> None:
    stats = all_task_stats([_moe(1, 1000.0, 10.0), _moe(2, 1600.0, 8.0), _moe(4, 2400.0, 6.0)])
    points = {p.degree: p for p in ep_points(stats)}
    assert sorted(points) == [1, 2, 4]
    one, two, four = points[1], points[2], points[4]
    assert one.speedup is None and one.baseline is None and one.comm is None
    assert two.baseline is not None and two.baseline.task_id == "ep1-sorted"
    assert two.speedup is not None and four.speedup is not None
    assert two.speedup.mean == pytest.approx(1.6) and four.speedup.mean == pytest.approx(2.4)
    assert two.scaling_loss is not None and two.scaling_loss.mean == pytest.approx(1 - 1.6 / 2)
    assert two.energy_ratio is not None and four.energy_ratio is not None
    assert two.energy_ratio.mean == pytest.approx(0.8) and four.energy_ratio.mean == pytest.approx(0.6)


def test_no_ep_means_no_points_and_a_missing_baseline_is_kept() -> None:
    assert ep_points(all_task_stats([_moe(1, 1000.0, 10.0)])) == []
    (only,) = ep_points(all_task_stats([_moe(2, 1600.0, 8.0)]))
    assert only.baseline is None and only.speedup is None and only.energy_ratio is None and only.degree == 2


def test_communication_shares_and_dispatch_bandwidth_from_what_the_gang_measured() -> None:
    gang = _with_comm(_moe(2, 1600.0, 8.0), dispatch_share=0.25, combine_share=0.05)
    comm = comm_of(gang)
    assert comm is not None
    dispatch_s = gang.phases[1].time_s
    assert comm.time_share == pytest.approx((dispatch_s + 2e-3) / (1e-3 + dispatch_s + 5e-3 + 2e-3))
    assert comm.energy_share == pytest.approx(0.30) and comm.dispatch_energy_share == pytest.approx(0.25)
    assert comm.dispatch_bytes_per_rank == pytest.approx(1e6)
    assert comm.dispatch_bandwidth_fraction == pytest.approx(0.5)
    # busbw over busbw at the same bytes reads as raw all-to-all time over dispatch time (not its inverse)
    assert comm.dispatch_bandwidth_fraction == pytest.approx(gang.alltoall[0].time_s / dispatch_s)
    assert comm.bytes_per_token == pytest.approx(2 * (1e6 + 1e5) / BATCH)
    (point,) = [p for p in ep_points(all_task_stats([gang])) if p.degree == 2]
    assert point.comm == comm
    four = comm_of(_with_comm(_moe(4, 2400.0, 6.0), dispatch_share=0.25, combine_share=0.05))
    assert four is not None and four.dispatch_bandwidth_fraction == pytest.approx(0.5)


def test_an_unmeasured_combine_energy_leaves_the_share_out_and_the_dispatchs_part_as_a_bound() -> None:
    comm = comm_of(_with_comm(_moe(2, 1600.0, 8.0), dispatch_share=0.25, combine_share=None))
    assert comm is not None and comm.energy_share is None and comm.time_share is not None
    assert comm.dispatch_energy_share == pytest.approx(0.25)


def test_a_phases_own_energy_comes_before_its_raw_exchanges() -> None:
    gang = _with_comm(_moe(2, 1600.0, 8.0), dispatch_share=0.25, combine_share=None)
    step_j = _window_j_per_step(gang)
    combine = replace(gang.phases[3], energy_j=0.1 * step_j)
    comm = comm_of(replace(gang, phases=(*gang.phases[:3], combine)))
    assert comm is not None and comm.energy_share == pytest.approx(0.35)


def test_no_phases_no_communication_figure() -> None:
    assert comm_of(_moe(2, 1600.0, 8.0)) is None
    (point,) = ep_points(all_task_stats([_moe(2, 1600.0, 8.0)]))
    assert point.comm is None


def test_records_that_are_not_a_gangs_measurement_are_left_out() -> None:
    old = _moe(2, 1600.0, 8.0, gang=False)  # world size 1: each rank ran the whole MoE alone
    stats = all_task_stats([_moe(1, 1000.0, 10.0), old])
    assert ep_points(stats) == []
    assert [s.task_id for s in ep_left_out(stats)] == ["ep2-sorted"]


def test_the_raw_all_to_all_at_the_same_size_is_the_nearest_measured_within_a_factor() -> None:
    dispatch, combine = AllToAllPoint(2e6, 1e-3, 2e9, 1e9), AllToAllPoint(2e4, 1e-4, 2e8, 1e8)
    assert raw_at((combine, dispatch), 1.1e6, 2) == dispatch  # routing sent a little more than average
    assert raw_at((combine, dispatch), 0.9e4, 2) == combine
    assert raw_at((dispatch,), 1e5, 2) is None  # 20 x smaller: not measured at that size
    assert raw_at((dispatch,), 1e6, 1) is None and raw_at((), 1e6, 2) is None
