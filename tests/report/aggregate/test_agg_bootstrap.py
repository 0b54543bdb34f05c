"""The break-even's bootstrap: each size drawn from its own interval, reproducible, open ends, undetermined."""
from __future__ import annotations

import math

import pytest

from moecluster.report.aggregate.bootstrap import SizeRatio, crossing_interval
from moecluster.report.aggregate.stats import Estimate, replicate_ci, t_quantile

XS = [7.0, 8.0]  # 10 M and 100 M parameters


def _size(log_ratio: float, se: float, df: float = 2.0) -> SizeRatio:
    return SizeRatio(log_ratio, se, df)


def test_a_clear_crossing_gets_a_closed_interval_around_it() -> None:
    sizes = [_size(-0.5, 0.02, 10.0), _size(0.5, 0.02, 10.0)]
    ci = crossing_interval(XS, sizes)
    assert ci.undetermined is None and ci.without_crossing == 0
    assert ci.lo is not None and ci.hi is not None and ci.lo < 10**7.5 < ci.hi
    assert crossing_interval(XS, sizes) == ci
    assert crossing_interval(XS, sizes, seed=1) != ci  # the RNG seed is what makes it reproducible


def test_the_interval_carries_each_sizes_own_interval_through() -> None:
    """One size known exactly, the other to ± t·se: the crossing's interval is where that size's interval
    ends move it, not narrower (three windows redrawn used to give less than their t-interval)."""
    se, df = 0.05, 20.0
    ci = crossing_interval(XS, [_size(-0.5, 0.0), _size(0.5, se, df)])
    half = t_quantile(df) * se
    # the crossing of a straight line in x from -0.5 at 7 to 0.5 ± half at 8
    expect_lo, expect_hi = 7 + 0.5 / (1.0 + half), 7 + 0.5 / (1.0 - half)
    assert ci.lo is not None and ci.hi is not None
    assert math.log10(ci.lo) == pytest.approx(expect_lo, abs=0.01)
    assert math.log10(ci.hi) == pytest.approx(expect_hi, abs=0.01)


def test_replicates_that_disagree_widen_it_however_tight_their_windows() -> None:
    tight = Estimate(math.exp(0.5), None, None, 3, 0.001, 4.0, True)
    agree = replicate_ci([tight, tight.scale(1.001), tight.scale(0.999)])
    disagree = replicate_ci([tight, tight.scale(1.1), tight.scale(0.9)])
    low = SizeRatio(-0.5, 0.01, 2.0)
    a = crossing_interval(XS, [low, SizeRatio.of(agree) or low])
    b = crossing_interval(XS, [low, SizeRatio.of(disagree) or low])
    assert a.lo is not None and a.hi is not None and b.lo is not None and b.hi is not None
    assert b.hi / b.lo > 1.5 * (a.hi / a.lo)


def test_a_size_without_an_interval_has_nothing_to_draw_from() -> None:
    assert SizeRatio.of(Estimate(1.2, None, None, 1, log_scale=True)) is None
    assert SizeRatio.of(Estimate(1.2, 1.1, 1.3, 3, 0.04, 2.0, True)) == SizeRatio(math.log(1.2), 0.04, 2.0)


def test_an_interval_spanning_the_sweep_is_undetermined() -> None:
    # each size's draws: sd about 0.12, so MoE is ahead at the small size, and dense at the large one, in
    # about 20 % of the resamples each: both open ends exceed 2.5 %, while curves that fall behind stay near
    # 0.2 × 0.2 = 4 %, below the 5 % that makes an interval undetermined by itself
    sizes = [_size(-0.1, 0.115, 60.0), _size(0.1, 0.115, 60.0)]
    ci = crossing_interval(XS, sizes)
    assert ci.below > 50 and ci.above > 50 and ci.neither <= 100
    assert ci.lo is None and ci.hi is None
    assert ci.undetermined is not None and ci.undetermined.startswith("the interval spans the swept range")
    assert ci.holds(10**7.5) is None


def test_too_many_curves_without_an_upward_crossing_are_counted() -> None:
    sizes = [_size(0.0, 0.15, 60.0), _size(0.0, 0.15, 60.0)]
    ci = crossing_interval(XS, sizes)
    assert ci.neither > 100
    assert ci.undetermined == f"{ci.neither:,} of 2,000 resamples have no upward crossing"


def test_holds_reads_open_ends_as_reaching_past_the_sweep() -> None:
    ci = crossing_interval(XS, [_size(-0.02, 0.02, 2.0), _size(0.5, 0.02, 2.0)])
    assert ci.lo is None and ci.hi is not None
    assert ci.holds(1e6) is True and ci.holds(ci.hi * 1.01) is False
