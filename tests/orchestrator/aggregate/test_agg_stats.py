"""Student-t intervals and ratio intervals: against the printed t table and by simulated coverage."""
from __future__ import annotations

import math
import random

import pytest

from moecluster.orchestrator.aggregate.stats import Estimate, mean_ci, ratio_ci, t_cdf, t_ppf

# Two-sided 95 % critical values of Student's t, from the printed table.
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 9: 2.262, 10: 2.228, 30: 2.042, 120: 1.980}


@pytest.mark.parametrize("df,expected", sorted(T_TABLE.items()))
def test_t_quantile_matches_the_table(df: int, expected: float) -> None:
    assert t_ppf(0.975, df) == pytest.approx(expected, abs=1e-3)


def test_t_quantile_is_symmetric_and_inverts_the_cdf() -> None:
    for df in (1.5, 3.7, 12.0):
        for q in (0.6, 0.9, 0.99):
            t = t_ppf(q, df)
            assert t_cdf(t, df) == pytest.approx(q, abs=1e-9)
            assert t_ppf(1 - q, df) == pytest.approx(-t, abs=1e-9)
    assert t_ppf(0.975, 1e6) == pytest.approx(1.95996, abs=1e-4)  # the normal limit


def test_mean_ci_by_hand() -> None:
    e = mean_ci([1.0, 2.0, 3.0])
    assert e is not None
    half = 4.303 * 1.0 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(n), s = 1
    assert e.mean == 2.0 and e.n == 3
    assert e.lo == pytest.approx(2.0 - half, abs=1e-3) and e.hi == pytest.approx(2.0 + half, abs=1e-3)


def test_single_value_has_no_interval_and_empty_is_none() -> None:
    e = mean_ci([5.0])
    assert e == Estimate(5.0, None, None, 1)
    assert e.crosses_one is None and not e.has_ci
    assert mean_ci([]) is None


def test_mean_ci_covers_the_true_mean_95_percent_of_the_time() -> None:
    rng = random.Random(7)
    trials, hits = 2000, 0
    for _ in range(trials):
        e = mean_ci([rng.gauss(10.0, 2.0) for _ in range(4)])
        assert e is not None and e.lo is not None and e.hi is not None
        hits += e.lo <= 10.0 <= e.hi
    assert 0.93 <= hits / trials <= 0.97


def test_ratio_ci_is_reciprocal_and_positive() -> None:
    a, b = mean_ci([10.0, 11.0, 9.5, 10.4]), mean_ci([5.0, 5.5, 4.9])
    assert a is not None and b is not None
    r, inv = ratio_ci(a, b), ratio_ci(b, a)
    assert r.mean == pytest.approx(a.mean / b.mean)
    assert r.lo is not None and r.hi is not None and inv.lo is not None and inv.hi is not None
    assert 0 < r.lo < r.mean < r.hi
    assert r.lo == pytest.approx(1 / inv.hi) and r.hi == pytest.approx(1 / inv.lo)
    assert r.crosses_one is False


def test_ratio_without_repeats_has_no_interval() -> None:
    a, b = mean_ci([10.0, 11.0]), mean_ci([5.0])
    assert a is not None and b is not None
    r = ratio_ci(a, b)
    assert r.mean == pytest.approx(a.mean / 5.0) and r.lo is None and r.hi is None


def test_ratio_ci_coverage() -> None:
    """Ratios of means of noisy positive figures: the interval holds the true ratio ~95 % of the time."""
    rng = random.Random(11)
    true_a, true_b, trials, hits = 120.0, 100.0, 2000, 0
    for _ in range(trials):
        a = mean_ci([rng.gauss(true_a, 6.0) for _ in range(5)])
        b = mean_ci([rng.gauss(true_b, 3.0) for _ in range(3)])
        assert a is not None and b is not None
        r = ratio_ci(a, b)
        assert r.lo is not None and r.hi is not None
        hits += r.lo <= true_a / true_b <= r.hi
    assert 0.92 <= hits / trials <= 0.98


def test_ratio_of_equal_figures_crosses_one() -> None:
    a, b = mean_ci([100.0, 104.0, 97.0]), mean_ci([101.0, 99.0, 103.0])
    assert a is not None and b is not None
    assert ratio_ci(a, b).crosses_one is True


def test_ratio_needs_positive_means() -> None:
    with pytest.raises(ValueError, match="positive"):
        ratio_ci(Estimate(0.0, None, None, 1), Estimate(1.0, None, None, 1))
