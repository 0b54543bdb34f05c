"""Intervals: the printed t table, log-scale t intervals of positive figures, ratios, and replicates pooled."""
from __future__ import annotations

import math
import random

import pytest

from moecluster.report.aggregate.stats import Estimate, log_mean_ci, mean_ci, ratio_ci, replicate_ci, \
    t_quantile

# Two-sided 95 % critical values of Student's t, from the printed table.
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 9: 2.262, 10: 2.228, 30: 2.042, 120: 1.980}


@pytest.mark.parametrize("df,expected", sorted(T_TABLE.items()))
def test_t_quantile_matches_the_table(df: int, expected: float) -> None:
    assert t_quantile(df) == pytest.approx(expected, abs=1e-3)


def test_mean_ci_by_hand() -> None:
    e = mean_ci([1.0, 2.0, 3.0])
    assert e is not None
    half = 4.303 * 1.0 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(n), s = 1
    assert e.mean == 2.0 and e.n == 3 and not e.log_scale
    assert e.lo == pytest.approx(2.0 - half, abs=1e-3) and e.hi == pytest.approx(2.0 + half, abs=1e-3)


def test_log_mean_ci_by_hand_is_a_geometric_mean_with_a_positive_interval() -> None:
    e = log_mean_ci([100.0, 400.0])  # logs ln 100, ln 400: mean ln 200, s = ln 4 / sqrt 2, se = ln 4 / 2
    assert e is not None and e.log_scale and e.n == 2
    assert e.mean == pytest.approx(200.0)
    half = t_quantile(1) * math.log(4.0) / 2.0
    assert e.lo == pytest.approx(200.0 * math.exp(-half), rel=1e-4)
    assert e.hi == pytest.approx(200.0 * math.exp(half), rel=1e-4)
    assert e.lo is not None and e.lo > 0  # the arithmetic interval of these two windows goes below zero
    arithmetic = mean_ci([100.0, 400.0])
    assert arithmetic is not None and arithmetic.lo is not None and arithmetic.lo < 0


def test_log_interval_reads_the_same_for_reciprocals() -> None:
    per_j = [95.0, 97.5, 96.1, 94.2]
    a, b = log_mean_ci(per_j), log_mean_ci([1 / v for v in per_j])
    assert a is not None and b is not None and b.lo is not None and b.hi is not None
    assert a.mean == pytest.approx(1 / b.mean)
    assert a.lo == pytest.approx(1 / b.hi) and a.hi == pytest.approx(1 / b.lo)


def test_single_value_has_no_interval_and_empty_is_none() -> None:
    assert mean_ci([5.0]) == Estimate(5.0, None, None, 1)
    e = log_mean_ci([5.0])
    assert e is not None and e.mean == pytest.approx(5.0) and not e.has_ci and e.crosses_one is None
    assert mean_ci([]) is None and log_mean_ci([]) is None
    with pytest.raises(ValueError, match="positive"):
        log_mean_ci([1.0, 0.0])


def test_log_mean_ci_covers_the_true_geometric_mean_95_percent_of_the_time() -> None:
    rng = random.Random(7)
    trials, hits = 2000, 0
    for _ in range(trials):
        e = log_mean_ci([math.exp(rng.gauss(math.log(10.0), 0.2)) for _ in range(4)])
        assert e is not None and e.lo is not None and e.hi is not None
        hits += e.lo <= 10.0 <= e.hi
    assert 0.93 <= hits / trials <= 0.97


def test_ratio_ci_is_reciprocal_and_positive() -> None:
    a, b = log_mean_ci([10.0, 11.0, 9.5, 10.4]), log_mean_ci([5.0, 5.5, 4.9])
    assert a is not None and b is not None
    r, inv = ratio_ci(a, b), ratio_ci(b, a)
    assert r.mean == pytest.approx(a.mean / b.mean)
    assert r.lo is not None and r.hi is not None and inv.lo is not None and inv.hi is not None
    assert 0 < r.lo < r.mean < r.hi
    assert r.lo == pytest.approx(1 / inv.hi) and r.hi == pytest.approx(1 / inv.lo)
    assert r.crosses_one is False


