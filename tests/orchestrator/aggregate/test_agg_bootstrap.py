"""The percentile bootstrap of a crossing: reproducible, open ends, and when it is undetermined."""
from __future__ import annotations

import math

from scipy.stats import norm

from moecluster.orchestrator.aggregate.bootstrap import Replicate, crossing_interval

XS = [7.0, 8.0]  # 10 M and 100 M parameters


def _noisy(log_centre: float, sd: float, n: int = 12) -> tuple[float, ...]:
    """`n` positive values whose logs sit at evenly spaced normal quantiles around `log_centre`."""
    return tuple(math.exp(log_centre + sd * float(norm.ppf((i + 0.5) / n))) for i in range(n))


FLAT = (1.0,) * 12


def test_a_clear_crossing_gets_a_closed_interval_around_it() -> None:
    sizes = [[Replicate(_noisy(-0.5, 0.05), FLAT)], [Replicate(_noisy(0.5, 0.05), FLAT)]]
    ci = crossing_interval(XS, sizes)
    assert ci.undetermined is None and ci.without_crossing == 0
    assert ci.lo is not None and ci.hi is not None and ci.lo < 10**7.5 < ci.hi
    assert crossing_interval(XS, sizes) == ci
    assert crossing_interval(XS, sizes, seed=1) != ci  # the RNG seed is what makes it reproducible


def test_seeds_are_redrawn_when_a_size_has_several() -> None:
    one = [[Replicate(_noisy(-0.5, 0.05), FLAT)], [Replicate(_noisy(0.5, 0.05), FLAT)]]
    two = [[Replicate(_noisy(-0.8, 0.05), FLAT), Replicate(_noisy(-0.2, 0.05), FLAT)], one[1]]
    a, b = crossing_interval(XS, one), crossing_interval(XS, two)
    assert a.lo is not None and a.hi is not None and b.lo is not None and b.hi is not None
    assert b.hi / b.lo > a.hi / a.lo


def test_an_interval_spanning_the_sweep_is_undetermined() -> None:
    # resampled mean logs: sd about 0.4 / sqrt(12) = 0.115, so MoE is ahead at the small size, and dense at the
    # large one, in about 20 % of the resamples each: both open ends exceed 2.5 %, while curves that fall
    # behind stay near 0.2 × 0.2 = 4 %, below the 5 % that makes an interval undetermined by itself
    sizes = [[Replicate(_noisy(-0.1, 0.4), FLAT)], [Replicate(_noisy(0.1, 0.4), FLAT)]]
    ci = crossing_interval(XS, sizes)
    assert ci.below > 50 and ci.above > 50 and ci.neither <= 100
    assert ci.lo is None and ci.hi is None
    assert ci.undetermined is not None and ci.undetermined.startswith("the interval spans the swept range")


def test_too_many_curves_without_an_upward_crossing_are_counted() -> None:
    sizes = [[Replicate(_noisy(0.0, 0.5), FLAT)], [Replicate(_noisy(0.0, 0.5), FLAT)]]
    ci = crossing_interval(XS, sizes)
    assert ci.neither > 100
    assert ci.undetermined == f"{ci.neither:,} of 2,000 resamples have no upward crossing"
