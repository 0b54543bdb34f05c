"""Break-even interpolation on sweeps with known values: seed 001's crossover, and sweeps without one."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest

import moecluster_synthetic as syn
from moecluster.orchestrator.aggregate import aggregate, all_task_stats, break_evens, pair_ratios


def _bes(results, metric="inferences_per_j"):  # type: ignore[no-untyped-def]
    ratios, _ = pair_ratios(all_task_stats(results))
    return break_evens(ratios, metric)


def test_seed_001_crossover_interpolated_by_hand() -> None:
    (be,) = _bes(syn.seed_001_sweep())
    # By hand: ratio 265.32/337.49 = 0.7862 at medium (63,418,800 params, log10 7.8022) and
    # 95.35/57.37 = 1.6620 at large (368,287,260 params, log10 8.5662); ln r crosses zero at
    # 7.8022 + 0.2405 * (8.5662 - 7.8022) / (0.5080 + 0.2405) = 8.0477, i.e. 111.6 M parameters.
    assert be.params == pytest.approx(111.6e6, rel=1e-3)
    x_m, x_l = math.log10(63_418_800), math.log10(368_287_260)
    l_m, l_l = math.log(265.32 / 337.49), math.log(95.35 / 57.37)
    assert math.log10(be.params) == pytest.approx(x_m - l_m * (x_l - x_m) / (l_l - l_m), abs=1e-9)
    # the interval brackets it, inside the two sizes that bracket the crossing
    assert be.params_lo is not None and be.params_hi is not None
    assert 63_418_800 < be.params_lo < be.params < be.params_hi < 368_287_260
    assert [c.direction for c in be.crossings] == ["up"]
    assert be.verdict.startswith("MoE overtakes dense at 112M parameters (95 % CI")
    assert [p.total_params for p in be.points] == [2_687_192, 63_418_800, 368_287_260, 2_789_237_600]


def test_interval_edges_are_where_the_ratio_bounds_cross_one() -> None:
    (be,) = _bes(syn.seed_001_sweep())
    by_size = {p.total_params: p.ratio for p in be.points}
    m, l_ = by_size[63_418_800], by_size[368_287_260]
    x_m, x_l = math.log10(63_418_800), math.log10(368_287_260)

    def cross(a: float, b: float) -> float:
        return 10 ** (x_m - math.log(a) * (x_l - x_m) / (math.log(b) - math.log(a)))

    assert be.params_lo == pytest.approx(cross(m.hi, l_.hi))  # type: ignore[arg-type]
    assert be.params_hi == pytest.approx(cross(m.lo, l_.lo))  # type: ignore[arg-type]


def test_sweep_without_crossover() -> None:
    (be,) = _bes(syn.no_crossover_sweep())
    assert be.params is None and be.params_lo is None and be.params_hi is None and not be.crossings
    assert be.verdict.startswith("no crossover: dense ahead over the whole sweep")


def test_moe_ahead_everywhere_and_falling_behind() -> None:
    (ahead,) = _bes(syn.no_crossover_sweep(ratios=(1.5, 1.8, 2.0, 3.0)))
    assert ahead.params is None and "MoE ahead over the whole sweep" in ahead.verdict
    (behind,) = _bes(syn.no_crossover_sweep(ratios=(1.5, 1.2, 0.8, 0.5)))
    assert behind.params is None and [c.direction for c in behind.crossings] == ["down"]
    assert "falls behind" in behind.verdict


def test_series_are_split_by_implementation_and_dtype() -> None:
    results = syn.seed_001_sweep("sorted") + syn.no_crossover_sweep(impl="naive")
    results += [r for r in syn.seed_001_sweep("sorted", dtype="bfloat16")]
    bes = {(b.key.impl, b.key.dtype): b for b in _bes(results)}
    assert set(bes) == {("sorted", "float32"), ("naive", "float32"), ("sorted", "bfloat16")}
    assert bes[("naive", "float32")].params is None
    assert bes[("sorted", "bfloat16")].params == pytest.approx(bes[("sorted", "float32")].params)


def test_a_single_size_is_not_a_sweep_and_single_windows_have_no_ci() -> None:
    assert _bes(syn.preset_pair("large", 95.35, 57.37)) == []
    results = []
    for i, (name, (m, d)) in enumerate(syn.SEED_001_EFF.items()):
        results += syn.preset_pair(name, m, d, spread=(0.0,), started_at=syn.T0 + 100 * i)
    (be,) = _bes(results)
    assert be.params == pytest.approx(111.6e6, rel=1e-3)
    assert be.params_lo is None and be.params_hi is None and "no CI" in be.verdict


def test_pairs_at_one_size_are_pooled() -> None:
    results = syn.seed_001_sweep()
    extra = syn.preset_pair("large", 95.35 * 1.1, 57.37, started_at=syn.T0 + 900)
    extra = [replace(r, spec=replace(r.spec, pair_id="large-bis", task_id=r.spec.task_id + "-bis")) for r in extra]
    (be,) = _bes(results + extra)
    large = next(p for p in be.points if p.total_params == 368_287_260)
    assert large.ratio.mean == pytest.approx(math.sqrt((95.35 / 57.37) * (95.35 * 1.1 / 57.37)))
    assert len(large.pair_ids) == 2


def test_above_idle_break_even_uses_idle_subtracted_energy() -> None:
    agg = aggregate(syn.seed_001_sweep())
    (total,), (above,) = agg.break_evens, agg.break_evens_above_idle
    assert above.metric == "inferences_per_j_above_idle" and above.params is not None
    assert above.params != pytest.approx(total.params)