def test_ratio_is_welch_t_on_the_log_scale() -> None:
    a, b = log_mean_ci([10.0, 11.0, 9.5, 10.4]), log_mean_ci([5.0, 5.5, 4.9])
    assert a is not None and b is not None and a.se is not None and b.se is not None
    va, vb = a.se**2, b.se**2
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 2)
    r = ratio_ci(a, b)
    assert r.df == pytest.approx(df)
    assert r.hi == pytest.approx(a.mean / b.mean * math.exp(t_quantile(df) * math.sqrt(va + vb)))


def test_ratio_without_repeats_has_no_interval() -> None:
    a, b = log_mean_ci([10.0, 11.0]), log_mean_ci([5.0])
    assert a is not None and b is not None
    r = ratio_ci(a, b)
    assert r.mean == pytest.approx(a.mean / 5.0) and r.lo is None and r.hi is None


def test_ratio_ci_coverage() -> None:
    """Ratios of noisy positive figures: the interval holds the true ratio ~95 % of the time."""
    rng = random.Random(11)
    true_a, true_b, trials, hits = 120.0, 100.0, 2000, 0
    for _ in range(trials):
        a = log_mean_ci([true_a * math.exp(rng.gauss(0.0, 0.05)) for _ in range(5)])
        b = log_mean_ci([true_b * math.exp(rng.gauss(0.0, 0.03)) for _ in range(3)])
        assert a is not None and b is not None
        r = ratio_ci(a, b)
        assert r.lo is not None and r.hi is not None
        hits += r.lo <= true_a / true_b <= r.hi
    assert 0.92 <= hits / trials <= 0.98


def test_ratio_of_equal_figures_crosses_one() -> None:
    a, b = log_mean_ci([100.0, 104.0, 97.0]), log_mean_ci([101.0, 99.0, 103.0])
    assert a is not None and b is not None
    assert ratio_ci(a, b).crosses_one is True


def test_ratio_needs_positive_means() -> None:
    with pytest.raises(ValueError, match="positive"):
        ratio_ci(Estimate(0.0, None, None, 1), Estimate(1.0, None, None, 1))


def test_seeds_that_disagree_widen_the_pooled_interval() -> None:
    """The issue's example: seeds at 0.80 [0.79, 0.81] and 1.20 [1.19, 1.21] once pooled to 0.98 [0.972, 0.988]."""
    low = Estimate(0.80, 0.79, 0.81, 3, 0.005, 2.0, True)
    high = Estimate(1.20, 1.19, 1.21, 3, 0.004, 2.0, True)
    pooled = replicate_ci([low, high])
    assert pooled.mean == pytest.approx(math.sqrt(0.80 * 1.20))
    assert pooled.n == 2 and pooled.df == 1.0
    half = t_quantile(1) * abs(math.log(1.20) - math.log(0.80)) / 2  # t(1) * s / sqrt(2), s = |difference| / sqrt(2)
    assert pooled.lo == pytest.approx(pooled.mean * math.exp(-half), rel=1e-4)
    assert pooled.lo is not None and pooled.hi is not None and pooled.lo < 0.80 and pooled.hi > 1.20
    assert pooled.crosses_one is True
    assert replicate_ci([low]) is low


def test_scale_keeps_the_log_standard_error() -> None:
    e = log_mean_ci([2.0, 2.2, 1.9])
    assert e is not None and e.lo is not None
    s = e.scale(1e-6)
    assert s.mean == pytest.approx(e.mean * 1e-6) and s.lo == pytest.approx(e.lo * 1e-6) and s.se == e.se
    with pytest.raises(ValueError, match="positive"):
        e.scale(0.0)
