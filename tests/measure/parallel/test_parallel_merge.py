"""Per-rank readings into the gang's record: sums where every rank measured, reasons where one did not."""
from __future__ import annotations

from typing import Any

import pytest

from moecluster.measure.meters.energy import EnergyReading
from moecluster.measure.meters.idle import IdleReading
from moecluster.measure.parallel.merge import (RankWindow, energy_source, merge_idle, merge_phases, merge_window,
                                              sum_all, window_notes)
from moecluster.measure.parallel.phases import PhaseSample


def part(rank: int, energy_j: float | None, duration_s: float = 1.0, steps: int = 10, **kw: Any) -> RankWindow:
    reading = EnergyReading(duration_s=duration_s, energy_j=energy_j, source="src" if energy_j is not None else None,
                            unavailable_reason=None if energy_j is not None else "no counter",
                            avg_power_w=energy_j / duration_s if energy_j is not None else None,
                            max_power_w=400.0, **kw)
    return RankWindow(rank=rank, steps=steps, started_at=100.0 + rank, reading=reading)


def test_window_energy_is_the_sum_over_ranks_kept_per_gpu() -> None:
    parts = [part(0, 200.0, 1.0, energy_resolution_j=1.0, aligned=True),
             part(1, 300.0, 1.5, energy_resolution_j=2.0, aligned=True)]
    w = merge_window(parts, items_per_step=64, position=3)
    assert (w.inferences, w.duration_s, w.energy_j, w.gpu_energy_j) == (640, 1.5, 500.0, (200.0, 300.0))
    assert w.avg_power_w == pytest.approx(400.0) and w.max_power_w is None
    assert (w.energy_resolution_j, w.aligned, w.position, w.started_at) == (3.0, True, 3, 100.0)
    assert energy_source(parts) == ("src", None)


def test_a_rank_without_energy_makes_the_window_unavailable_naming_it() -> None:
    parts = [part(0, 200.0), part(1, None)]
    w = merge_window(parts, items_per_step=8)
    assert w.energy_j is None and w.gpu_energy_j == () and w.avg_power_w is None
    assert energy_source(parts) == (None, "rank 1: no counter")
    assert energy_source([part(0, None), part(1, None)]) == (None, "no counter")


def test_ranks_that_ran_different_steps_are_refused() -> None:
    with pytest.raises(ValueError, match="different step counts"):
        merge_window([part(0, 1.0, steps=10), part(1, 1.0, steps=11)], items_per_step=8)


def test_notes_name_their_rank_and_sums_need_every_value() -> None:
    assert window_notes([part(0, 1.0, note="edges not aligned"), part(1, 1.0)]) == ["rank 0: edges not aligned"]
    assert sum_all([1.0, 2.0]) == 3.0 and sum_all([1.0, None]) is None and sum_all([]) is None


def test_phases_are_mean_and_max_over_ranks_with_bytes_summed() -> None:
    ranks = [{"route": PhaseSample(1e-3, 0), "dispatch": PhaseSample(2e-3, 100)},
             {"route": PhaseSample(3e-3, 0), "dispatch": PhaseSample(4e-3, 50)}]
    route, dispatch = merge_phases(ranks, ("route", "dispatch", "combine"))
    assert (route.name, route.time_s, route.time_max_s, route.bytes_sent) == ("route", 2e-3, 3e-3, 0.0)
    assert (dispatch.time_s, dispatch.time_max_s, dispatch.bytes_sent) == (3e-3, 4e-3, 150.0)


def test_idle_is_summed_over_ranks_or_unavailable() -> None:
    a = IdleReading(power_w=60.0, settle_s=1.0, settled=True, note="settled", measured_at=5.0)
    b = IdleReading(power_w=70.0, settle_s=3.0, settled=False, note="did not settle", measured_at=4.0)
    both = merge_idle([a, b])
    assert both is not None
    assert (both.power_w, both.settle_s, both.settled, both.measured_at) == (130.0, 3.0, False, 4.0)
    assert both.note == "rank 0: settled; rank 1: did not settle"
    partial = merge_idle([a, None])
    assert partial is not None and partial.power_w is None and "rank 1: no idle reading" in partial.note
    assert merge_idle([None, None]) is None
