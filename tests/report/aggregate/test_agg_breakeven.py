"""Break-even on sweeps with known values: seed 001's crossover, its bootstrap interval, series and seeds."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import pytest

import moecluster_synthetic as syn
from moecluster.spec.records import TaskResult
from moecluster.report.aggregate import BreakEven, aggregate, all_task_stats, break_evens, pair_ratios
from moecluster.report.aggregate.bootstrap import METHOD
from moecluster.report.aggregate.breakeven import SEEDS_METHOD, WINDOWS_METHOD, Metric
from moecluster.report.aggregate.crossing import first_upward

SIZES = ("small", "medium", "large", "xxl")


def _bes(results: Sequence[TaskResult], metric: Metric = "inferences_per_j") -> list[BreakEven]:
    ratios, _ = pair_ratios(all_task_stats(results))
    return break_evens(ratios, metric)


def _sweep(ratios: Sequence[float], eff_spread: Sequence[float] = syn.EFF_SPREAD, **kw: object) -> list[TaskResult]:
    """One pair per preset with the given MoE/dense inferences/J ratios (dense at 100 inferences/J)."""
    out: list[TaskResult] = []
    for i, (name, r) in enumerate(zip(SIZES, ratios)):
        out += syn.preset_pair(name, 100.0 * r, 100.0, started_at=syn.T0 + 100 * i, eff_spread=eff_spread, **kw)
    return out


def test_seed_001_crossover_interpolated_by_hand() -> None:
    (be,) = _bes(syn.seed_001_sweep())
    # By hand: ratio 265.32/337.49 = 0.7862 at medium (63,418,800 params, log10 7.8022) and
    # 95.35/57.37 = 1.6620 at large (368,287,260 params, log10 8.5662); ln r crosses zero at
    # 7.8022 + 0.2405 * (8.5662 - 7.8022) / (0.5080 + 0.2405) = 8.0477, i.e. 111.6 M parameters.
    assert be.params == pytest.approx(111.6e6, rel=1e-3)
    x_m, x_l = math.log10(63_418_800), math.log10(368_287_260)
    l_m, l_l = math.log(265.32 / 337.49), math.log(95.35 / 57.37)
    assert math.log10(be.params) == pytest.approx(x_m - l_m * (x_l - x_m) / (l_l - l_m), abs=1e-9)
    assert [c.direction for c in be.crossings] == ["up"]
    assert be.verdict.startswith("MoE overtakes dense at 112M parameters (95 % CI")
    assert [p.total_params for p in be.points] == [2_687_192, 63_418_800, 368_287_260, 2_789_237_600]


def test_bootstrap_interval_holds_the_break_even_and_is_reproducible() -> None:
    (be,) = _bes(syn.seed_001_sweep())
    assert be.interval is not None and be.interval.undetermined is None
    assert be.interval.resamples == 2000 and be.interval.method == METHOD
    assert be.interval.without_crossing == 0
    assert be.params_lo is not None and be.params_hi is not None and be.params is not None
    assert 63_418_800 < be.params_lo < be.params < be.params_hi < 368_287_260
    (again,) = _bes(syn.seed_001_sweep())
    assert again.interval == be.interval  # a fixed RNG seed
    assert be.interval_text == f"{be.params_lo / 1e6:.3g}M – {be.params_hi / 1e6:.3g}M"


def test_bootstrap_interval_holds_its_point_where_pointwise_bounds_did_not() -> None:
    """A non-monotone sweep: the lower 95 % bound of the ratio crosses 1 long before the ratio itself does,
    so the former interval (first crossings of the pointwise bounds) ended below its own break-even."""
    (be,) = _bes(_sweep((1.2, 1.5, 0.9, 1.3), eff_spread=(-0.1, 0.1, 0.0)))
    assert be.params is not None and be.interval is not None
    xs = [math.log10(p.total_params) for p in be.points]
    at, _ = first_upward(xs, [[math.log(p.ratio.lo or math.nan) for p in be.points]])
    assert 10 ** float(at[0]) < be.params  # where the old method put the interval's upper end
    assert be.params_lo is None  # open: some resamples have MoE ahead at every size
    assert be.params_hi is not None and be.params < be.params_hi
    assert be.interval_text.startswith("≤ 2.69M – ")


def test_an_end_beyond_the_sweep_is_open() -> None:
    (be,) = _bes(_sweep((0.5, 0.95, 1.02, 1.04), eff_spread=(-0.05, 0.05, 0.0)))
    assert be.interval is not None and be.interval.above > 0.025 * be.interval.resamples
    assert be.params_hi is None and be.params_lo is not None
    assert be.interval_text.endswith("– > 2.79B")


def test_a_flat_noisy_sweep_is_undetermined_and_says_how_many_resamples() -> None:
    (be,) = _bes(_sweep((0.98, 1.01, 0.99, 1.02), eff_spread=(-0.1, 0.1, 0.0)))
    assert be.params is not None and be.interval is not None
    assert be.interval.undetermined is not None and be.params_lo is None and be.params_hi is None
    n = be.interval.neither
    assert n > 100
    assert be.interval_text == f"undetermined: {n:,} of 2,000 resamples have no upward crossing"
    assert f"(95 % CI undetermined: {n:,} of 2,000 resamples have no upward crossing); interpolated" in be.verdict


def test_sweep_without_crossover() -> None:
    (be,) = _bes(syn.no_crossover_sweep())
    assert be.params is None and be.interval is None and not be.crossings
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


def _with(results: Sequence[TaskResult], suffix: str, **spec: object) -> list[TaskResult]:
    return [replace(r, spec=replace(r.spec, task_id=r.spec.task_id + suffix, pair_id=r.spec.pair_id + suffix,
                                    **spec)) for r in results]


def test_every_axis_but_size_and_seed_splits_series() -> None:
    """Pairs that are not replicates (other epochs, load, Zipf exponent, GPU model) are never pooled."""
    base = syn.seed_001_sweep()
    results = base + _with(base, "-e15", train_epochs=15) + _with(base, "-z1", load="zipf", zipf_s=1.0)
    results += _with(base, "-z2", load="zipf", zipf_s=2.0)
    results += _with(syn.seed_001_sweep(gpu_name="NVIDIA H100 80GB HBM3"), "-h100")
    bes = _bes(results)
    keys = {(b.key.train_epochs, b.key.load, b.key.zipf_s, b.key.gpu) for b in bes}
    assert keys == {(0, "router", None, "Fake GPU"), (15, "router", None, "Fake GPU"), (0, "zipf", 1.0, "Fake GPU"),
                    (0, "zipf", 2.0, "Fake GPU"), (0, "router", None, "NVIDIA H100 80GB HBM3")}
    assert all(len(p.pair_ids) == 1 for b in bes for p in b.points)
    labels = {b.key.label() for b in bes}
    assert "sorted float32 EP1 b128 vs dense/total load=zipf zipf_s=2.0 on Fake GPU" in labels
    assert "sorted float32 EP1 b128 vs dense/total train_epochs=15 on Fake GPU" in labels


def test_seeds_are_pooled_by_a_t_interval_over_seeds() -> None:
    """Seeds that disagree (×0.8 and ×1.2 of seed 001's MoE efficiency) widen the interval at each size."""
    base = syn.seed_001_sweep()
    (one,) = _bes(base)
    (two,) = _bes(syn.reseeded(base, 1, eff_factor=0.8) + syn.reseeded(base, 2, eff_factor=1.2))
    large_one = next(p for p in one.points if p.total_params == 368_287_260)
    large = next(p for p in two.points if p.total_params == 368_287_260)
    assert large_one.method == WINDOWS_METHOD and large.method == SEEDS_METHOD
    assert large.seeds == (1, 2) and large.ratio.n == 2 and large.ratio.df == 1.0
    assert large.ratio.mean == pytest.approx(large_one.ratio.mean * math.sqrt(0.8 * 1.2), rel=1e-9)
    assert large.ratio.lo is not None and large.ratio.hi is not None
    assert large.ratio.lo < large_one.ratio.mean * 0.8 and large.ratio.hi > large_one.ratio.mean * 1.2
    # the break-even's bootstrap redraws the seeds too: a wider interval than one seed's
    assert two.interval is not None and one.interval is not None
    width = (two.params_hi or math.inf) / (two.params_lo or 1.0)
    assert width > (one.params_hi or 0.0) / (one.params_lo or 1.0)


def test_a_single_size_is_not_a_sweep_and_single_windows_have_no_ci() -> None:
    assert _bes(syn.preset_pair("large", 95.35, 57.37)) == []
    results = []
    for i, (name, (m, d)) in enumerate(syn.SEED_001_EFF.items()):
        results += syn.preset_pair(name, m, d, spread=(0.0,), started_at=syn.T0 + 100 * i)
    (be,) = _bes(results)
    assert be.params == pytest.approx(111.6e6, rel=1e-3)
    assert be.interval is None and be.params_lo is None and be.params_hi is None
    assert "(no CI: a size has a single window and a single seed); interpolated between" in be.verdict


def test_above_idle_break_even_uses_idle_subtracted_energy() -> None:
    agg = aggregate(syn.seed_001_sweep())
    (total,), (above,) = agg.break_evens, agg.break_evens_above_idle
    assert above.metric == "inferences_per_j_above_idle" and above.params is not None
    assert above.params != pytest.approx(total.params)
